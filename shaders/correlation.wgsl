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

// Weight (b, row, kidx) of the kernel viewed as B x (r*O) x (I*k*k), or 0 past `row_end`.
fn weight(b: u32, row: u32, row_end: u32, kidx: u32, kd: u32) -> f32 {
    if (row >= row_end || kidx >= kd) {
        return 0.0;
    }
    return kern[(b * d.r * d.cout + row) * kd + kidx];
}

// Rows row0 + 8*cg .. +8 (those below row_end) of sample b times the pixels `pix` (>= H'W'
// means none); acc[q * 2 + h] holds rows 4h .. 4h+3 of pixel q.
fn gemm_tile(li: u32, cg: u32, b: u32, row0: u32, row_end: u32, pix: array<u32, PB>) -> array<vec4<f32>, 8> {
    let groups = d.aux0;
    let rows4 = 2u * groups;
    let kk = d.k * d.k;
    let kd = d.cin * kk;
    let hw = d.ho * d.wo;
    let plane = d.h * d.w;
    var iy0: array<i32, PB>;
    var ix0: array<i32, PB>;
    for (var q = 0u; q < PB; q++) {
        if (pix[q] < hw) {
            iy0[q] = i32((pix[q] / d.wo) * d.stride) - i32(d.pad);
            ix0[q] = i32((pix[q] % d.wo) * d.stride) - i32(d.pad);
        } else {
            // Far above the image: every tap reads as padding.
            iy0[q] = -0x40000000;
            ix0[q] = 0;
        }
    }
    let xb = b * d.cin * plane;
    let kb = b * d.r * d.cout;
    var acc: array<vec4<f32>, 8>;
    for (var k0 = 0u; k0 < kd; k0 += KC) {
        // Stage the tile's 8*CG rows x KC columns, reading along rows.
        for (var e = li; e < KC * rows4 * 4u; e += 64u) {
            let rr = e / KC;
            let col = k0 + e % KC;
            let row = row0 + rr;
            var w = 0.0;
            if (row < row_end && col < kd) {
                w = kern[(kb + row) * kd + col];
            }
            wsh[(e % KC) * rows4 + rr / 4u][rr % 4u] = w;
        }
        workgroupBarrier();
        let kend = min(KC, kd - k0);
        // (i, u, v) of column k0, then stepped along: no division in the loop.
        var i = k0 / kk;
        var u = (k0 % kk) / d.k;
        var v = k0 % d.k;
        for (var c = 0u; c < kend; c++) {
            let dy = i32(u * d.dil);
            let dx = i32(v * d.dil);
            let xp = xb + i * plane;
            let w0 = wsh[c * rows4 + 2u * cg];
            let w1 = wsh[c * rows4 + 2u * cg + 1u];
            for (var q = 0u; q < PB; q++) {
                let iy = iy0[q] + dy;
                let ix = ix0[q] + dx;
                var xv = 0.0;
                if (iy >= 0 && iy < i32(d.h) && ix >= 0 && ix < i32(d.w)) {
                    xv = x[xp + u32(iy) * d.w + u32(ix)];
                }
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
        workgroupBarrier();
    }
    return acc;
}

// Tile t = ((b * row tiles) + row tile) * pixel tiles + pixel tile, pixel tiles fastest so
// neighbouring workgroups share their weights in cache.
@compute @workgroup_size(64)
fn all_regions(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
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
    let acc = gemm_tile(li, cg, b, row0, rows, pix);
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
@compute @workgroup_size(64)
fn selected(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
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
    let acc = gemm_tile(li, cg, b, g * d.cout + o0, (g + 1u) * d.cout, pix);
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
