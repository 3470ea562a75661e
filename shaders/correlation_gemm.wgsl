// The GPU family's correlation (`Correlation::Gemm`): the per-sample GEMM of `correlation.wgsl`
// (kernel rows b*r*O + g*O + o by output pixels, inner index (i, u, v) read from x on the fly) as
// a tiled implicit GEMM shaped for GPUs:
// - 256 invocations per workgroup, each a 4 x 4 block of outputs (4 rows by 4 consecutive
//   pixels), over tiles of TM x TN = 64 x 64 or 32 x 128 (`tile_rows()`, `tile_px()`);
// - both operands staged through workgroup memory, KC = 16 inner indices at a time: the weights
//   from the kernel's own layout (8 consecutive inner indices of 4 rows per 32 lanes: one 32-byte
//   sector per row), x from NCHW (32 consecutive pixels per 32 lanes); every store and every
//   vec4 read is free of bank conflicts (`tests` in src/gpu/shaders.rs evaluate every index);
// - the next chunk's global loads are issued into registers before the current chunk's
//   multiply-adds, so their latency hides behind the arithmetic (double buffering through
//   registers: the workgroup memory holds one chunk, 10.25 KiB, and its x indices, 0.25 KiB);
// - no integer division per staging load: the tiles are powers of two (shifts and masks), and
//   x's inner indices (channel, tap) are decoded once per chunk by 16 invocations into `xtab`;
//   a full chunk's 16 multiply-add steps run in a loop of constant trip count (unrollable);
// - the inner index cut into `slices()` K slices where the tiles alone would leave a GPU's
//   compute units idle: slice s writes its partial sums to `part` and `slice_sum` adds the slices
//   in a fixed order (deterministic, no atomics). Every output is the sum over the inner index in
//   ascending order within a slice, so one slice gives bitwise the sums of `correlation.wgsl`.
// `gemm_all_regions`: every row times every pixel (training), into B x r x O x H' x W'.
// `gemm_selected`: region g's O rows times the pixels of one tile of `tile_list` (inference).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> kern: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// B x H'W' pixel indices grouped by region (region_select.wgsl `lists`).
@group(0) @binding(4) var<storage, read> order: array<u32>;
// The fused path's pixel tiles (region_select.wgsl `lists_blocks`): per tile slot k
// [1 + 3k ..] = (b * r + g, first index into sample b's `order`, pixel count; 0 for none).
@group(0) @binding(5) var<storage, read> tile_list: array<u32>;
// slices() partial outputs, slice s at s * (the output's elements); unused with one slice.
@group(0) @binding(6) var<storage, read_write> part: array<f32>;

// The shader-specific words of `Dims`, by name (`Dims::corr_tile`, `Dims::slice_sum`).
fn tile_px() -> u32 { return d.aux0 & 0xfffu; }
fn tile_rows() -> u32 { return (d.aux0 >> 12u) & 0xfffu; }
fn slices() -> u32 { return d.aux0 >> 24u; }
// log2 of the tile's pixels and rows: both are powers of two (`CorrTiling`).
fn px_log2() -> u32 { return countTrailingZeros(tile_px()); }
fn rows_log2() -> u32 { return countTrailingZeros(tile_rows()); }

const GW: u32 = 256u; // invocations per workgroup
const KC: u32 = 16u; // inner indices per staged chunk
const NONE: u32 = 0xffffffffu;
// Workgroup memory, as vec4s: the weights at [kc * (TM + 4) + m] (a row pad of one vec4 keeps
// 8 inner indices of 4 rows in 32 different banks), then x at XOFF + [kc * TN + j]. Sized for
// the larger of the tiles: 32 x 128 needs (16 * 36 + 16 * 128) / 4 vec4s.
const SH4: u32 = 656u;
var<workgroup> sh: array<vec4<f32>, SH4>;
// x's inner index k0 + q of the chunk being staged, q < KC: (its channel's offset i H W, the
// tap's offsets u dil and v dil, 1 where i < I), written one chunk ahead (`stage_index`).
var<workgroup> xtab: array<vec4<u32>, KC>;

// One workgroup's output tile.
struct Tile {
    // The sample, its first kernel row of the tile and how many of the TM rows exist.
    b: u32,
    krow: u32,
    nrows: u32,
    // The output row of the tile's first row: out[(orow + m) * H'W' + pixel].
    orow: u32,
    // Pixels: the tile's first pixel (all regions) or its first index into `order` (selected),
    // and how many of the TN exist.
    first: u32,
    npx: u32,
    selected: bool,
    // The K slice: chunks c0 .. c1 of the inner index.
    c0: u32,
    c1: u32,
    slice: u32,
}

// Output pixel j of the tile (j < npx).
fn tile_pixel(t: Tile, j: u32) -> u32 {
    if (t.selected) {
        return order[t.b * d.ho * d.wo + t.first + j];
    }
    return t.first + j;
}

// Chunks c0 .. c1 of slice s of the inner index's ceil(I*k*k / KC) chunks.
fn slice_chunks(t: Tile, s: u32) -> Tile {
    var r = t;
    let chunks = (d.cin * d.k * d.k + KC - 1u) / KC;
    let per = (chunks + slices() - 1u) / slices();
    r.slice = s;
    r.c0 = min(s * per, chunks);
    r.c1 = min(r.c0 + per, chunks);
    return r;
}

// Where the staging lane li reads x: its pixel (li % TN, the same for every chunk) as the
// window's corner and its sample's first x index; `live` false past the tile's pixels.
struct XLane {
    iy0: i32,
    ix0: i32,
    xb: u32,
    live: bool,
}

fn x_lane(t: Tile, li: u32) -> XLane {
    let j = li & (tile_px() - 1u);
    let live = j < t.npx;
    let p = select(0u, tile_pixel(t, min(j, max(t.npx, 1u) - 1u)), live);
    let iy0 = i32((p / d.wo) * d.stride) - i32(d.pad);
    let ix0 = i32((p % d.wo) * d.stride) - i32(d.pad);
    return XLane(iy0, ix0, t.b * d.cin * d.h * d.w, live);
}

// `xtab`'s entry for inner index kk (channel i, tap u, v).
fn x_index(kk: u32) -> vec4<u32> {
    let taps = d.k * d.k;
    let i = kk / taps;
    let u = (kk % taps) / d.k;
    let v = kk % d.k;
    return vec4(i * d.h * d.w, u * d.dil, v * d.dil, u32(i < d.cin));
}

// The first KC invocations decode chunk c's inner indices into `xtab` (its loads read them
// after the next barrier).
fn stage_index(c: u32, li: u32) {
    if (li < KC) {
        xtab[li] = x_index(c * KC + li);
    }
}

// x at the staged chunk's inner index q for the staging lane, 0 in the padding or past the
// inner dimension or the tile's pixels.
fn x_at(l: XLane, q: u32) -> f32 {
    let e = xtab[q];
    let iy = l.iy0 + i32(e.y);
    let ix = l.ix0 + i32(e.z);
    let ok = l.live && e.w == 1u && u32(iy) < d.h && u32(ix) < d.w;
    let at = l.xb + e.x + u32(iy) * d.w + u32(ix);
    return select(0.0, x[select(0u, at, ok)], ok);
}

// Kernel row m of the tile at inner index kk, 0 past its rows or the inner dimension.
fn w_at(t: Tile, m: u32, kk: u32) -> f32 {
    let kd = d.cin * d.k * d.k;
    let ok = m < t.nrows && kk < kd;
    return select(0.0, kern[select(0u, (t.krow + m) * kd + kk, ok)], ok);
}

// The staging loads of one chunk: weights (TM * KC / GW of them per lane, at most 4) and x
// (TN * KC / GW, at most 8). Loops of constant length so that the values stay in registers.
struct Loads {
    w: array<f32, 4>,
    x: array<f32, 8>,
}

// Weight element e of a chunk: inner index e % 8 + 8 (e / (8 TM)), row (e / 8) % TM.
fn w_kc(e: u32) -> u32 { return (e & 7u) + 8u * (e >> (3u + rows_log2())); }
fn w_row(e: u32) -> u32 { return (e >> 3u) & (tile_rows() - 1u); }

fn load_chunk(t: Tile, l: XLane, li: u32, k0: u32) -> Loads {
    var r: Loads;
    let wn = tile_rows() * KC / GW;
    for (var q = 0u; q < 4u; q++) {
        let e = li + GW * q;
        if (q < wn) {
            r.w[q] = w_at(t, w_row(e), k0 + w_kc(e));
        }
    }
    let xn = tile_px() * KC / GW;
    for (var q = 0u; q < 8u; q++) {
        // Pixel li % TN, inner index (li + GW q) / TN of the chunk.
        if (q < xn) {
            r.x[q] = x_at(l, (li >> px_log2()) + q * (GW >> px_log2()));
        }
    }
    return r;
}

fn store_chunk(r: Loads, li: u32) {
    let tm = tile_rows();
    let tn = tile_px();
    let wn = tm * KC / GW;
    for (var q = 0u; q < 4u; q++) {
        let e = li + GW * q;
        if (q < wn) {
            let at = w_kc(e) * (tm + 4u) + w_row(e);
            sh[at / 4u][at % 4u] = r.w[q];
        }
    }
    let xoff = KC * (tm + 4u);
    let xn = tn * KC / GW;
    for (var q = 0u; q < 8u; q++) {
        if (q < xn) {
            // Inner index (li + GW q) / TN, pixel li % TN: GW q is a multiple of TN.
            let at = xoff + li + GW * q;
            sh[at / 4u][at % 4u] = r.x[q];
        }
    }
}

// The tile's K slice into this invocation's 4 x 4 block: acc[q] holds rows 4 ty .. 4 ty + 3 of
// pixel 4 tx + q. Every invocation reaches every barrier (no return before them).
fn gemm(t: Tile, li: u32) -> array<vec4<f32>, 4> {
    let tm = tile_rows();
    let tn = tile_px();
    let ty = li / (tn / 4u);
    let tx = li % (tn / 4u);
    let wstride = (tm + 4u) / 4u;
    let xoff = KC * wstride;
    let kd = d.cin * d.k * d.k;
    let l = x_lane(t, li);
    var acc = array<vec4<f32>, 4>();
    stage_index(t.c0, li);
    workgroupBarrier();
    var next = load_chunk(t, l, li, t.c0 * KC);
    for (var c = t.c0; c < t.c1; c++) {
        workgroupBarrier();
        store_chunk(next, li);
        // The loads above read chunk c's indices before the barrier; the next chunk's follow.
        stage_index(c + 1u, li);
        workgroupBarrier();
        if (c + 1u < t.c1) {
            next = load_chunk(t, l, li, (c + 1u) * KC);
        }
        // Only the inner indices that exist: a zero step would turn a -0.0 sum into +0.0.
        let n = min(KC, kd - c * KC);
        if (n == KC) {
            for (var kc = 0u; kc < KC; kc++) {
                fma_step(&acc, kc * wstride + ty, xoff + kc * (tn / 4u) + tx);
            }
        } else {
            for (var kc = 0u; kc < n; kc++) {
                fma_step(&acc, kc * wstride + ty, xoff + kc * (tn / 4u) + tx);
            }
        }
    }
    return acc;
}

// One inner index of the block: 4 rows of weights at sh[w] times 4 pixels of x at sh[xi].
fn fma_step(acc: ptr<function, array<vec4<f32>, 4>>, w: u32, xi: u32) {
    let wv = sh[w];
    let xv = sh[xi];
    (*acc)[0] += wv * xv.x;
    (*acc)[1] += wv * xv.y;
    (*acc)[2] += wv * xv.z;
    (*acc)[3] += wv * xv.w;
}

// Stores the block: to `out` with one slice, else to slice t.slice of `part` (`elements`: the
// output's size).
fn store(t: Tile, li: u32, acc: array<vec4<f32>, 4>, elements: u32) {
    let tn = tile_px();
    let ty = li / (tn / 4u);
    let tx = li % (tn / 4u);
    let hw = d.ho * d.wo;
    let split = slices() > 1u;
    for (var q = 0u; q < 4u; q++) {
        let j = 4u * tx + q;
        if (j < t.npx) {
            let p = tile_pixel(t, j);
            for (var e = 0u; e < 4u; e++) {
                let m = 4u * ty + e;
                if (m < t.nrows) {
                    let at = (t.orow + m) * hw + p;
                    if (split) {
                        part[t.slice * elements + at] = acc[q][e];
                    } else {
                        out[at] = acc[q][e];
                    }
                }
            }
        }
    }
}

// Workgroup w = ((b * row tiles + row tile) * pixel tiles + pixel tile) * slices + slice: the
// slices of a tile and then its neighbours along the pixels run together and share weights in
// cache.
@compute @workgroup_size(256)
fn gemm_all_regions(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let w = group_index(wid, nwg);
    if (w == NONE) { return; }
    let tm = tile_rows();
    let tn = tile_px();
    let hw = d.ho * d.wo;
    let rows = d.r * d.cout;
    let ntiles = (hw + tn - 1u) / tn;
    let mtiles = (rows + tm - 1u) / tm;
    let tile = w / slices();
    let nt = tile % ntiles;
    let row0 = ((tile / ntiles) % mtiles) * tm;
    let b = tile / (ntiles * mtiles);
    var t: Tile;
    t.b = b;
    t.krow = b * rows + row0;
    t.nrows = min(tm, rows - row0);
    t.orow = b * rows + row0;
    t.first = nt * tn;
    t.npx = min(tn, hw - nt * tn);
    t.selected = false;
    t = slice_chunks(t, w % slices());
    store(t, li, gemm(t, li), d.batch * rows * hw);
}

// Workgroup w = (row tile * n + k) * slices + slice for the n = B x slots tile slots k of
// `tile_list` (region_select.wgsl `lists_blocks`: each sample's tiles, then empty slots, which
// return at once). A sample's regions need at most ceil(H'W' / TN) + r - 1 tiles.
@compute @workgroup_size(256)
fn gemm_selected(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let w = group_index(wid, nwg);
    if (w == NONE) { return; }
    let tm = tile_rows();
    let n = d.batch * ((d.ho * d.wo + tile_px() - 1u) / tile_px() + d.r - 1u);
    let mtiles = (d.cout + tm - 1u) / tm;
    let tile = w / slices();
    if (tile >= n * mtiles) { return; }
    let k = tile % n;
    let o0 = (tile / n) * tm;
    if (tile_list[3u + 3u * k] == 0u) { return; }
    let bg = tile_list[1u + 3u * k];
    let b = bg / d.r;
    let g = bg % d.r;
    var t: Tile;
    t.b = b;
    t.krow = (b * d.r + g) * d.cout + o0;
    t.nrows = min(tm, d.cout - o0);
    t.orow = b * d.cout + o0;
    t.first = tile_list[2u + 3u * k];
    t.npx = tile_list[3u + 3u * k];
    t.selected = true;
    t = slice_chunks(t, w % slices());
    store(t, li, gemm(t, li), d.batch * d.cout * d.ho * d.wo);
}

// The second pass of a sliced correlation: output element idx is the sum of its slices() partial
// sums in slice order. d.aux1: the output's elements (`Dims::slice_sum`).
@compute @workgroup_size(WG)
fn slice_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == NONE) { return; }
    var s = part[idx];
    for (var k = 1u; k < slices(); k++) {
        s += part[k * d.aux1 + idx];
    }
    out[idx] = s;
}
