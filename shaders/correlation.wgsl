// Per-sample correlation of x with the generated kernels, as one GEMM per sample: rows are the
// kernel channels g*O + o (the kernel tensor viewed as B x (r*O) x (I*k*k)), columns are output
// pixels, and the inner dimension (i, u, v) is read from x on the fly (implicit im2col).
// `all_regions`: every row times every pixel, into B x r x O x H' x W' (training: the backward
//   needs every region's output).
// `selected`: region g's O rows times only the pixels whose region is g, taken from the
//   per-region pixel lists of `region_select.wgsl` `lists`, into B x O x H' x W' (inference).
//
// Tiling: a workgroup of 64 invocations computes an (8*CG rows) x (256/CG pixels) tile, CG in
// {1, 2, 4, 8} (16 too without staging: 128 x 16 tiles for small regions) chosen by the planner
// (row_groups()) to fit O and the pixels per region. Invocation li is in row group li / (64/CG) and
// pixel lane li % (64/CG); it keeps an 8 x 4 block in registers
// (8 rows, 4 pixels strided by 64/CG, so consecutive invocations read consecutive pixels): per
// inner step 2 vec4 weight loads and 4 x loads feed 32 multiply-adds. The weights of a chunk of
// KC inner indices are staged in workgroup memory; the invocations of a row group read the same
// address (a broadcast). x values are read from memory by the invocation that uses them.
// Tiles are numbered by `group_index` (src/gpu/correlation.rs).
// The `_direct` entries skip the staging and read each weight from memory in the inner loop, for
// CPU adapters (lavapipe): there workgroup memory is ordinary memory, every per-invocation load is
// a per-lane gather either way, and the staging pass and barriers are pure overhead. The
// `_direct4` entries (`gemm_tile4`) read the weight rows as vec4s, where I*k*k % 4 == 0. The
// `_channel_last` entries (`gemm_tile_channel_last`) keep 16 rows x 4 consecutive pixels per invocation over the
// same tiles (`channel_last_lane`).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> kern: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// B x H'W' pixel indices, grouped by region (ascending within a region).
@group(0) @binding(4) var<storage, read> order: array<u32>;
// The pixel tiles of the per-region GEMMs (region_select.wgsl `tiles`): [0] = their number n,
// then per tile k [1 + 3k] = b * r + g, [2 + 3k] = its first index into sample b's `order` and
// [3 + 3k] = its pixel count.
@group(0) @binding(5) var<storage, read> tile_list: array<u32>;
// The kernel again, as vec4s along the inner index: as laid out for the `_direct4` entries
// (I*k*k % 4 == 0), the channel-last copy (rows with the inner index in (u, v, i) order) for the
// `_channel_last` entries (I % 4 == 0).
@group(0) @binding(6) var<storage, read> kern4: array<vec4<f32>>;
// x channel-last (B x H x W x I) as vec4s over 4 input channels, for the `_channel_last` entries.
@group(0) @binding(7) var<storage, read> xt4: array<vec4<f32>>;

// The shader-specific words of `Dims`, by name.
// row_groups: row groups of 8 rows per tile (`Dims::row_groups`).
fn row_groups() -> u32 { return d.aux0; }
// bound_region: the (sample, region) b * r + g of a `selected_channel_last_per_region` dispatch (`Dims::bound_region`).
fn bound_region() -> u32 { return d.aux1; }

const RB: u32 = 8u; // rows per invocation (two vec4s)
const PB: u32 = 4u; // pixels per invocation
const KC: u32 = 32u; // inner indices staged per chunk
const ROWS4_MAX: u32 = 16u; // (8 * CG) / 4 for CG = 8
const NONE: u32 = 0xffffffffu;
// Weight sources: staged through workgroup memory, read directly, read directly as vec4s, read
// as vec4s with x from a channel-last copy.
const STAGED: u32 = 0u;
const DIRECT: u32 = 1u;
const DIRECT4: u32 = 2u;
const CHANNEL_LAST: u32 = 3u;
// The staged weights: column kc's row quads at kc * (rows4 + 1), an odd stride of 16-byte words,
// so the 8 lanes of one 128-byte store phase (consecutive kc) hit 8 different bank quads: no
// bank conflict (`tests` in src/gpu/shaders.rs evaluate every index). 8.5 KiB.
var<workgroup> wsh: array<vec4<f32>, KC * (ROWS4_MAX + 1u)>;

// Kernel row `row` (below row_end), column col (below kd) of sample b's rows at kb, else 0.
fn staged_weight(kb: u32, row: u32, row_end: u32, col: u32, kd: u32) -> f32 {
    let ok = row < row_end && col < kd;
    return select(0.0, kern[select(0u, (kb + row) * kd + col, ok)], ok);
}

// Rows row0 + 8*cg .. +8 (those below row_end) of sample b times the pixels `pix` (>= H'W'
// means none); acc[q * 2 + h] holds rows 4h .. 4h+3 of pixel q.
// Per-pixel state and accumulators are vectors and named registers, not arrays indexed in a
// loop: llvmpipe keeps a dynamically indexed private array in memory.
fn gemm_tile(li: u32, cg: u32, b: u32, row0: u32, row_end: u32, pix: vec4<u32>, staged: bool) -> array<vec4<f32>, 8> {
    let groups = row_groups();
    let rows4 = 2u * groups;
    let kk = d.k * d.k;
    let kd = d.cin * kk;
    let plane = d.h * d.w;
    // Per pixel: its window's corner, and its x offset (u32 arithmetic wraps, so the offset of
    // a valid tap comes out right even when the corner is in the padding).
    let c = corner(pix, vec4(0u));
    let iy0 = c.iy0;
    let ix0 = c.ix0;
    let xo = vec4(b * d.cin * plane) + bitcast<vec4<u32>>(iy0 * i32(d.w) + ix0);
    let kb = b * d.r * d.cout;
    let kc = li % KC;
    // Direct: this invocation's 8 weight rows.
    let rows = weight_rows(kb, row0 + 8u * cg, row_end, kd);
    let rba = rows[0];
    let rbb = rows[1];
    var p0a = vec4(0.0); var p0b = vec4(0.0);
    var p1a = vec4(0.0); var p1b = vec4(0.0);
    var p2a = vec4(0.0); var p2b = vec4(0.0);
    var p3a = vec4(0.0); var p3b = vec4(0.0);
    for (var k0 = 0u; k0 < kd; k0 += KC) {
        if (staged) {
            // Stage the tile's 8*CG rows x KC columns: invocation li loads column kc = li % KC of
            // every (64/KC)-th quad of rows (consecutive invocations read along a row, coalesced)
            // and stores the quad as one vec4.
            let col = k0 + kc;
            for (var r4 = li / KC; r4 < rows4; r4 += 64u / KC) {
                let row = row0 + 4u * r4;
                wsh[kc * (rows4 + 1u) + r4] = vec4(
                    staged_weight(kb, row, row_end, col, kd),
                    staged_weight(kb, row + 1u, row_end, col, kd),
                    staged_weight(kb, row + 2u, row_end, col, kd),
                    staged_weight(kb, row + 3u, row_end, col, kd)
                );
            }
            workgroupBarrier();
        }
        let kend = min(KC, kd - k0);
        // (i, u, v) of column k0, then stepped along: no division in the loop.
        var i = k0 / kk;
        var u = (k0 % kk) / d.k;
        var v = k0 % d.k;
        for (var c = 0u; c < kend; c++) {
            let dy = i32(u * d.dil);
            let dx = i32(v * d.dil);
            let off = i * plane + u * d.dil * d.w + v * d.dil;
            var w0: vec4<f32>;
            var w1: vec4<f32>;
            if (staged) {
                w0 = wsh[c * (rows4 + 1u) + 2u * cg];
                w1 = wsh[c * (rows4 + 1u) + 2u * cg + 1u];
            } else {
                let col = k0 + c;
                w0 = vec4(kern[rba.x + col], kern[rba.y + col], kern[rba.z + col], kern[rba.w + col]);
                w1 = vec4(kern[rbb.x + col], kern[rbb.y + col], kern[rbb.z + col], kern[rbb.w + col]);
            }
            // Unsigned compares: a negative coordinate is huge, so one test per axis.
            let ok = (vec4<u32>(iy0 + dy) < vec4(d.h)) & (vec4<u32>(ix0 + dx) < vec4(d.w));
            let at = select(vec4(0u), xo + off, ok);
            let xv = select(vec4(0.0), vec4(x[at.x], x[at.y], x[at.z], x[at.w]), ok);
            p0a += w0 * xv.x; p0b += w1 * xv.x;
            p1a += w0 * xv.y; p1b += w1 * xv.y;
            p2a += w0 * xv.z; p2b += w1 * xv.z;
            p3a += w0 * xv.w; p3b += w1 * xv.w;
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
        if (staged) {
            workgroupBarrier();
        }
    }
    return array<vec4<f32>, 8>(p0a, p0b, p1a, p1b, p2a, p2b, p3a, p3b);
}

// `gemm_tile` without staging for CPU adapters, reading each weight row as vec4s along the inner
// index: per 4 inner steps 8 vec4 weight loads and 16 x loads feed 128 multiply-adds (llvmpipe
// runs a per-lane loop per load instruction, so a vec4 costs little more than a scalar). The
// multiply-adds happen in the same order as in `gemm_tile`, so results are bitwise equal.
fn gemm_tile4(cg: u32, b: u32, row0: u32, row_end: u32, pix: vec4<u32>) -> array<vec4<f32>, 8> {
    let kk = d.k * d.k;
    let kd4 = d.cin * kk / 4u;
    let plane = d.h * d.w;
    let c = corner(pix, vec4(0u));
    let iy0 = c.iy0;
    let ix0 = c.ix0;
    let xo = vec4(b * d.cin * plane) + bitcast<vec4<u32>>(iy0 * i32(d.w) + ix0);
    let rows = weight_rows(b * d.r * d.cout, row0 + 8u * cg, row_end, kd4);
    let rba = rows[0];
    let rbb = rows[1];
    var p0a = vec4(0.0); var p0b = vec4(0.0);
    var p1a = vec4(0.0); var p1b = vec4(0.0);
    var p2a = vec4(0.0); var p2b = vec4(0.0);
    var p3a = vec4(0.0); var p3b = vec4(0.0);
    var i = 0u;
    var u = 0u;
    var v = 0u;
    for (var c4 = 0u; c4 < kd4; c4++) {
        let r0 = kern4[rba.x + c4];
        let r1 = kern4[rba.y + c4];
        let r2 = kern4[rba.z + c4];
        let r3 = kern4[rba.w + c4];
        let r4 = kern4[rbb.x + c4];
        let r5 = kern4[rbb.y + c4];
        let r6 = kern4[rbb.z + c4];
        let r7 = kern4[rbb.w + c4];
        for (var e = 0u; e < 4u; e++) {
            let w0 = vec4(r0[e], r1[e], r2[e], r3[e]);
            let w1 = vec4(r4[e], r5[e], r6[e], r7[e]);
            let dy = i32(u * d.dil);
            let dx = i32(v * d.dil);
            let off = i * plane + u * d.dil * d.w + v * d.dil;
            let ok = (vec4<u32>(iy0 + dy) < vec4(d.h)) & (vec4<u32>(ix0 + dx) < vec4(d.w));
            let at = select(vec4(0u), xo + off, ok);
            let xv = select(vec4(0.0), vec4(x[at.x], x[at.y], x[at.z], x[at.w]), ok);
            p0a += w0 * xv.x; p0b += w1 * xv.x;
            p1a += w0 * xv.y; p1b += w1 * xv.y;
            p2a += w0 * xv.z; p2b += w1 * xv.z;
            p3a += w0 * xv.w; p3b += w1 * xv.w;
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
    }
    return array<vec4<f32>, 8>(p0a, p0b, p1a, p1b, p2a, p2b, p3a, p3b);
}

// `gemm_tile4` over channel-last copies of x and the kernel, for CPU adapters where I % 4 == 0:
// a pixel's 4 channels at a tap are one vec4 load and the padding test is once per tap. Each
// invocation keeps 16 rows x 4 pixels (`channel_last_lane`): per 4 channels and tap 16 vec4 weight loads
// and 4 vec4 x loads feed 256 multiply-adds. lavapipe runs every storage load as a loop over the
// lanes, while the uniform kernels' weight loads are vector gathers, so the x loads set the
// pace: 16 rows per x load measured 25-35 % faster than 8 (PERF.md, Design). Taps outer, channel
// blocks inner: unrolling the 9 taps of k = 3 inside the channel loop (addresses computed once)
// measured 20 % slower.
// `kb`: the first kernel row of sample b in `kern4` (b * r * O, or 0 in a per-region uniform binding);
// rows first .. first + 15 (those below row_end) from there.
fn gemm_tile_channel_last(b: u32, kb: u32, first: u32, row_end: u32, pix: vec4<u32>) -> Block16 {
    let i4 = d.cin / 4u;
    let kd4 = d.k * d.k * i4;
    let c = corner(pix, vec4(b * d.h * d.w));
    let lo = weight_rows(kb, first, row_end, kd4);
    let hi = weight_rows(kb, first + 8u, row_end, kd4);
    // One loop over (tap, channel block), the tap advanced when its blocks are done: the same
    // steps in the same order as loops over u, v and the blocks, but llvmpipe enters one loop
    // per invocation instead of 13 (k = 3), and entering a loop costs it far more than an
    // iteration (-10 % at I = 16, where a tap has only 4 blocks).
    var lo8: array<vec4<f32>, 8>;
    var hi8: array<vec4<f32>, 8>;
    var u = 0u;
    var v = 0u;
    var c4 = 0u;
    var t = tap_channel_last(c, 0u, 0u, i4);
    for (var s = 0u; s < kd4; s++) {
        let x = channel_last_x(t, c4);
        let o = vec4(s);
        lo8 = channel_last_rows8(lo8, x, lo[0] + o, lo[1] + o);
        hi8 = channel_last_rows8(hi8, x, hi[0] + o, hi[1] + o);
        c4 += 1u;
        if (c4 == i4) {
            c4 = 0u;
            v += 1u;
            if (v == d.k) {
                v = 0u;
                u += 1u;
            }
            t = tap_channel_last(c, u, v, i4);
        }
    }
    return Block16(lo8, hi8);
}

// The 16 x 4 block of `gemm_tile_channel_last`: rows 0 .. 7 and 8 .. 15, each an 8 x 4 block as in
// `gemm_tile`.
struct Block16 {
    lo: array<vec4<f32>, 8>,
    hi: array<vec4<f32>, 8>,
}

// Where a `_channel_last` invocation works in its tile of 8 * groups rows by 256 / groups pixels: the
// 16-row block `rows` (max(1, groups / 2) of them, fastest) and 4 consecutive pixels from `px`.
// The invocations past those blocks times 64 / groups pixel lanes have none (`live` false):
// whole SIMD groups of a CPU adapter, which then skip the tile, as does a lane past a region's
// last pixel.
struct Cl4Lane {
    rows: u32,
    px: u32,
    live: bool,
}

fn channel_last_lane(li: u32, groups: u32) -> Cl4Lane {
    let blocks = max(1u, groups / 2u);
    return Cl4Lane(16u * (li % blocks), 4u * (li / blocks), li < blocks * (64u / groups));
}

// `store_block` for the 16 x 4 block of `gemm_tile_channel_last` (rows row .. row + 15).
fn store_block16(acc: Block16, base: u32, row: u32, row_end: u32, pix: vec4<u32>) {
    store_block(acc.lo, base, row, row_end, pix);
    store_block(acc.hi, base, row + 8u, row_end, pix);
}

// 4 pixels' window corners (padding included) and the channel-last x index of their sample.
struct Corner {
    iy0: vec4<i32>,
    ix0: vec4<i32>,
    xb: vec4<u32>,
}

// The window corners of output pixels `pix`, for a sample starting at channel-last x index `xb`
// (unused by the channel-first tiles). Pixels past the end (>= H'W') get a corner far above
// the image: every tap reads as padding.
fn corner(pix: vec4<u32>, xb: vec4<u32>) -> Corner {
    let live = pix < vec4(d.ho * d.wo);
    let iy0 = select(vec4(-0x40000000), vec4<i32>((pix / d.wo) * d.stride) - i32(d.pad), live);
    let ix0 = select(vec4(0), vec4<i32>((pix % d.wo) * d.stride) - i32(d.pad), live);
    return Corner(iy0, ix0, xb);
}

// Where the 8 kernel rows first .. first+7 after row `base` start (times `stride`, the row length
// in the units the tile reads): rows past row_end repeat the last one, their results never
// stored. `base` is sample b's first row, b * r * O, or 0 in a per-region uniform binding.
fn weight_rows(base: u32, first: u32, row_end: u32, stride: u32) -> array<vec4<u32>, 2> {
    let kb = vec4(base);
    let rl = vec4(row_end - 1u);
    return array<vec4<u32>, 2>(
        (kb + min(vec4(first) + vec4(0u, 1u, 2u, 3u), rl)) * stride,
        (kb + min(vec4(first) + vec4(4u, 5u, 6u, 7u), rl)) * stride,
    );
}

// Where 4 pixels read tap (u, v) in the channel-last x: the vec4 index of their first channel
// block, and which of them are inside the image (unsigned compares: a negative coordinate is
// huge, so one test per axis).
struct TapChannelLast {
    xa: vec4<u32>,
    ok: vec4<bool>,
}

fn tap_channel_last(c: Corner, u: u32, v: u32, i4: u32) -> TapChannelLast {
    let iy = c.iy0 + i32(u * d.dil);
    let ix = c.ix0 + i32(v * d.dil);
    let ok = (vec4<u32>(iy) < vec4(d.h)) & (vec4<u32>(ix) < vec4(d.w));
    let xa = (c.xb + select(vec4(0u), bitcast<vec4<u32>>(iy * i32(d.w) + ix), ok)) * i4;
    return TapChannelLast(xa, ok);
}

// Channel block c4 of tap t for 4 pixels: 4 vec4 x loads, zero in the padding.
fn channel_last_x(t: TapChannelLast, c4: u32) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(
        select(vec4(0.0), xt4[t.xa.x + c4], t.ok.x),
        select(vec4(0.0), xt4[t.xa.y + c4], t.ok.y),
        select(vec4(0.0), xt4[t.xa.z + c4], t.ok.z),
        select(vec4(0.0), xt4[t.xa.w + c4], t.ok.w),
    );
}

// 8 rows (weight vec4 indices `wa`, `wb`: 8 loads) times one channel block `x` of 4 pixels into
// the 8 x 4 block `acc` (acc[2q + l]: rows 4l .. 4l + 3 of pixel q), 128 multiply-adds.
fn channel_last_rows8(acc: array<vec4<f32>, 8>, x: array<vec4<f32>, 4>, wa: vec4<u32>, wb: vec4<u32>) -> array<vec4<f32>, 8> {
    let r0 = kern4[wa.x];
    let r1 = kern4[wa.y];
    let r2 = kern4[wa.z];
    let r3 = kern4[wa.w];
    let r4 = kern4[wb.x];
    let r5 = kern4[wb.y];
    let r6 = kern4[wb.z];
    let r7 = kern4[wb.w];
    var a = acc;
    for (var e = 0u; e < 4u; e++) {
        let w0 = vec4(r0[e], r1[e], r2[e], r3[e]);
        let w1 = vec4(r4[e], r5[e], r6[e], r7[e]);
        a[0] += w0 * x[0][e]; a[1] += w1 * x[0][e];
        a[2] += w0 * x[1][e]; a[3] += w1 * x[1][e];
        a[4] += w0 * x[2][e]; a[5] += w1 * x[2][e];
        a[6] += w0 * x[3][e]; a[7] += w1 * x[3][e];
    }
    return a;
}

// Stores the 8 x 4 block `acc` (see `gemm_tile`): rows row .. row+7 (those below row_end) of
// the pixels `pix` (those below H'W') at out[(base + row) * H'W' + pixel]. Four stores in a loop
// over the rows whose count is known only at run time, not 32 unrolled: llvmpipe compiles every
// memory instruction at first dispatch.
fn store_block(acc: array<vec4<f32>, 8>, base: u32, row: u32, row_end: u32, pix: vec4<u32>) {
    let hw = d.ho * d.wo;
    let live = pix < vec4(hw);
    for (var m = 0u; m < min(RB, row_end - min(row, row_end)); m++) {
        let at = vec4((base + row + m) * hw) + pix;
        let hi = m >= 4u;
        let e = m % 4u;
        if (live.x) { out[at.x] = select(acc[0], acc[1], hi)[e]; }
        if (live.y) { out[at.y] = select(acc[2], acc[3], hi)[e]; }
        if (live.z) { out[at.z] = select(acc[4], acc[5], hi)[e]; }
        if (live.w) { out[at.w] = select(acc[6], acc[7], hi)[e]; }
    }
}

// Tile t = ((b * row tiles) + row tile) * pixel tiles + pixel tile, pixel tiles fastest so
// neighbouring workgroups share their weights in cache.
fn all_regions_tile(wid: vec3<u32>, nwg: vec3<u32>, li: u32, mode: u32) {
    let t = group_index(wid, nwg);
    if (t == NONE) { return; }
    let groups = row_groups();
    let lanes = 64u / groups;
    let cg = li / lanes;
    let pl = li % lanes;
    let tile_rows = RB * groups;
    let tile_px = PB * lanes;
    let hw = d.ho * d.wo;
    let rows = d.r * d.cout;
    let ntiles = (hw + tile_px - 1u) / tile_px;
    let mtiles = (rows + tile_rows - 1u) / tile_rows;
    let nt = t % ntiles;
    let row0 = ((t / ntiles) % mtiles) * tile_rows;
    let b = t / (ntiles * mtiles);
    // No return in the CHANNEL_LAST branch: the staged entries' barriers need control flow that a
    // uniformity analysis (WebGPU's) can prove uniform.
    if (mode == CHANNEL_LAST) {
        let lane = channel_last_lane(li, groups);
        if (lane.live) {
            let px = vec4(nt * tile_px + lane.px) + vec4(0u, 1u, 2u, 3u);
            let end = min(rows, row0 + tile_rows);
            store_block16(gemm_tile_channel_last(b, b * rows, row0 + lane.rows, end, px), b * rows, row0 + lane.rows, end, px);
        }
    } else {
        let pix = vec4(nt * tile_px + pl) + vec4(0u, 1u, 2u, 3u) * lanes;
        var acc: array<vec4<f32>, 8>;
        if (mode == DIRECT4) {
            acc = gemm_tile4(cg, b, row0, rows, pix);
        } else {
            acc = gemm_tile(li, cg, b, row0, rows, pix, mode == STAGED);
        }
        store_block(acc, b * rows, row0 + RB * cg, rows, pix);
    }
}

// Tile t = row tile * n + k for the n pixel tiles k of `tile_list` (every sample's, region by
// region): consecutive workgroups share a region's weight rows. The grid has exactly n x (row
// tiles) workgroups when dispatched indirectly, else the most the regions can need
// (B x (ceil(H'W'/tile) + r - 1) pixel tiles), the rest exiting at once.
fn selected_tile(wid: vec3<u32>, nwg: vec3<u32>, li: u32, mode: u32) {
    let t = group_index(wid, nwg);
    if (t == NONE) { return; }
    selected_tiles(t, 0u, tile_list[0], li, mode, false);
}

// Workgroup t of the tiles k0 .. k0 + n of `tile_list` (times the row tiles), their kernel rows
// at their sample's place in `kern4` or, `per_region`, at the start of a binding holding only
// their (sample, region)'s O rows.
fn selected_tiles(t: u32, k0: u32, n: u32, li: u32, mode: u32, per_region: bool) {
    let groups = row_groups();
    let lanes = 64u / groups;
    // CHANNEL_LAST: `channel_last_lane`, 4 consecutive pixels per lane, so that in a region's last, partly filled
    // tile a lane without pixels is a whole SIMD group of a CPU adapter, which then skips the
    // tile instead of computing 4 dead pixels.
    let cl = mode == CHANNEL_LAST;
    let lane = channel_last_lane(li, groups);
    let cg = li / lanes;
    let pl = li % lanes;
    let tile_rows = RB * groups;
    let tile_px = PB * lanes;
    let hw = d.ho * d.wo;
    let mtiles = (d.cout + tile_rows - 1u) / tile_rows;
    if (t >= n * mtiles) { return; }
    let k = k0 + t % n;
    let o0 = (t / n) * tile_rows;
    let bg = tile_list[1u + 3u * k];
    let first = tile_list[2u + 3u * k];
    let count = tile_list[3u + 3u * k];
    let b = bg / d.r;
    let g = bg % d.r;
    let j = select(vec4(pl) + vec4(0u, 1u, 2u, 3u) * lanes, vec4(lane.px) + vec4(0u, 1u, 2u, 3u), cl);
    let has = j < vec4(count);
    let at = select(vec4(0u), vec4(b * hw + first) + j, has);
    let pix = select(vec4(hw), vec4(order[at.x], order[at.y], order[at.z], order[at.w]), has);
    // No return on a lane's values before the staged entries' barriers: WebGPU's uniformity
    // analysis rejects them.
    if (cl) {
        if (lane.live && j.x < count) {
            let row = o0 + lane.rows;
            let end = min(d.cout, o0 + tile_rows);
            // A per-region binding holds only this (sample, region)'s rows; else they follow the sample's.
            let kb = select(b * d.r * d.cout + g * d.cout, 0u, per_region);
            store_block16(gemm_tile_channel_last(b, kb, row, end, pix), b * d.cout, row, end, pix);
        }
    } else {
        var acc: array<vec4<f32>, 8>;
        if (mode == DIRECT4) {
            acc = gemm_tile4(cg, b, g * d.cout + o0, (g + 1u) * d.cout, pix);
        } else {
            acc = gemm_tile(li, cg, b, g * d.cout + o0, (g + 1u) * d.cout, pix, mode == STAGED);
        }
        store_block(acc, b * d.cout, o0 + RB * cg, d.cout, pix);
    }
}

@compute @workgroup_size(64)
fn all_regions(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    all_regions_tile(wid, nwg, li, STAGED);
}

@compute @workgroup_size(64)
fn all_regions_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    all_regions_tile(wid, nwg, li, DIRECT);
}

@compute @workgroup_size(64)
fn selected(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    selected_tile(wid, nwg, li, STAGED);
}

@compute @workgroup_size(64)
fn selected_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    selected_tile(wid, nwg, li, DIRECT);
}

@compute @workgroup_size(64)
fn all_regions_direct4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    all_regions_tile(wid, nwg, li, DIRECT4);
}

@compute @workgroup_size(64)
fn selected_direct4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    selected_tile(wid, nwg, li, DIRECT4);
}

@compute @workgroup_size(64)
fn all_regions_channel_last(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    all_regions_tile(wid, nwg, li, CHANNEL_LAST);
}

@compute @workgroup_size(64)
fn selected_channel_last(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    selected_tile(wid, nwg, li, CHANNEL_LAST);
}

// The first of the n listed tiles whose (sample, region) is at least j (the list is sorted by it).
fn first_tile(j: u32, n: u32) -> u32 {
    var lo = 0u;
    var hi = n;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (tile_list[1u + 3u * mid] < j) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// `selected_channel_last` for one (sample, region) j = bound_region(), its O kernel rows bound alone as the
// uniform binding (`correlation_ubo`) where the whole kernel does not fit 64 KiB but one region's
// rows do: one dispatch per (sample, region), each over exactly that one's tiles (its grid
// written by region_select.wgsl `tiles` at tile_args[4 (1 + j)]).
@compute @workgroup_size(64)
fn selected_channel_last_per_region(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == NONE) { return; }
    let n = tile_list[0];
    let j = bound_region();
    let k0 = first_tile(j, n);
    selected_tiles(t, k0, first_tile(j + 1u, n) - k0, li, CHANNEL_LAST, true);
}
