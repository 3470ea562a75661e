// Backward of the per-sample correlation. Only each pixel's own region receives gradient
// (dcorr = gy masked by the region map), so both entries read gy and the region map directly.
// Gather form: one invocation per gradient element, contributors summed in a fixed order.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> kern: array<f32>;
@group(0) @binding(3) var<storage, read> gy: array<f32>;
@group(0) @binding(4) var<storage, read> region: array<i32>;
@group(0) @binding(5) var<storage, read_write> dkern: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

// Regions accumulated per pixel scan of `kernel_grad` (more regions: one scan per group), and
// input channels per invocation (each region and gy load then feeds KG_CH multiply-adds).
const KG_REGIONS: u32 = 8u;
const KG_CH: u32 = 4u;

// dkernel[b, g*I*O + o*I + i, u, v] = sum over (y, x) with region == g of
// gy[b, o, y, x] * xpad[b, i, y*s + u*dil, x*s + v*dil]. One invocation per (b, o, block of
// KG_CH input channels, u, v) fills those taps for up to KG_REGIONS regions in one scan: each
// pixel adds to its own region's sums only (the old one-invocation-per-element form scanned every
// pixel r times). Each sum still runs over its pixels in ascending order.
@compute @workgroup_size(WG)
fn kernel_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let blocks = (d.cin + KG_CH - 1u) / KG_CH;
    let uv = idx % kk;
    let i0 = ((idx / kk) % blocks) * KG_CH;
    let o = (idx / (kk * blocks)) % d.cout;
    let b = idx / (kk * blocks * d.cout);
    let nc = min(KG_CH, d.cin - i0);
    let u = uv / d.k;
    let v = uv % d.k;
    let hw = d.ho * d.wo;
    let plane = d.h * d.w;
    let xbase = (b * d.cin + i0) * plane;
    // Channels past the end (last block) re-read channel i0 and are not stored.
    let x1 = select(0u, plane, nc > 1u);
    let x2 = select(0u, 2u * plane, nc > 2u);
    let x3 = select(0u, 3u * plane, nc > 3u);
    let gbase = (b * d.cout + o) * hw;
    for (var g0 = 0u; g0 < d.r; g0 += KG_REGIONS) {
        var acc: array<vec4<f32>, KG_REGIONS>;
        for (var oy = 0u; oy < d.ho; oy++) {
            let iy = in_coord(oy, u);
            if (iy < 0 || iy >= i32(d.h)) { continue; }
            let xrow = xbase + u32(iy) * d.w;
            for (var ox = 0u; ox < d.wo; ox++) {
                let ix = in_coord(ox, v);
                if (ix < 0 || ix >= i32(d.w)) { continue; }
                let p = oy * d.wo + ox;
                let slot = u32(region[b * hw + p]) - g0;
                if (slot >= KG_REGIONS) { continue; }
                let xa = xrow + u32(ix);
                let xv = vec4<f32>(x[xa], x[xa + x1], x[xa + x2], x[xa + x3]);
                acc[slot] += gy[gbase + p] * xv;
            }
        }
        let n = min(KG_REGIONS, d.r - g0);
        for (var j = 0u; j < n; j++) {
            let kb = ((b * d.r + g0 + j) * io + o * d.cin + i0) * kk + uv;
            for (var t = 0u; t < nc; t++) {
                dkern[kb + t * kk] = acc[j][t];
            }
        }
    }
}

// Input channels per `input_grad` invocation: each gy load feeds this many kernel taps.
const IG_CH: u32 = 4u;

// The correlation's share of dx (the first of the three paths: it assigns, the guide conv and
// the pool backward then add theirs). One invocation per (b, block of IG_CH channels, y, x);
// every channel's sum runs over (u, v, o) in the same order as one invocation per element.
@compute @workgroup_size(WG)
fn input_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let blocks = (d.cin + IG_CH - 1u) / IG_CH;
    let ix = idx % d.w;
    let iy = (idx / d.w) % d.h;
    let i0 = ((idx / (d.w * d.h)) % blocks) * IG_CH;
    let b = idx / (d.w * d.h * blocks);
    let nc = min(IG_CH, d.cin - i0);
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let hw = d.ho * d.wo;
    let ostride = d.cin * kk;
    var s = vec4<f32>(0.0);
    for (var u = 0u; u < d.k; u++) {
        let oy = out_coord(iy, u, d.ho);
        if (oy < 0) { continue; }
        for (var v = 0u; v < d.k; v++) {
            let ox = out_coord(ix, v, d.wo);
            if (ox < 0) { continue; }
            let p = u32(oy) * d.wo + u32(ox);
            let g = u32(region[b * hw + p]);
            let kbase = ((b * d.r + g) * io + i0) * kk + u * d.k + v;
            // Channels past the end (last block) reuse channel i0's taps and are not stored.
            let k1 = select(0u, kk, nc > 1u);
            let k2 = select(0u, 2u * kk, nc > 2u);
            let k3 = select(0u, 3u * kk, nc > 3u);
            for (var o = 0u; o < d.cout; o++) {
                let gv = gy[(b * d.cout + o) * hw + p];
                let kb = kbase + o * ostride;
                s += vec4<f32>(kern[kb], kern[kb + k1], kern[kb + k2], kern[kb + k3]) * gv;
            }
        }
    }
    for (var j = 0u; j < nc; j++) {
        dx[((b * d.cin + i0 + j) * d.h + iy) * d.w + ix] = s[j];
    }
}
