// Backward of region selection (the seed's `asign_index.backward`): the guide gets the softmax
// straight-through `S * (G - sum_g S*G)`, S = softmax_g(guide), G[g] = sum_o gy[o] * corr[g, o];
// `corr_mask` materialises dcorr = gy masked to the selected region (only for inspection: the
// correlation backward reads gy and the region map directly).
@group(0) @binding(1) var<storage, read> guide: array<f32>;
@group(0) @binding(2) var<storage, read> region: array<i32>;
@group(0) @binding(3) var<storage, read> corr: array<f32>;
@group(0) @binding(4) var<storage, read> gy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dguide: array<f32>;
@group(0) @binding(6) var<storage, read_write> dcorr: array<f32>;

// G[b, g, p] = sum_o gy[b, o, p] * corr[b, g, o, p].
fn big_g(b: u32, g: u32, p: u32) -> f32 {
    let hw = d.ho * d.wo;
    var s = 0.0;
    for (var o = 0u; o < d.cout; o++) {
        s += gy[(b * d.cout + o) * hw + p] * corr[((b * d.r + g) * d.cout + o) * hw + p];
    }
    return s;
}

// One invocation per (b, g, y, x). Each recomputes the pixel's softmax and all r G values, so no
// invocation depends on another's write.
@compute @workgroup_size(WG)
fn guide_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let hw = d.ho * d.wo;
    let p = idx % hw;
    let g = (idx / hw) % d.r;
    let b = idx / (hw * d.r);
    let base = b * d.r * hw + p;
    // Subtract the max so exp never overflows.
    var m = guide[base];
    for (var j = 1u; j < d.r; j++) {
        m = max(m, guide[base + j * hw]);
    }
    var z = 0.0;
    for (var j = 0u; j < d.r; j++) {
        z += exp(guide[base + j * hw] - m);
    }
    var sg = 0.0;
    for (var j = 0u; j < d.r; j++) {
        sg += (exp(guide[base + j * hw] - m) / z) * big_g(b, j, p);
    }
    let s = exp(guide[base + g * hw] - m) / z;
    dguide[idx] = s * (big_g(b, g, p) - sg);
}

// One invocation per (b, g, o, y, x) of dcorr.
@compute @workgroup_size(WG)
fn corr_mask(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let hw = d.ho * d.wo;
    let p = idx % hw;
    let o = (idx / hw) % d.cout;
    let g = (idx / (hw * d.cout)) % d.r;
    let b = idx / (hw * d.cout * d.r);
    if (u32(region[b * hw + p]) == g) {
        dcorr[idx] = gy[(b * d.cout + o) * hw + p];
    } else {
        dcorr[idx] = 0.0;
    }
}
