// conv_guide (k x k conv I -> r with bias, stride, zero padding, dilation) fused with the argmax
// over regions: each invocation computes the r guide values of its pixels, writes them (the
// backward and `verify` read the guide) and picks each pixel's region: the first maximal index,
// NaN counting as the maximum, as torch.argmax.
// Register blocks of 32 multiply-adds per tap: `guide_argmax4` takes regions 4 at a time for 8
// pixels (r <= 4: nothing wasted), `guide_argmax8` 8 at a time for 4 pixels (larger r: each
// bounds-checked x load feeds 8 regions). A tap's weights are the same for the whole workgroup
// (a broadcast) and its 64 invocations read 64 consecutive pixels at a time.
// Every channel runs the same operations in the same order (bias, then every tap in (i, u, v)
// order, padding read as 0; `guide_argmax_split_k`: bias, then its K groups' partial sums in
// group order), so bitwise-equal weights give bitwise-equal guide channels and ties resolve
// exactly as in the reference.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wg: array<f32>;
@group(0) @binding(3) var<storage, read> bg: array<f32>;
@group(0) @binding(4) var<storage, read_write> guide: array<f32>;
@group(0) @binding(5) var<storage, read_write> region: array<i32>;
// Channel-last copies for the `_channel_last` entries (CPU adapters, I % 4 == 0): x as B x H x W x I and
// the weights as k*k x r x I (`transpose` of correlation_bwd.wgsl), as vec4s over 4 channels.
@group(0) @binding(6) var<storage, read> xt4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> wt4: array<vec4<f32>>;

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

// Stores guide values g0 .. g0+n-1 of pixel `pixel` (`lo`, then `hi`; n = min(width, r - g0);
// nothing past the last pixel) and folds them, in order, into the pixel's running argmax.
// Named registers and one store in a loop whose count is known only at run time, not arrays of
// pixels unrolled: llvmpipe compiles every memory instruction at first dispatch, and the arrays
// (kept in memory) with 32 unrolled stores took 180 of guide_argmax8_channel_last's 290 ms.
fn emit_pixel(pixel: u32, g0: u32, width: u32, lo: vec4<f32>, hi: vec4<f32>, best_in: Best) -> Best {
    let hw = d.ho * d.wo;
    if (pixel >= d.batch * hw) { return best_in; }
    let base = ((pixel / hw) * d.r + g0) * hw + pixel % hw;
    var best = best_in;
    for (var j = 0u; j < min(width, d.r - g0); j++) {
        let val = select(lo, hi, j >= 4u)[j % 4u];
        guide[base + j * hw] = val;
        if (g0 + j == 0u || (!is_nan(best.val) && (val > best.val || is_nan(val)))) {
            best = Best(val, g0 + j);
        }
    }
    return best;
}

// A pixel's region (nothing past the last pixel).
fn region_of(pixel: u32, best: Best) {
    if (pixel < d.batch * d.ho * d.wo) {
        region[pixel] = i32(best.g);
    }
}

// The running argmax of 4 pixels, as named fields (not an array: see `emit_pixel`).
struct Best4 {
    x: Best,
    y: Best,
    z: Best,
    w: Best,
}

// `emit_pixel` for the 4 pixels `pix`, pixel q's values in `lo{q}`, then `hi{q}`.
fn emit4(pix: vec4<u32>, g0: u32, width: u32, lo0: vec4<f32>, lo1: vec4<f32>, lo2: vec4<f32>,
         lo3: vec4<f32>, hi0: vec4<f32>, hi1: vec4<f32>, hi2: vec4<f32>, hi3: vec4<f32>,
         b: Best4) -> Best4 {
    return Best4(
        emit_pixel(pix.x, g0, width, lo0, hi0, b.x),
        emit_pixel(pix.y, g0, width, lo1, hi1, b.y),
        emit_pixel(pix.z, g0, width, lo2, hi2, b.z),
        emit_pixel(pix.w, g0, width, lo3, hi3, b.w),
    );
}

fn regions4(pix: vec4<u32>, b: Best4) {
    region_of(pix.x, b.x);
    region_of(pix.y, b.y);
    region_of(pix.z, b.z);
    region_of(pix.w, b.w);
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
    return corners_in(pix, d.cin * d.h * d.w);
}

// `corners` in x with `sample` elements (or pixels, channel-last) per sample.
fn corners_in(pix: vec4<u32>, sample: u32) -> Corners {
    let hw = d.ho * d.wo;
    let live = pix < vec4(d.batch * hw);
    let p = pix % vec4(hw);
    let iy0 = select(vec4(-0x40000000), vec4<i32>((p / d.wo) * d.stride) - i32(d.pad), live);
    let ix0 = select(vec4(0), vec4<i32>((p % d.wo) * d.stride) - i32(d.pad), live);
    let xo = (pix / vec4(hw)) * sample + bitcast<vec4<u32>>(iy0 * i32(d.w) + ix0);
    return Corners(iy0, ix0, xo);
}

// Channel-last: the vec4 index of 4 pixels' first channel block at tap offset (dy, dx) from
// their corners (`corners_in(pix, H*W)`), and which of them are inside the image.
struct TapChannelLast {
    at: vec4<u32>,
    ok: vec4<bool>,
}

fn tap_channel_last(c: Corners, dy: i32, dx: i32) -> TapChannelLast {
    let ok = (vec4<u32>(c.iy0 + dy) < vec4(d.h)) & (vec4<u32>(c.ix0 + dx) < vec4(d.w));
    let at = select(vec4(0u), c.xo + vec4(bitcast<u32>(dy * i32(d.w) + dx)), ok);
    return TapChannelLast(at * (d.cin / 4u), ok);
}

// Region g's weights (0 past r) at tap t for channel block c4, from the channel-last copy.
fn w_channel_last(g: u32, t: u32, c4: u32) -> vec4<f32> {
    let w = wt4[(t * d.r + min(g, d.r - 1u)) * (d.cin / 4u) + c4];
    return select(vec4(0.0), w, g < d.r);
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
    let plane = d.h * d.w;
    let kk = d.k * d.k;
    let ikk = d.cin * kk;
    let pa = vec4((idx / 64u) * 512u + idx % 64u) + vec4(0u, 64u, 128u, 192u);
    let pb = pa + vec4(256u);
    let ca = corners(pa);
    let cb = corners(pb);
    var qa: Best4;
    var qb: Best4;
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
        qa = emit4(pa, g0, 4u, a0, a1, a2, a3, a0, a1, a2, a3, qa);
        qb = emit4(pb, g0, 4u, e0, e1, e2, e3, e0, e1, e2, e3, qb);
    }
    regions4(pa, qa);
    regions4(pb, qb);
}

// Invocation idx owns pixels (idx / 64) * 256 + idx % 64 + 64 q, q < 4. Per-pixel state and
// accumulators are vectors and named registers: llvmpipe keeps dynamically indexed private
// arrays in memory.
@compute @workgroup_size(WG)
fn guide_argmax8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let plane = d.h * d.w;
    let kk = d.k * d.k;
    let ikk = d.cin * kk;
    let pix = vec4((idx / 64u) * 256u + idx % 64u) + vec4(0u, 64u, 128u, 192u);
    let cs = corners(pix);
    var q: Best4;
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
        q = emit4(pix, g0, 8u, a0, a1, a2, a3, c0, c1, c2, c3, q);
    }
    regions4(pix, q);
}

// `guide_argmax4` over channel-last copies (CPU adapters, I % 4 == 0): taps outer, then blocks
// of 4 channels, so each x load is a vec4 of 4 channels and the padding test is once per tap:
// per tap and block 4 weight and 8 x vec4 loads feed 128 multiply-adds (`guide_argmax4`: 12
// scalar loads per 32). Every region still runs the same operations in the same order.
@compute @workgroup_size(WG)
fn guide_argmax4_channel_last(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let i4 = d.cin / 4u;
    let pa = vec4((idx / 64u) * 512u + idx % 64u) + vec4(0u, 64u, 128u, 192u);
    let pb = pa + vec4(256u);
    let ca = corners_in(pa, d.h * d.w);
    let cb = corners_in(pb, d.h * d.w);
    var qa: Best4;
    var qb: Best4;
    for (var g0 = 0u; g0 < d.r; g0 += 4u) {
        var a0 = b4(g0); var a1 = a0; var a2 = a0; var a3 = a0;
        var e0 = a0; var e1 = a0; var e2 = a0; var e3 = a0;
        for (var u = 0u; u < d.k; u++) {
            for (var v = 0u; v < d.k; v++) {
                let t = u * d.k + v;
                let ta = tap_channel_last(ca, i32(u * d.dil), i32(v * d.dil));
                let tb = tap_channel_last(cb, i32(u * d.dil), i32(v * d.dil));
                for (var c4 = 0u; c4 < i4; c4++) {
                    let w0 = w_channel_last(g0, t, c4);
                    let w1 = w_channel_last(g0 + 1u, t, c4);
                    let w2 = w_channel_last(g0 + 2u, t, c4);
                    let w3 = w_channel_last(g0 + 3u, t, c4);
                    let x0 = select(vec4(0.0), xt4[ta.at.x + c4], ta.ok.x);
                    let x1 = select(vec4(0.0), xt4[ta.at.y + c4], ta.ok.y);
                    let x2 = select(vec4(0.0), xt4[ta.at.z + c4], ta.ok.z);
                    let x3 = select(vec4(0.0), xt4[ta.at.w + c4], ta.ok.w);
                    let y0 = select(vec4(0.0), xt4[tb.at.x + c4], tb.ok.x);
                    let y1 = select(vec4(0.0), xt4[tb.at.y + c4], tb.ok.y);
                    let y2 = select(vec4(0.0), xt4[tb.at.z + c4], tb.ok.z);
                    let y3 = select(vec4(0.0), xt4[tb.at.w + c4], tb.ok.w);
                    a0 += vec4(dot(w0, x0), dot(w1, x0), dot(w2, x0), dot(w3, x0));
                    a1 += vec4(dot(w0, x1), dot(w1, x1), dot(w2, x1), dot(w3, x1));
                    a2 += vec4(dot(w0, x2), dot(w1, x2), dot(w2, x2), dot(w3, x2));
                    a3 += vec4(dot(w0, x3), dot(w1, x3), dot(w2, x3), dot(w3, x3));
                    e0 += vec4(dot(w0, y0), dot(w1, y0), dot(w2, y0), dot(w3, y0));
                    e1 += vec4(dot(w0, y1), dot(w1, y1), dot(w2, y1), dot(w3, y1));
                    e2 += vec4(dot(w0, y2), dot(w1, y2), dot(w2, y2), dot(w3, y2));
                    e3 += vec4(dot(w0, y3), dot(w1, y3), dot(w2, y3), dot(w3, y3));
                }
            }
        }
        qa = emit4(pa, g0, 4u, a0, a1, a2, a3, a0, a1, a2, a3, qa);
        qb = emit4(pb, g0, 4u, e0, e1, e2, e3, e0, e1, e2, e3, qb);
    }
    regions4(pa, qa);
    regions4(pb, qb);
}

// `guide_argmax8` over channel-last copies (see `guide_argmax4_channel_last`): per tap and block 8 weight
// and 4 x vec4 loads feed 128 multiply-adds.
@compute @workgroup_size(WG)
fn guide_argmax8_channel_last(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let i4 = d.cin / 4u;
    let pix = vec4((idx / 64u) * 256u + idx % 64u) + vec4(0u, 64u, 128u, 192u);
    let cs = corners_in(pix, d.h * d.w);
    var q: Best4;
    for (var g0 = 0u; g0 < d.r; g0 += 8u) {
        var a0 = b4(g0); var a1 = a0; var a2 = a0; var a3 = a0;
        var c0 = b4(g0 + 4u); var c1 = c0; var c2 = c0; var c3 = c0;
        for (var u = 0u; u < d.k; u++) {
            for (var v = 0u; v < d.k; v++) {
                let t = u * d.k + v;
                let tp = tap_channel_last(cs, i32(u * d.dil), i32(v * d.dil));
                for (var c4 = 0u; c4 < i4; c4++) {
                    let w0 = w_channel_last(g0, t, c4);
                    let w1 = w_channel_last(g0 + 1u, t, c4);
                    let w2 = w_channel_last(g0 + 2u, t, c4);
                    let w3 = w_channel_last(g0 + 3u, t, c4);
                    let w4 = w_channel_last(g0 + 4u, t, c4);
                    let w5 = w_channel_last(g0 + 5u, t, c4);
                    let w6 = w_channel_last(g0 + 6u, t, c4);
                    let w7 = w_channel_last(g0 + 7u, t, c4);
                    let x0 = select(vec4(0.0), xt4[tp.at.x + c4], tp.ok.x);
                    let x1 = select(vec4(0.0), xt4[tp.at.y + c4], tp.ok.y);
                    let x2 = select(vec4(0.0), xt4[tp.at.z + c4], tp.ok.z);
                    let x3 = select(vec4(0.0), xt4[tp.at.w + c4], tp.ok.w);
                    a0 += vec4(dot(w0, x0), dot(w1, x0), dot(w2, x0), dot(w3, x0));
                    c0 += vec4(dot(w4, x0), dot(w5, x0), dot(w6, x0), dot(w7, x0));
                    a1 += vec4(dot(w0, x1), dot(w1, x1), dot(w2, x1), dot(w3, x1));
                    c1 += vec4(dot(w4, x1), dot(w5, x1), dot(w6, x1), dot(w7, x1));
                    a2 += vec4(dot(w0, x2), dot(w1, x2), dot(w2, x2), dot(w3, x2));
                    c2 += vec4(dot(w4, x2), dot(w5, x2), dot(w6, x2), dot(w7, x2));
                    a3 += vec4(dot(w0, x3), dot(w1, x3), dot(w2, x3), dot(w3, x3));
                    c3 += vec4(dot(w4, x3), dot(w5, x3), dot(w6, x3), dot(w7, x3));
                }
            }
        }
        q = emit4(pix, g0, 8u, a0, a1, a2, a3, c0, c1, c2, c3, q);
    }
    regions4(pix, q);
}

// 8 consecutive channel-last x vec4s of one image row (channel block c4), from column `col`,
// zero outside the image (`row_ok` false for a row outside it): one run's share of a row.
struct Row8 {
    x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
    x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>,
}

fn x_at(at: u32, col: i32, row_ok: bool, i4: u32) -> vec4<f32> {
    let ok = row_ok && u32(col) < d.w;
    return select(vec4(0.0), xt4[select(0u, at + u32(col) * i4, ok)], ok);
}

fn row8(at: u32, col: i32, row_ok: bool, i4: u32) -> Row8 {
    return Row8(
        x_at(at, col, row_ok, i4), x_at(at, col + 1, row_ok, i4),
        x_at(at, col + 2, row_ok, i4), x_at(at, col + 3, row_ok, i4),
        x_at(at, col + 4, row_ok, i4), x_at(at, col + 5, row_ok, i4),
        x_at(at, col + 6, row_ok, i4), x_at(at, col + 7, row_ok, i4),
    );
}

// 4 regions' guide values of one pixel for one tap and channel block: 4 dots.
fn dot4(w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, x: vec4<f32>) -> vec4<f32> {
    return vec4(dot(w0, x), dot(w1, x), dot(w2, x), dot(w3, x));
}

// `guide_argmax4_channel_last` for k = 3, stride 1, dilation 1 (CPU adapters, I % 4 == 0, r <= 4): each
// invocation owns a run of 8 consecutive output pixels of one row, so the 3 taps of a kernel row
// read 10 x columns, not 24: per kernel row and channel block 10 x and 12 weight vec4 loads feed
// 384 multiply-adds (`guide_argmax4_channel_last`: 24 and 12). Terms are summed kernel row by kernel row,
// channel block by block, tap by tap, the same for every region.
@compute @workgroup_size(WG)
fn guide_argmax4_channel_last_k3(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let i4 = d.cin / 4u;
    let runs = (d.wo + 7u) / 8u;
    let b = idx / (d.ho * runs);
    let oy = (idx / runs) % d.ho;
    let ox = (idx % runs) * 8u;
    let hw = d.ho * d.wo;
    // Pixels past the row's end get an index past the last pixel: never stored.
    let first = b * hw + oy * d.wo + ox;
    let dead = vec4(d.batch * hw);
    let pa = select(dead, vec4(first) + vec4(0u, 1u, 2u, 3u), vec4(ox) + vec4(0u, 1u, 2u, 3u) < vec4(d.wo));
    let pb = select(dead, vec4(first) + vec4(4u, 5u, 6u, 7u), vec4(ox) + vec4(4u, 5u, 6u, 7u) < vec4(d.wo));
    let col = i32(ox) - i32(d.pad);
    var a0 = b4(0u); var a1 = a0; var a2 = a0; var a3 = a0;
    var e0 = a0; var e1 = a0; var e2 = a0; var e3 = a0;
    for (var u = 0u; u < 3u; u++) {
        let iy = i32(oy + u) - i32(d.pad);
        let row_ok = u32(iy) < d.h;
        let at = (b * d.h * d.w + select(0u, u32(iy), row_ok) * d.w) * i4;
        for (var c4 = 0u; c4 < i4; c4++) {
            let p = row8(at + c4, col, row_ok, i4);
            let q8 = x_at(at + c4, col + 8, row_ok, i4);
            let q9 = x_at(at + c4, col + 9, row_ok, i4);
            for (var v = 0u; v < 3u; v++) {
                let t = u * 3u + v;
                let w0 = w_channel_last(0u, t, c4);
                let w1 = w_channel_last(1u, t, c4);
                let w2 = w_channel_last(2u, t, c4);
                let w3 = w_channel_last(3u, t, c4);
                // Pixel j reads column j + v: the run's x shifted by v.
                let s0 = select(select(p.x0, p.x1, v == 1u), p.x2, v == 2u);
                let s1 = select(select(p.x1, p.x2, v == 1u), p.x3, v == 2u);
                let s2 = select(select(p.x2, p.x3, v == 1u), p.x4, v == 2u);
                let s3 = select(select(p.x3, p.x4, v == 1u), p.x5, v == 2u);
                let s4 = select(select(p.x4, p.x5, v == 1u), p.x6, v == 2u);
                let s5 = select(select(p.x5, p.x6, v == 1u), p.x7, v == 2u);
                let s6 = select(select(p.x6, p.x7, v == 1u), q8, v == 2u);
                let s7 = select(select(p.x7, q8, v == 1u), q9, v == 2u);
                a0 += dot4(w0, w1, w2, w3, s0);
                a1 += dot4(w0, w1, w2, w3, s1);
                a2 += dot4(w0, w1, w2, w3, s2);
                a3 += dot4(w0, w1, w2, w3, s3);
                e0 += dot4(w0, w1, w2, w3, s4);
                e1 += dot4(w0, w1, w2, w3, s5);
                e2 += dot4(w0, w1, w2, w3, s6);
                e3 += dot4(w0, w1, w2, w3, s7);
            }
        }
    }
    var qa: Best4;
    var qb: Best4;
    qa = emit4(pa, 0u, 4u, a0, a1, a2, a3, a0, a1, a2, a3, qa);
    qb = emit4(pb, 0u, 4u, e0, e1, e2, e3, e0, e1, e2, e3, qb);
    regions4(pa, qa);
    regions4(pb, qb);
}

// The GPU family's guide conv + argmax: a workgroup of 256 invocations takes guide_px() pixels
// (64 down to 1) and cuts the inner index (i, u, v) into 256 / guide_px() contiguous K
// groups, one invocation per (K group, pixel), so that small layers still fill a GPU's compute
// units (`Decisions::guide`). A warp's 32 lanes read consecutive pixels at one inner index
// (coalesced) and the same weights (a broadcast). Per 8 regions each invocation sums its K
// group; the partial sums meet in workgroup memory, where each (region, pixel) is bias + group 0
// + group 1 + ... in that order (the same operations for every region: equal weights tie
// exactly), then each pixel's invocation stores its guide values and folds them, region by
// region, into its argmax.
fn guide_px() -> u32 { return d.aux0; }

// Partial sums: [K group][8 regions][pixel], 256 x 8 floats.
var<workgroup> gpart: array<f32, 2048>;
// The 8 regions' guide values of the workgroup's pixels: [region][pixel].
var<workgroup> gvals: array<f32, 512>;

@compute @workgroup_size(256)
fn guide_argmax_split_k(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    guide_block(t, li);
}

// Workgroup t's pixels of `guide_argmax_split_k` (also run by `pool_guide.wgsl` `pool_guide`).
// Every invocation of the workgroup calls it (barriers).
fn guide_block(t: u32, li: u32) {
    let npx = guide_px();
    let groups = 256u / npx;
    let px = li % npx;
    let kg = li / npx;
    let hw = d.ho * d.wo;
    let pixel = t * npx + px;
    let kk = d.k * d.k;
    let ikk = d.cin * kk;
    // This invocation's K group: inner indices k0 .. k1.
    let per = (ikk + groups - 1u) / groups;
    let k0 = min(kg * per, ikk);
    let k1 = min(k0 + per, ikk);
    let c = corners(vec4(pixel));
    let iy0 = c.iy0.x;
    let ix0 = c.ix0.x;
    let xo = c.xo.x;
    var best = Best(0.0, 0u);
    for (var g0 = 0u; g0 < d.r; g0 += 8u) {
        let rows_a = rows4(g0, ikk);
        let rows_b = rows4(g0 + 4u, ikk);
        let live_a = live4(g0);
        let live_b = live4(g0 + 4u);
        var a = vec4(0.0);
        var b = vec4(0.0);
        // (i, u, v) of k0, then stepped along: no division in the loop.
        var i = k0 / kk;
        var u = (k0 % kk) / d.k;
        var v = k0 % d.k;
        for (var kx = k0; kx < k1; kx++) {
            let iy = iy0 + i32(u * d.dil);
            let ix = ix0 + i32(v * d.dil);
            let ok = u32(iy) < d.h && u32(ix) < d.w;
            let at = select(0u, xo + i * d.h * d.w + u * d.dil * d.w + v * d.dil, ok);
            let xv = select(0.0, x[at], ok);
            a += w4(rows_a, live_a, kx) * xv;
            b += w4(rows_b, live_b, kx) * xv;
            v++;
            if (v == d.k) {
                v = 0u;
                u++;
                if (u == d.k) {
                    u = 0u;
                    i++;
                }
            }
        }
        for (var j = 0u; j < 4u; j++) {
            gpart[(kg * 8u + j) * npx + px] = a[j];
            gpart[(kg * 8u + 4u + j) * npx + px] = b[j];
        }
        workgroupBarrier();
        // (region j, pixel q) pairs, 8 * npx of them over the 256 invocations.
        for (var e = li; e < 8u * npx; e += 256u) {
            let j = e / npx;
            let q = e % npx;
            var s = select(0.0, bg[min(g0 + j, d.r - 1u)], g0 + j < d.r);
            for (var k = 0u; k < groups; k++) {
                s += gpart[(k * 8u + j) * npx + q];
            }
            gvals[j * npx + q] = s;
        }
        workgroupBarrier();
        if (kg == 0u && pixel < d.batch * hw) {
            let base = ((pixel / hw) * d.r + g0) * hw + pixel % hw;
            for (var j = 0u; j < min(8u, d.r - g0); j++) {
                let val = gvals[j * npx + px];
                guide[base + j * hw] = val;
                if (g0 + j == 0u || (!is_nan(best.val) && (val > best.val || is_nan(val)))) {
                    best = Best(val, g0 + j);
                }
            }
        }
        workgroupBarrier();
    }
    if (kg == 0u && pixel < d.batch * hw) {
        region[pixel] = i32(best.g);
    }
}
