// Per-sample correlation of x with the generated kernels, as one GEMM per sample: rows are the
// kernel channels g*O + o (the kernel tensor viewed as B x (r*O) x (I*k*k)), columns are output
// pixels, and the inner dimension (i, u, v) is read from x on the fly (implicit im2col).
// `all_regions`: every row times every pixel, into B x r x O x H' x W' (training: the backward
//   needs every region's output).
// `selected`: region g's O rows times only the pixels whose region is g, taken from the
//   per-region pixel lists of `region_select.wgsl` `lists`, into B x O x H' x W' (inference).
//
// Tiling: a workgroup of 64 invocations computes an (8*CG rows) x (256/CG pixels) tile, CG in
// {1, 2, 4, 8} chosen by the planner (d.aux0) to fit O and the pixels per region. Invocation li
// is in row group li / (64/CG) and pixel lane li % (64/CG); it keeps an 8 x 4 block in registers
// (8 rows, 4 pixels strided by 64/CG, so consecutive invocations read consecutive pixels): per
// inner step 2 vec4 weight loads and 4 x loads feed 32 multiply-adds. The weights of a chunk of
// KC inner indices are staged in workgroup memory; the invocations of a row group read the same
// address (a broadcast). x values are read from memory by the invocation that uses them.
// Tiles are numbered by `group_index` (src/gpu/tiles.rs).
// The `_direct` entries skip the staging and read each weight from memory in the inner loop, for
// CPU adapters (lavapipe): there workgroup memory is ordinary memory, every per-invocation load is
// a per-lane gather either way, and the staging pass and barriers are pure overhead.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> kern: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// B x H'W' pixel indices, grouped by region (ascending within a region).
@group(0) @binding(4) var<storage, read> order: array<u32>;
// B x (r+1): region g's pixels are order[b*H'W' + starts[g] .. b*H'W' + starts[g+1]].
@group(0) @binding(5) var<storage, read> starts: array<u32>;

const RB: u32 = 8u; // rows per invocation (two vec4s)
const PB: u32 = 4u; // pixels per invocation
const KC: u32 = 32u; // inner indices staged per chunk
const ROWS4_MAX: u32 = 16u; // (8 * CG) / 4 for CG = 8
const NONE: u32 = 0xffffffffu;
var<workgroup> wsh: array<vec4<f32>, KC * ROWS4_MAX>; // [kc][row4]: 8 KiB

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    let t = wid.x + wid.y * nwg.x;
    if (t >= d.count / WG) {
        return NONE;
    }
    return d.base / WG + t;
}

// Rows row0 + 8*cg .. +8 (those below row_end) of sample b times the pixels `pix` (>= H'W'
// means none); acc[q * 2 + h] holds rows 4h .. 4h+3 of pixel q.
fn gemm_tile(li: u32, cg: u32, b: u32, row0: u32, row_end: u32, pix: array<u32, PB>, staged: bool) -> array<vec4<f32>, 8> {
    let groups = d.aux0;
    let rows4 = 2u * groups;
    let kk = d.k * d.k;
    let kd = d.cin * kk;
    let hw = d.ho * d.wo;
    let plane = d.h * d.w;
    // Per pixel: its window's top-left corner, and its x offset (u32 arithmetic wraps, so the
    // offset of a valid tap comes out right even when the corner is in the padding).
    var iy0: array<i32, PB>;
    var ix0: array<i32, PB>;
    var xo: array<u32, PB>;
    let xb = b * d.cin * plane;
    for (var q = 0u; q < PB; q++) {
        if (pix[q] < hw) {
            iy0[q] = i32((pix[q] / d.wo) * d.stride) - i32(d.pad);
            ix0[q] = i32((pix[q] % d.wo) * d.stride) - i32(d.pad);
        } else {
            // Far above the image: every tap reads as padding.
            iy0[q] = -0x40000000;
            ix0[q] = 0;
        }
        xo[q] = xb + bitcast<u32>(iy0[q] * i32(d.w) + ix0[q]);
    }
    let kb = b * d.r * d.cout;
    let kc = li % KC;
    // Direct: this invocation's 8 weight rows (rows past row_end repeat the last one; their
    // results are never stored).
    var rb: array<u32, 8>;
    for (var m = 0u; m < 8u; m++) {
        rb[m] = (kb + min(row0 + 8u * cg + m, row_end - 1u)) * kd;
    }
    var acc: array<vec4<f32>, 8>;
    for (var k0 = 0u; k0 < kd; k0 += KC) {
        if (staged) {
            // Stage the tile's 8*CG rows x KC columns: invocation li loads column kc = li % KC of
            // every (64/KC)-th row, so consecutive invocations read along a row.
            let col = k0 + kc;
            for (var rr = li / KC; rr < 4u * rows4; rr += 64u / KC) {
                let row = row0 + rr;
                let ok = row < row_end && col < kd;
                wsh[kc * rows4 + rr / 4u][rr % 4u] = select(0.0, kern[select(0u, (kb + row) * kd + col, ok)], ok);
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
                w0 = wsh[c * rows4 + 2u * cg];
                w1 = wsh[c * rows4 + 2u * cg + 1u];
            } else {
                let col = k0 + c;
                w0 = vec4(kern[rb[0] + col], kern[rb[1] + col], kern[rb[2] + col], kern[rb[3] + col]);
                w1 = vec4(kern[rb[4] + col], kern[rb[5] + col], kern[rb[6] + col], kern[rb[7] + col]);
            }
            for (var q = 0u; q < PB; q++) {
                // Unsigned compares: a negative coordinate is huge, so one test per axis.
                let ok = u32(iy0[q] + dy) < d.h && u32(ix0[q] + dx) < d.w;
                let xv = select(0.0, x[select(0u, xo[q] + off, ok)], ok);
                acc[q * 2u] += w0 * xv;
                acc[q * 2u + 1u] += w1 * xv;
            }
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
    return acc;
}

// Tile t = ((b * row tiles) + row tile) * pixel tiles + pixel tile, pixel tiles fastest so
// neighbouring workgroups share their weights in cache.
fn all_regions_tile(wid: vec3<u32>, nwg: vec3<u32>, li: u32, staged: bool) {
    let t = group_index(wid, nwg);
    if (t == NONE) { return; }
    let groups = d.aux0;
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
    var pix: array<u32, PB>;
    for (var q = 0u; q < PB; q++) {
        pix[q] = nt * tile_px + pl + lanes * q;
    }
    let acc = gemm_tile(li, cg, b, row0, rows, pix, staged);
    for (var q = 0u; q < PB; q++) {
        if (pix[q] >= hw) { continue; }
        for (var m = 0u; m < RB; m++) {
            let row = row0 + RB * cg + m;
            if (row < rows) {
                out[(b * rows + row) * hw + pix[q]] = acc[q * 2u + m / 4u][m % 4u];
            }
        }
    }
}

// Tile t = ((b * row tiles) + row tile) * max pixel tiles + pixel tile, where the pixel tiles of
// a sample are region 0's, then region 1's, ...: at most ceil(H'W'/tile) + r - 1 of them.
fn selected_tile(wid: vec3<u32>, nwg: vec3<u32>, li: u32, staged: bool) {
    let t = group_index(wid, nwg);
    if (t == NONE) { return; }
    let groups = d.aux0;
    let lanes = 64u / groups;
    let cg = li / lanes;
    let pl = li % lanes;
    let tile_rows = RB * groups;
    let tile_px = PB * lanes;
    let hw = d.ho * d.wo;
    let ntiles = (hw + tile_px - 1u) / tile_px + d.r - 1u;
    let mtiles = (d.cout + tile_rows - 1u) / tile_rows;
    let lt = t % ntiles;
    let o0 = ((t / ntiles) % mtiles) * tile_rows;
    let b = t / (ntiles * mtiles);
    // Find the region of pixel tile lt: the same walk in every invocation.
    var rest = lt;
    var g = d.r;
    var first = 0u;
    var count = 0u;
    for (var gg = 0u; gg < d.r; gg++) {
        let s0 = starts[b * (d.r + 1u) + gg];
        let s1 = starts[b * (d.r + 1u) + gg + 1u];
        let tiles = (s1 - s0 + tile_px - 1u) / tile_px;
        if (rest < tiles) {
            g = gg;
            first = s0 + rest * tile_px;
            count = min(tile_px, s1 - first);
            break;
        }
        rest -= tiles;
    }
    if (g == d.r) { return; }
    var pix: array<u32, PB>;
    for (var q = 0u; q < PB; q++) {
        let j = pl + lanes * q;
        pix[q] = hw;
        if (j < count) {
            pix[q] = order[b * hw + first + j];
        }
    }
    let acc = gemm_tile(li, cg, b, g * d.cout + o0, (g + 1u) * d.cout, pix, staged);
    for (var q = 0u; q < PB; q++) {
        if (pix[q] >= hw) { continue; }
        for (var m = 0u; m < RB; m++) {
            let o = o0 + RB * cg + m;
            if (o < d.cout) {
                out[(b * d.cout + o) * hw + pix[q]] = acc[q * 2u + m / 4u][m % 4u];
            }
        }
    }
}

@compute @workgroup_size(64)
fn all_regions(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    all_regions_tile(wid, nwg, li, true);
}

@compute @workgroup_size(64)
fn all_regions_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    all_regions_tile(wid, nwg, li, false);
}

@compute @workgroup_size(64)
fn selected(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    selected_tile(wid, nwg, li, true);
}

@compute @workgroup_size(64)
fn selected_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    selected_tile(wid, nwg, li, false);
}
