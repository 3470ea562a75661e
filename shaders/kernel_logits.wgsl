// conv_kernel.1 (1x1 conv I -> r*r) fused with the sigmoid. Both the logits and the sigmoid are
// stored: the backward needs the sigmoid, and `verify` inspects both.
// One invocation per (b, m, u, v).
@group(0) @binding(1) var<storage, read> pooled: array<f32>;
@group(0) @binding(2) var<storage, read> w1: array<f32>;
@group(0) @binding(3) var<storage, read> b1: array<f32>;
@group(0) @binding(4) var<storage, read_write> logits: array<f32>;
@group(0) @binding(5) var<storage, read_write> sig: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let rr = d.r * d.r;
    let uv = idx % kk;
    let m = (idx / kk) % rr;
    let b = idx / (kk * rr);
    var s = b1[m];
    for (var i = 0u; i < d.cin; i++) {
        s += w1[m * d.cin + i] * pooled[(b * d.cin + i) * kk + uv];
    }
    logits[idx] = s;
    sig[idx] = 1.0 / (1.0 + exp(-s));
}

// The GPU family's form where one invocation per logit would leave compute units idle (large
// I, few logits): 8 invocations per logit, each summing a contiguous eighth of the channels;
// the 8 partial sums meet in workgroup memory and add in order (b1 + part 0 + ... + part 7).
// Workgroup w takes logits 8 w .. 8 w + 7.
var<workgroup> lpart: array<f32, 64>;

@compute @workgroup_size(WG)
fn split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let rr = d.r * d.r;
    let idx = t * 8u + li / 8u;
    let part = li % 8u;
    let live = idx < d.batch * rr * kk;
    let uv = idx % kk;
    let m = (idx / kk) % rr;
    let b = idx / (kk * rr);
    let per = (d.cin + 7u) / 8u;
    let i0 = min(part * per, d.cin);
    let i1 = min(i0 + per, d.cin);
    var s = 0.0;
    if (live) {
        for (var i = i0; i < i1; i++) {
            s += w1[m * d.cin + i] * pooled[(b * d.cin + i) * kk + uv];
        }
    }
    lpart[li] = s;
    workgroupBarrier();
    if (live && part == 0u) {
        var v = b1[m];
        for (var q = 0u; q < 8u; q++) {
            v += lpart[li + q];
        }
        logits[idx] = v;
        sig[idx] = 1.0 / (1.0 + exp(-v));
    }
}
