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
