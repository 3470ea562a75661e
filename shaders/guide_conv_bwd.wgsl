// Backward of conv_guide (k x k conv I -> r, stride, zero padding, dilation).
// `input_grad` adds the guide's share to dx. The weight and bias gradients sum over B*H'*W'
// positions, so they reduce in two fixed-order stages: `weight_partial` sums each chunk of
// d.aux0 positions into `partial[chunk][e]`, `weight_reduce` sums the d.aux1 chunks in order.
// Element e < r*I*k*k is weight[g, i, u, v]; e = r*I*k*k + g is bias[g].
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wg: array<f32>;
@group(0) @binding(3) var<storage, read> dguide: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<storage, read_write> dwg: array<f32>;
@group(0) @binding(7) var<storage, read_write> dbg: array<f32>;

// Input channels per invocation of `input_grad` and `weight_partial` (GUIDE_CHANNELS in
// src/gpu/backward.rs): each dguide load then feeds GC_CH multiply-adds. Channels past the end
// of the last block re-read its first channel and are not stored.
const GC_CH: u32 = 4u;

// dx[b, i, y, x] += sum over taps and g of wg[g, i, u, v] * dguide[b, g, oy, ox]. One invocation
// per (b, block of GC_CH channels, y, x); each channel sums over (u, v, g) in that order.
@compute @workgroup_size(WG)
fn input_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let blocks = (d.cin + GC_CH - 1u) / GC_CH;
    let ix = idx % d.w;
    let iy = (idx / d.w) % d.h;
    let i0 = ((idx / (d.w * d.h)) % blocks) * GC_CH;
    let b = idx / (d.w * d.h * blocks);
    let nc = min(GC_CH, d.cin - i0);
    let kk = d.k * d.k;
    let hw = d.ho * d.wo;
    let k1 = select(0u, kk, nc > 1u);
    let k2 = select(0u, 2u * kk, nc > 2u);
    let k3 = select(0u, 3u * kk, nc > 3u);
    var s = vec4<f32>(0.0);
    for (var u = 0u; u < d.k; u++) {
        let oy = out_coord(iy, u, d.ho);
        if (oy < 0) { continue; }
        for (var v = 0u; v < d.k; v++) {
            let ox = out_coord(ix, v, d.wo);
            if (ox < 0) { continue; }
            let p = u32(oy) * d.wo + u32(ox);
            for (var g = 0u; g < d.r; g++) {
                let wb = (g * d.cin + i0) * kk + u * d.k + v;
                let w4 = vec4<f32>(wg[wb], wg[wb + k1], wg[wb + k2], wg[wb + k3]);
                s += w4 * dguide[(b * d.r + g) * hw + p];
            }
        }
    }
    for (var j = 0u; j < nc; j++) {
        let a = ((b * d.cin + i0 + j) * d.h + iy) * d.w + ix;
        dx[a] += s[j];
    }
}

// One invocation per (chunk, g, block of GC_CH channels, u, v) for the weights, then one per
// (chunk, g) for the biases; partial[chunk][e] keeps one slot per element either way.
@compute @workgroup_size(WG)
fn weight_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let blocks = (d.cin + GC_CH - 1u) / GC_CH;
    let nw = d.r * d.cin * kk;
    let ne = nw + d.r;
    let nw4 = d.r * blocks * kk;
    let e4 = idx % (nw4 + d.r);
    let chunk = idx / (nw4 + d.r);
    let hw = d.ho * d.wo;
    let q0 = chunk * d.aux0;
    let q1 = min(q0 + d.aux0, d.batch * hw);
    if (e4 >= nw4) {
        let g = e4 - nw4;
        var s = 0.0;
        for (var q = q0; q < q1; q++) {
            let b = q / hw;
            s += dguide[(b * d.r + g) * hw + q % hw];
        }
        partial[chunk * ne + nw + g] = s;
        return;
    }
    let uv = e4 % kk;
    let i0 = ((e4 / kk) % blocks) * GC_CH;
    let g = e4 / (kk * blocks);
    let nc = min(GC_CH, d.cin - i0);
    let u = uv / d.k;
    let v = uv % d.k;
    let plane = d.h * d.w;
    let x1 = select(0u, plane, nc > 1u);
    let x2 = select(0u, 2u * plane, nc > 2u);
    let x3 = select(0u, 3u * plane, nc > 3u);
    var s = vec4<f32>(0.0);
    for (var q = q0; q < q1; q++) {
        let b = q / hw;
        let p = q % hw;
        let iy = in_coord(p / d.wo, u);
        let ix = in_coord(p % d.wo, v);
        if (iy < 0 || iy >= i32(d.h) || ix < 0 || ix >= i32(d.w)) { continue; }
        let xa = (b * d.cin + i0) * plane + u32(iy) * d.w + u32(ix);
        let xv = vec4<f32>(x[xa], x[xa + x1], x[xa + x2], x[xa + x3]);
        s += dguide[(b * d.r + g) * hw + p] * xv;
    }
    for (var t = 0u; t < nc; t++) {
        partial[chunk * ne + (g * d.cin + i0 + t) * kk + uv] = s[t];
    }
}

// One invocation per e: the chunks' partial sums, in chunk order.
@compute @workgroup_size(WG)
fn weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = item_index(gid, nwg);
    if (e == 0xffffffffu) { return; }
    let nw = d.r * d.cin * d.k * d.k;
    let ne = nw + d.r;
    var s = 0.0;
    for (var c = 0u; c < d.aux1; c++) {
        s += partial[c * ne + e];
    }
    if (e < nw) {
        dwg[e] = s;
    } else {
        dbg[e - nw] = s;
    }
}
