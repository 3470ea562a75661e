// conv_guide (k x k conv I -> r with bias, stride, zero padding, dilation) fused with the argmax
// over regions: each invocation computes the r guide values of its pixels, writes them (the
// backward and `verify` read the guide) and picks each pixel's region: the first maximal index,
// NaN counting as the maximum, as torch.argmax.
// Register blocks of 32 multiply-adds per tap: `guide_argmax4` takes regions 4 at a time for 8
// pixels (r <= 4: nothing wasted), `guide_argmax8` 8 at a time for 4 pixels (larger r: each
// bounds-checked x load feeds 8 regions). A tap's weights are the same for the whole workgroup
// (a broadcast) and its 64 invocations read 64 consecutive pixels at a time.
// Every channel runs the same operations in the same order (bias, then every tap in (i, u, v)
// order, padding read as 0), so bitwise-equal weights give bitwise-equal guide channels and ties
// resolve exactly as in the reference.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wg: array<f32>;
@group(0) @binding(3) var<storage, read> bg: array<f32>;
@group(0) @binding(4) var<storage, read_write> guide: array<f32>;
@group(0) @binding(5) var<storage, read_write> region: array<i32>;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Rows of regions g .. g+3 in the weights (clamped) and which of them exist: regions >= r are
// padding with zero weight and bias, computed and never stored.
fn rows4(g: u32, ikk: u32) -> vec4<u32> {
    let r1 = d.r - 1u;
    return vec4(min(g, r1), min(g + 1u, r1), min(g + 2u, r1), min(g + 3u, r1)) * ikk;
}

fn live4(g: u32) -> vec4<bool> {
    return vec4(g, g + 1u, g + 2u, g + 3u) < vec4(d.r);
}

fn b4(g: u32) -> vec4<f32> {
    let r1 = d.r - 1u;
    let b = vec4(bg[min(g, r1)], bg[min(g + 1u, r1)], bg[min(g + 2u, r1)], bg[min(g + 3u, r1)]);
    return select(vec4(0.0), b, live4(g));
}

fn w4(rows: vec4<u32>, live: vec4<bool>, t: u32) -> vec4<f32> {
    return select(vec4(0.0), vec4(wg[rows.x + t], wg[rows.y + t], wg[rows.z + t], wg[rows.w + t]), live);
}

// A pixel's running argmax: the largest guide value so far and its region.
struct Best {
    val: f32,
    g: u32,
}

// Stores guide values g0 .. g0+3 of pixel n (those below r) and folds them, in order, into the
// pixel's running argmax.
fn emit4(n: u32, g0: u32, vals: vec4<f32>, best_in: Best) -> Best {
    let hw = d.ho * d.wo;
    let b = n / hw;
    let p = n % hw;
    var best = best_in;
    for (var j = 0u; j < 4u; j++) {
        let g = g0 + j;
        if (g >= d.r) { break; }
        let val = vals[j];
        guide[(b * d.r + g) * hw + p] = val;
        if (g == 0u || (!is_nan(best.val) && (val > best.val || is_nan(val)))) {
            best = Best(val, g);
        }
    }
    return best;
}

// Where 4 pixels (flattened over B x H'W') read x: their windows' top-left corners and x
// offsets (u32 arithmetic wraps, so a valid tap's offset comes out right even when the corner is
// in the padding). Pixels past the end get a corner far above the image: every tap is padding.
struct Corners {
    iy0: vec4<i32>,
    ix0: vec4<i32>,
    xo: vec4<u32>,
}

fn corners(pix: vec4<u32>) -> Corners {
    let hw = d.ho * d.wo;
    let live = pix < vec4(d.batch * hw);
    let p = pix % vec4(hw);
    let iy0 = select(vec4(-0x40000000), vec4<i32>((p / d.wo) * d.stride) - i32(d.pad), live);
    let ix0 = select(vec4(0), vec4<i32>((p % d.wo) * d.stride) - i32(d.pad), live);
    let xo = (pix / vec4(hw)) * (d.cin * d.h * d.w) + bitcast<vec4<u32>>(iy0 * i32(d.w) + ix0);
    return Corners(iy0, ix0, xo);
}

// x of the 4 pixels at tap offset (dy, dx) and flat offset `off` from their corners, 0 in the
// padding. Unsigned compares: a negative coordinate is huge, so one test per axis.
fn taps(c: Corners, dy: i32, dx: i32, off: u32) -> vec4<f32> {
    let ok = (vec4<u32>(c.iy0 + dy) < vec4(d.h)) & (vec4<u32>(c.ix0 + dx) < vec4(d.w));
    let at = select(vec4(0u), c.xo + off, ok);
    return select(vec4(0.0), vec4(x[at.x], x[at.y], x[at.z], x[at.w]), ok);
}

// Invocation idx owns pixels (idx / 64) * 512 + idx % 64 + 64 q, q < 8. Per-pixel state and
// accumulators are vectors and named registers: llvmpipe keeps dynamically indexed private
// arrays in memory.
@compute @workgroup_size(WG)
fn guide_argmax4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let total = d.batch * d.ho * d.wo;
    let plane = d.h * d.w;
    let kk = d.k * d.k;
    let ikk = d.cin * kk;
    let pa = vec4((idx / 64u) * 512u + idx % 64u) + vec4(0u, 64u, 128u, 192u);
    let pb = pa + vec4(256u);
    let ca = corners(pa);
    let cb = corners(pb);
    var best: array<Best, 8>;
    for (var g0 = 0u; g0 < d.r; g0 += 4u) {
        let rows = rows4(g0, ikk);
        let live = live4(g0);
        var a0 = b4(g0); var a1 = a0; var a2 = a0; var a3 = a0;
        var e0 = a0; var e1 = a0; var e2 = a0; var e3 = a0;
        for (var i = 0u; i < d.cin; i++) {
            for (var u = 0u; u < d.k; u++) {
                let dy = i32(u * d.dil);
                for (var v = 0u; v < d.k; v++) {
                    let dx = i32(v * d.dil);
                    let off = i * plane + u * d.dil * d.w + v * d.dil;
                    let w = w4(rows, live, i * kk + u * d.k + v);
                    let xa = taps(ca, dy, dx, off);
                    let xb = taps(cb, dy, dx, off);
                    a0 += w * xa.x; a1 += w * xa.y; a2 += w * xa.z; a3 += w * xa.w;
                    e0 += w * xb.x; e1 += w * xb.y; e2 += w * xb.z; e3 += w * xb.w;
                }
            }
        }
        let acc = array<vec4<f32>, 8>(a0, a1, a2, a3, e0, e1, e2, e3);
        for (var q = 0u; q < 8u; q++) {
            let n = select(pa[q % 4u], pb[q % 4u], q >= 4u);
            if (n < total) {
                best[q] = emit4(n, g0, acc[q], best[q]);
            }
        }
    }
    for (var q = 0u; q < 8u; q++) {
        let n = select(pa[q % 4u], pb[q % 4u], q >= 4u);
        if (n < total) {
            region[n] = i32(best[q].g);
        }
    }
}

// Invocation idx owns pixels (idx / 64) * 256 + idx % 64 + 64 q, q < 4. Per-pixel state and
// accumulators are vectors and named registers: llvmpipe keeps dynamically indexed private
// arrays in memory.
@compute @workgroup_size(WG)
fn guide_argmax8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let total = d.batch * d.ho * d.wo;
    let plane = d.h * d.w;
    let kk = d.k * d.k;
    let ikk = d.cin * kk;
    let pix = vec4((idx / 64u) * 256u + idx % 64u) + vec4(0u, 64u, 128u, 192u);
    let cs = corners(pix);
    var best: array<Best, 4>;
    for (var g0 = 0u; g0 < d.r; g0 += 8u) {
        let rows_a = rows4(g0, ikk);
        let rows_b = rows4(g0 + 4u, ikk);
        let live_a = live4(g0);
        let live_b = live4(g0 + 4u);
        var a0 = b4(g0); var a1 = a0; var a2 = a0; var a3 = a0;
        var c0 = b4(g0 + 4u); var c1 = c0; var c2 = c0; var c3 = c0;
        for (var i = 0u; i < d.cin; i++) {
            for (var u = 0u; u < d.k; u++) {
                let dy = i32(u * d.dil);
                for (var v = 0u; v < d.k; v++) {
                    let dx = i32(v * d.dil);
                    let off = i * plane + u * d.dil * d.w + v * d.dil;
                    let t = i * kk + u * d.k + v;
                    let wa = w4(rows_a, live_a, t);
                    let wb = w4(rows_b, live_b, t);
                    let xv = taps(cs, dy, dx, off);
                    a0 += wa * xv.x; c0 += wb * xv.x;
                    a1 += wa * xv.y; c1 += wb * xv.y;
                    a2 += wa * xv.z; c2 += wb * xv.z;
                    a3 += wa * xv.w; c3 += wb * xv.w;
                }
            }
        }
        let acc = array<vec4<f32>, 8>(a0, c0, a1, c1, a2, c2, a3, c3);
        for (var q = 0u; q < 4u; q++) {
            if (pix[q] < total) {
                best[q] = emit4(pix[q], g0, acc[2u * q], best[q]);
                best[q] = emit4(pix[q], g0 + 4u, acc[2u * q + 1u], best[q]);
            }
        }
    }
    for (var q = 0u; q < 4u; q++) {
        if (pix[q] < total) {
            region[pix[q]] = i32(best[q].g);
        }
    }
}
