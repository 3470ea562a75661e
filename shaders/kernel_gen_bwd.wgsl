// Backward of conv_kernel.3, the grouped 1x1 conv (groups = r) from the r*r sigmoid maps to the
// r*I*O kernel channels: gradients to the sigmoid maps, the weight and the bias.
@group(0) @binding(1) var<storage, read> sig: array<f32>;
@group(0) @binding(2) var<storage, read> w3: array<f32>;
@group(0) @binding(3) var<storage, read> dkern: array<f32>;
@group(0) @binding(4) var<storage, read_write> dsig: array<f32>;
@group(0) @binding(5) var<storage, read_write> dw3: array<f32>;
@group(0) @binding(6) var<storage, read_write> db3: array<f32>;

// dsig[b, g*r + j, t] = sum over the I*O channels c of group g of w3[c, j] * dkern[b, c, t].
// One invocation per (b, m, t).
@compute @workgroup_size(WG)
fn sigmoid_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let rr = d.r * d.r;
    let io = d.cin * d.cout;
    let t = idx % kk;
    let m = (idx / kk) % rr;
    let b = idx / (kk * rr);
    let g = m / d.r;
    let j = m % d.r;
    var s = 0.0;
    for (var ch = 0u; ch < io; ch++) {
        let c = g * io + ch;
        s += w3[c * d.r + j] * dkern[(b * d.r * io + c) * kk + t];
    }
    dsig[idx] = s;
}

// One invocation per (c, jj), jj in 0..=r: jj < r gives dw3[c, jj] = sum_{b,t} dkern[b,c,t] *
// sig[b, g*r + jj, t]; jj == r gives db3[c] = sum_{b,t} dkern[b,c,t]. B*k*k terms: one stage.
@compute @workgroup_size(WG)
fn weight_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let jj = idx % (d.r + 1u);
    let c = idx / (d.r + 1u);
    let g = c / io;
    var s = 0.0;
    for (var b = 0u; b < d.batch; b++) {
        let kbase = (b * d.r * io + c) * kk;
        let sbase = (b * d.r * d.r + g * d.r + jj) * kk;
        for (var t = 0u; t < kk; t++) {
            if (jj == d.r) {
                s += dkern[kbase + t];
            } else {
                s += dkern[kbase + t] * sig[sbase + t];
            }
        }
    }
    if (jj == d.r) {
        db3[c] = s;
    } else {
        dw3[c * d.r + jj] = s;
    }
}
