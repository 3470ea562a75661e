// Backward of conv_kernel.1 (1x1 conv I -> r*r) and the sigmoid after it: the logits' gradient,
// then the gradients to the pooled input, the weight and the bias.
@group(0) @binding(1) var<storage, read> pooled: array<f32>;
@group(0) @binding(2) var<storage, read> w1: array<f32>;
@group(0) @binding(3) var<storage, read> sig: array<f32>;
@group(0) @binding(4) var<storage, read> dsig: array<f32>;
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(6) var<storage, read_write> dpooled: array<f32>;
@group(0) @binding(7) var<storage, read_write> dw1: array<f32>;
@group(0) @binding(8) var<storage, read_write> db1: array<f32>;

// The sigmoid's derivative from its stored output: s * (1 - s). One invocation per element.
@compute @workgroup_size(WG)
fn logits_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let s = sig[idx];
    dlogits[idx] = dsig[idx] * (s * (1.0 - s));
}

// dpooled[b, i, t] = sum_m w1[m, i] * dlogits[b, m, t]. One invocation per (b, i, t).
@compute @workgroup_size(WG)
fn pooled_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let rr = d.r * d.r;
    let t = idx % kk;
    let i = (idx / kk) % d.cin;
    let b = idx / (kk * d.cin);
    var s = 0.0;
    for (var m = 0u; m < rr; m++) {
        s += w1[m * d.cin + i] * dlogits[(b * rr + m) * kk + t];
    }
    dpooled[idx] = s;
}

// Samples b0 .. b1 of weight (m, ii)'s sum: ii < I the weight's, sum_{b,t} dlogits[b,m,t] *
// pooled[b, ii, t]; ii == I the bias's, sum_{b,t} dlogits[b,m,t].
fn weight_sum(m: u32, ii: u32, b0: u32, b1: u32) -> f32 {
    let kk = d.k * d.k;
    let rr = d.r * d.r;
    var s = 0.0;
    for (var b = b0; b < b1; b++) {
        let lbase = (b * rr + m) * kk;
        let pbase = (b * d.cin + ii) * kk;
        for (var t = 0u; t < kk; t++) {
            if (ii == d.cin) {
                s += dlogits[lbase + t];
            } else {
                s += dlogits[lbase + t] * pooled[pbase + t];
            }
        }
    }
    return s;
}

// One invocation per (m, ii), ii in 0..=I: ii < I gives dw1[m, ii] = sum_{b,t} dlogits[b,m,t] *
// pooled[b, ii, t]; ii == I gives db1[m] = sum_{b,t} dlogits[b,m,t]. B*k*k terms: one stage.
@compute @workgroup_size(WG)
fn weight_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let ii = idx % (d.cin + 1u);
    let m = idx / (d.cin + 1u);
    let s = weight_sum(m, ii, 0u, d.batch);
    if (ii == d.cin) {
        db1[m] = s;
    } else {
        dw1[m * d.cin + ii] = s;
    }
}

// `weight_grad` for GPUs where one invocation per (m, ii) would leave compute units idle:
// w_lanes() invocations per (m, ii) (2, 4 or 8), lane l summing a contiguous share of the
// samples; the shares meet in workgroup memory and add in lane order. Item = (m * (I + 1) + ii)
// * w_lanes() + lane.
fn w_lanes() -> u32 { return d.aux0; }

var<workgroup> wsum: array<f32, 64>;

@compute @workgroup_size(WG)
fn weight_grad_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let w = group_index(wid, nwg);
    if (w == 0xffffffffu) { return; }
    let rr = d.r * d.r;
    let lanes = w_lanes();
    let item = w * WG + li;
    let idx = item / lanes;
    let lane = item % lanes;
    let live = idx < rr * (d.cin + 1u);
    let ii = idx % (d.cin + 1u);
    let m = idx / (d.cin + 1u);
    let per = (d.batch + lanes - 1u) / lanes;
    let b0 = min(lane * per, d.batch);
    let b1 = min(b0 + per, d.batch);
    var s = 0.0;
    if (live) {
        s = weight_sum(m, ii, b0, b1);
    }
    wsum[li] = s;
    workgroupBarrier();
    if (live && lane == 0u) {
        var v = wsum[li];
        for (var l = 1u; l < lanes; l++) {
            v += wsum[li + l];
        }
        if (ii == d.cin) {
            db1[m] = v;
        } else {
            dw1[m * d.cin + ii] = v;
        }
    }
}
