// Backward of conv_guide (k x k conv I -> r, stride, zero padding, dilation).
// `input_grad` adds the guide's share to dx. The weight and bias gradients sum over B*H'*W'
// positions, so they reduce in two fixed-order stages: `weight_partial` sums each chunk of
// chunk_positions() positions into `partial[chunk][e]`, `weight_reduce` sums the chunk_count() chunks in order.
// Element e < r*I*k*k is weight[g, i, u, v]; e = r*I*k*k + g is bias[g].
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wg: array<f32>;
@group(0) @binding(3) var<storage, read> dguide: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<storage, read_write> dwg: array<f32>;
@group(0) @binding(7) var<storage, read_write> dbg: array<f32>;
// CPU adapters (I % 4 == 0): the weight as k*k x r x I and x as B x H x W x I (channel-last
// copies made by `transpose` of correlation_bwd.wgsl), both as vec4s along I.
@group(0) @binding(9) var<storage, read> wg_t: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> x_t: array<vec4<f32>>;

// The shader-specific words of `Dims`, by name.
// chunk_positions: output positions per weight partial sum (`Dims::guide_chunks`).
fn chunk_positions() -> u32 { return d.aux0; }
// chunk_count: the number of partial sums.
fn chunk_count() -> u32 { return d.aux1; }

// Input channels per invocation of `input_grad` and `weight_partial` (GUIDE_CHANNELS in
// src/gpu/backward.rs): each dguide load then feeds GC_CH multiply-adds. Channels past the end
// of the last block re-read its first channel and are not stored.
const GC_CH: u32 = 4u;

// dx[b, i, y, x] += sum over taps and g of wg[g, i, u, v] * dguide[b, g, oy, ox]. One invocation
// per (b, block of gi_ch() channels, y, x); each channel sums over (u, v, g) in that order.
// gi_ch(): 4 channels, or on GPUs 2 or 1 where 4 would leave compute units idle
// (`Dims::input_channels`); each channel's sum is the same whatever the count.
fn gi_ch() -> u32 { return d.aux0; }

@compute @workgroup_size(WG)
fn input_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let blocks = (d.cin + gi_ch() - 1u) / gi_ch();
    let ix = idx % d.w;
    let iy = (idx / d.w) % d.h;
    let i0 = ((idx / (d.w * d.h)) % blocks) * gi_ch();
    let b = idx / (d.w * d.h * blocks);
    let nc = min(gi_ch(), d.cin - i0);
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

// `input_grad` for CPU adapters (llvmpipe runs a per-lane loop for every load): the same items
// and sums, but the 4 channels' weights are one vec4 load of `wg_t`, so a tap and region cost 2
// loads instead of 5. Same operations in the same order, so dx is bitwise that of `input_grad`.
@compute @workgroup_size(WG)
fn input_grad_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let blocks = d.cin / 4u;
    let ix = idx % d.w;
    let iy = (idx / d.w) % d.h;
    let blk = (idx / (d.w * d.h)) % blocks;
    let b = idx / (d.w * d.h * blocks);
    let hw = d.ho * d.wo;
    let gb = b * d.r * hw;
    var s = vec4<f32>(0.0);
    for (var u = 0u; u < d.k; u++) {
        let oy = out_coord(iy, u, d.ho);
        if (oy < 0) { continue; }
        for (var v = 0u; v < d.k; v++) {
            let ox = out_coord(ix, v, d.wo);
            if (ox < 0) { continue; }
            let p = gb + u32(oy) * d.wo + u32(ox);
            let wb = (u * d.k + v) * d.r * blocks + blk;
            for (var g = 0u; g < d.r; g++) {
                s += wg_t[wb + g * blocks] * dguide[p + g * hw];
            }
        }
    }
    let a = ((b * d.cin + blk * 4u) * d.h + iy) * d.w + ix;
    let plane = d.h * d.w;
    dx[a] += s.x;
    dx[a + plane] += s.y;
    dx[a + 2u * plane] += s.z;
    dx[a + 3u * plane] += s.w;
}

// One item of `weight_partial` (either form): chunk c of the pixels q0..q1 and either a (region
// g, block of GC_CH input channels, tap uv) of the weight or, past those, region g's bias. `at`
// is where the chunk's partials start (plus the weight count for a bias item).
struct WeightItem {
    bias: bool,
    g: u32,
    blk: u32,
    uv: u32,
    q0: u32,
    q1: u32,
    at: u32,
}

fn weight_item(idx: u32) -> WeightItem {
    let kk = d.k * d.k;
    let blocks = (d.cin + GC_CH - 1u) / GC_CH;
    let nw = d.r * d.cin * kk;
    let nw4 = d.r * blocks * kk;
    let e4 = idx % (nw4 + d.r);
    let chunk = idx / (nw4 + d.r);
    let q0 = chunk * chunk_positions();
    let q1 = min(q0 + chunk_positions(), d.batch * d.ho * d.wo);
    let at = chunk * (nw + d.r);
    if (e4 >= nw4) {
        return WeightItem(true, e4 - nw4, 0u, 0u, q0, q1, at + nw);
    }
    return WeightItem(false, e4 / (kk * blocks), (e4 / kk) % blocks, e4 % kk, q0, q1, at);
}

// The guide bias's partial sum for region g over flat pixels q0..q1 (both weight_partial forms).
fn bias_partial(g: u32, q0: u32, q1: u32, at: u32) {
    let hw = d.ho * d.wo;
    var s = 0.0;
    for (var q = q0; q < q1; q++) {
        let b = q / hw;
        s += dguide[(b * d.r + g) * hw + q % hw];
    }
    partial[at + g] = s;
}

// One invocation per (chunk, g, block of GC_CH channels, u, v) for the weights, then one per
// (chunk, g) for the biases; partial[chunk][e] keeps one slot per element either way.
@compute @workgroup_size(WG)
fn weight_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let it = weight_item(idx);
    if (it.bias) {
        bias_partial(it.g, it.q0, it.q1, it.at);
        return;
    }
    let kk = d.k * d.k;
    let hw = d.ho * d.wo;
    let q0 = it.q0;
    let q1 = it.q1;
    let g = it.g;
    let uv = it.uv;
    let i0 = it.blk * GC_CH;
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
        partial[it.at + (g * d.cin + i0 + t) * kk + uv] = s[t];
    }
}

// `weight_partial` for CPU adapters: the same items and sums, but the 4 channels of x are one
// vec4 load of `x_t` (2 loads per position instead of 5), so the partials are bitwise equal.
@compute @workgroup_size(WG)
fn weight_partial_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let it = weight_item(idx);
    if (it.bias) {
        bias_partial(it.g, it.q0, it.q1, it.at);
        return;
    }
    let kk = d.k * d.k;
    let hw = d.ho * d.wo;
    let blocks = d.cin / 4u; // = the item's channel blocks: this entry needs I % 4 == 0
    let q0 = it.q0;
    let q1 = it.q1;
    let g = it.g;
    let uv = it.uv;
    let blk = it.blk;
    let u = uv / d.k;
    let v = uv % d.k;
    var s = vec4<f32>(0.0);
    for (var q = q0; q < q1; q++) {
        let b = q / hw;
        let p = q % hw;
        let iy = in_coord(p / d.wo, u);
        let ix = in_coord(p % d.wo, v);
        if ((iy < 0) || (iy >= i32(d.h)) || (ix < 0) || (ix >= i32(d.w))) { continue; }
        let xv = x_t[((b * d.h + u32(iy)) * d.w + u32(ix)) * blocks + blk];
        s += dguide[(b * d.r + g) * hw + p] * xv;
    }
    let a = it.at + (g * d.cin + blk * 4u) * kk + uv;
    partial[a] = s.x;
    partial[a + kk] = s.y;
    partial[a + 2u * kk] = s.z;
    partial[a + 3u * kk] = s.w;
}

// One invocation per e: the chunks' partial sums, in chunk order.
@compute @workgroup_size(WG)
fn weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = item_index(gid, nwg);
    if (e == 0xffffffffu) { return; }
    let nw = d.r * d.cin * d.k * d.k;
    let ne = nw + d.r;
    var s = 0.0;
    for (var c = 0u; c < chunk_count(); c++) {
        s += partial[c * ne + e];
    }
    if (e < nw) {
        dwg[e] = s;
    } else {
        dbg[e - nw] = s;
    }
}
