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
// CPU adapters: gy as B x H' x W' x O vec4s (the correlation backward's copy, O % 4 == 0) and
// the G values, B x r x H' x W' (`big_g_t` writes them, `guide_grad_g` reads them).
@group(0) @binding(7) var<storage, read> gy_t: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> g_out: array<f32>;
@group(0) @binding(9) var<storage, read> g_in: array<f32>;

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
    let mz = softmax_max_sum(base, hw);
    var sg = 0.0;
    for (var j = 0u; j < d.r; j++) {
        sg += (exp(guide[base + j * hw] - mz.x) / mz.y) * big_g(b, j, p);
    }
    let s = exp(guide[base + g * hw] - mz.x) / mz.y;
    dguide[idx] = s * (big_g(b, g, p) - sg);
}

// The max over the r guide values of a pixel (subtracted so exp never overflows) and the sum of
// their exps: the softmax denominator both `guide_grad` forms share.
fn softmax_max_sum(base: u32, hw: u32) -> vec2<f32> {
    var m = guide[base];
    for (var j = 1u; j < d.r; j++) {
        m = max(m, guide[base + j * hw]);
    }
    var z = 0.0;
    for (var j = 0u; j < d.r; j++) {
        z += exp(guide[base + j * hw] - m);
    }
    return vec2(m, z);
}

// The CPU adapters' `guide_grad` (llvmpipe runs a per-lane loop for every load) in two passes:
// `big_g_t` computes each G once (the gather form recomputes all r of a pixel in each of its r
// invocations, r+1 times O*2 loads), reading gy as vec4s; `guide_grad_g` then reads r G values.
// The same operations in the same order, so dguide is bitwise that of `guide_grad`.
// One invocation per (b, g, y, x).
@compute @workgroup_size(WG)
fn big_g_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let hw = d.ho * d.wo;
    let p = idx % hw;
    let g = (idx / hw) % d.r;
    let b = idx / (hw * d.r);
    let o4 = d.cout / 4u;
    let gb = (b * hw + p) * o4;
    var c = ((b * d.r + g) * d.cout) * hw + p;
    var s = 0.0;
    for (var j = 0u; j < o4; j++) {
        let gv = gy_t[gb + j];
        s += gv.x * corr[c];
        s += gv.y * corr[c + hw];
        s += gv.z * corr[c + 2u * hw];
        s += gv.w * corr[c + 3u * hw];
        c += 4u * hw;
    }
    g_out[idx] = s;
}

// One invocation per (b, g, y, x), as `guide_grad`, with G read from `big_g_t`'s output.
@compute @workgroup_size(WG)
fn guide_grad_g(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let hw = d.ho * d.wo;
    let p = idx % hw;
    let g = (idx / hw) % d.r;
    let b = idx / (hw * d.r);
    let base = b * d.r * hw + p;
    let mz = softmax_max_sum(base, hw);
    var sg = 0.0;
    for (var j = 0u; j < d.r; j++) {
        sg += (exp(guide[base + j * hw] - mz.x) / mz.y) * g_in[base + j * hw];
    }
    let s = exp(guide[base + g * hw] - mz.x) / mz.y;
    dguide[idx] = s * (g_in[idx] - sg);
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

// The GPU family's G values, each once (`guide_grad` recomputes a pixel's r values in each of its
// r invocations): g_lanes() invocations per (b, g, y, x) (1, 2, 4 or 8, enough to fill a GPU),
// lane l summing the channels of its contiguous share in ascending order; the shares meet in
// workgroup memory and add in lane order. Item = ((b * r + g) * H'W' + p) * g_lanes() + lane;
// `guide_grad_g` then reads them.
fn g_lanes() -> u32 { return d.aux0; }

var<workgroup> gsum: array<f32, 64>;

@compute @workgroup_size(WG)
fn big_g_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    let lanes = g_lanes();
    let item = t * WG + li;
    let idx = item / lanes;
    let lane = item % lanes;
    let hw = d.ho * d.wo;
    let live = idx < d.batch * d.r * hw;
    let p = idx % hw;
    let g = (idx / hw) % d.r;
    let b = idx / (hw * d.r);
    let per = (d.cout + lanes - 1u) / lanes;
    let o0 = min(lane * per, d.cout);
    let o1 = min(o0 + per, d.cout);
    var s = 0.0;
    if (live) {
        for (var o = o0; o < o1; o++) {
            s += gy[(b * d.cout + o) * hw + p] * corr[((b * d.r + g) * d.cout + o) * hw + p];
        }
    }
    gsum[li] = s;
    workgroupBarrier();
    if (live && lane == 0u) {
        var v = gsum[li];
        for (var l = 1u; l < lanes; l++) {
            v += gsum[li + l];
        }
        g_out[idx] = v;
    }
}
