// AdaptiveAvgPool2d((k, k)) with PyTorch's bins: [floor(u*H/k), ceil((u+1)*H/k)), overlapping
// when H is not a multiple of k. One invocation per pooled value (b, i, u, v).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> pooled: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let v = idx % d.k;
    let u = (idx / d.k) % d.k;
    let bi = idx / (d.k * d.k);
    let h0 = (u * d.h) / d.k;
    let h1 = ((u + 1u) * d.h + d.k - 1u) / d.k;
    let w0 = (v * d.w) / d.k;
    let w1 = ((v + 1u) * d.w + d.k - 1u) / d.k;
    var s = 0.0;
    for (var y = h0; y < h1; y++) {
        let row = (bi * d.h + y) * d.w;
        for (var xx = w0; xx < w1; xx++) {
            s += x[row + xx];
        }
    }
    pooled[idx] = s / f32((h1 - h0) * (w1 - w0));
}
