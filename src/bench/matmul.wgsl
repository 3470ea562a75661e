// A plain single-precision GEMM, C = A B (row-major, A: M x K, B: K x N), timed by the benchmark
// as the device's attainable rate. M = rows_m(), N = cols_n(), K = d.cin. One workgroup per tile;
// tiles are numbered by `group_index` (see src/gpu/correlation.rs).
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> bm: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// The shader-specific words of `Dims`, by name.
// rows_m: M, rows of A and C (`Dims::matmul`).
fn rows_m() -> u32 { return d.aux0; }
// cols_n: N, columns of B and C.
fn cols_n() -> u32 { return d.aux1; }

// `tiled`: the textbook 2-D tiling. A 32 x 32 tile of C per workgroup of 8 x 8 invocations, each
// 4 x 4 outputs in registers; K in chunks of 32 staged through workgroup memory (8 KiB).
const T2: u32 = 32u;
const KC2: u32 = 32u;
var<workgroup> a2: array<f32, 1024>; // [kk][m]
var<workgroup> b2: array<f32, 1024>; // [kk][n]

@compute @workgroup_size(64)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let tile = group_index(wid, nwg);
    if (tile == 0xffffffffu) { return; }
    let m = rows_m();
    let n = cols_n();
    let kd = d.cin;
    let tiles_n = (n + T2 - 1u) / T2;
    let m0 = (tile / tiles_n) * T2;
    let n0 = (tile % tiles_n) * T2;
    let tm = (li / 8u) * 4u;
    let tn = (li % 8u) * 4u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < kd; k0 += KC2) {
        for (var j = 0u; j < 16u; j++) {
            let e = li + j * 64u;
            // A read along K, B along N: consecutive lanes, consecutive addresses.
            let am = e / KC2;
            let ak = e % KC2;
            var av = 0.0;
            if (m0 + am < m && k0 + ak < kd) { av = a[(m0 + am) * kd + k0 + ak]; }
            a2[ak * T2 + am] = av;
            let bk = e / T2;
            let bn = e % T2;
            var bv = 0.0;
            if (k0 + bk < kd && n0 + bn < n) { bv = bm[(k0 + bk) * n + n0 + bn]; }
            b2[bk * T2 + bn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KC2; kk++) {
            let ar = vec4(a2[kk * T2 + tm], a2[kk * T2 + tm + 1u], a2[kk * T2 + tm + 2u], a2[kk * T2 + tm + 3u]);
            let br = vec4(b2[kk * T2 + tn], b2[kk * T2 + tn + 1u], b2[kk * T2 + tn + 2u], b2[kk * T2 + tn + 3u]);
            acc[0] += ar.x * br;
            acc[1] += ar.y * br;
            acc[2] += ar.z * br;
            acc[3] += ar.w * br;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = m0 + tm + i;
        for (var j = 0u; j < 4u; j++) {
            if (row < m && n0 + tn + j < n) { c[row * n + n0 + tn + j] = acc[i][j]; }
        }
    }
}

// `blocked`: the register blocking of the layer's correlation (shaders/correlation.wgsl) on a
// plain GEMM. Each invocation keeps 8 rows x 4 columns of C in registers: per inner step two
// vec4s of A from workgroup memory (the same address for the 8 invocations of a row group) and 4
// values of B straight from memory feed 32 multiply-adds. Tile: 32 rows x 64 columns (4 row
// groups of 16 column lanes), K staged in chunks of 32 (4 KiB).
const KCB: u32 = 32u;
var<workgroup> ab: array<vec4<f32>, 256>; // [kk][row4], KCB x 8

@compute @workgroup_size(64)
fn blocked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let tile = group_index(wid, nwg);
    if (tile == 0xffffffffu) { return; }
    let m = rows_m();
    let n = cols_n();
    let kd = d.cin;
    let tiles_n = (n + 63u) / 64u;
    let m0 = (tile / tiles_n) * 32u;
    let n0 = (tile % tiles_n) * 64u;
    let cg = li / 16u;
    let pl = li % 16u;
    var acc: array<vec4<f32>, 8>;
    for (var k0 = 0u; k0 < kd; k0 += KCB) {
        for (var e = li; e < KCB * 32u; e += 64u) {
            let rr = e / KCB;
            let kc = e % KCB;
            var av = 0.0;
            if (m0 + rr < m && k0 + kc < kd) { av = a[(m0 + rr) * kd + k0 + kc]; }
            ab[kc * 8u + rr / 4u][rr % 4u] = av;
        }
        workgroupBarrier();
        let kend = min(KCB, kd - k0);
        for (var kk = 0u; kk < kend; kk++) {
            let w0 = ab[kk * 8u + 2u * cg];
            let w1 = ab[kk * 8u + 2u * cg + 1u];
            let brow = (k0 + kk) * n;
            for (var q = 0u; q < 4u; q++) {
                let col = n0 + pl + 16u * q;
                var bv = 0.0;
                if (col < n) { bv = bm[brow + col]; }
                acc[2u * q] += w0 * bv;
                acc[2u * q + 1u] += w1 * bv;
            }
        }
        workgroupBarrier();
    }
    for (var q = 0u; q < 4u; q++) {
        let col = n0 + pl + 16u * q;
        if (col >= n) { continue; }
        for (var i = 0u; i < 8u; i++) {
            let row = m0 + 8u * cg + i;
            if (row < m) { c[row * n + col] = acc[2u * q + i / 4u][i % 4u]; }
        }
    }
}

// The 8 x 4 block of C of invocation li in tile `tile` for `direct4` and `nt4` (32 x 64 tiles, 4
// row groups of 16 column lanes, as in `blocked`): rows r0 .. r0+7, their A row indices times
// `stride` (rows past M repeat the last one: their results are never stored), columns `col` (16
// apart) and which of them exist.
struct Block8x4 {
    r0: u32,
    rba: vec4<u32>,
    rbb: vec4<u32>,
    col: vec4<u32>,
    ok: vec4<bool>,
}

fn block8x4(tile: u32, li: u32, stride: u32) -> Block8x4 {
    let m = rows_m();
    let n = cols_n();
    let tiles_n = (n + 63u) / 64u;
    let r0 = (tile / tiles_n) * 32u + 8u * (li / 16u);
    let rl = m - 1u;
    let rba = min(vec4(r0) + vec4(0u, 1u, 2u, 3u), vec4(rl)) * stride;
    let rbb = min(vec4(r0) + vec4(4u, 5u, 6u, 7u), vec4(rl)) * stride;
    let col = vec4((tile % tiles_n) * 64u + li % 16u) + vec4(0u, 16u, 32u, 48u);
    return Block8x4(r0, rba, rbb, col, col < vec4(n));
}

// Stores a block: acc[2q + h] holds rows 4h .. 4h+3 of column q.
fn store8x4(bl: Block8x4, acc: array<vec4<f32>, 8>) {
    for (var q = 0u; q < 4u; q++) {
        if (!bl.ok[q]) { continue; }
        for (var i = 0u; i < 8u; i++) {
            let row = bl.r0 + i;
            if (row < rows_m()) { c[row * cols_n() + bl.col[q]] = acc[2u * q + i / 4u][i % 4u]; }
        }
    }
}

// `direct4`: the register blocking of the correlation's CPU-adapter entries
// (`gemm_tile4` in shaders/correlation.wgsl) on a plain GEMM: the same 8 x 4 block per
// invocation and 32 x 64 tile as `blocked`, with A read straight from memory as vec4s along K
// (K % 4 == 0): per 4 inner steps 8 vec4 A loads and 16 B loads feed 128 multiply-adds.
@group(0) @binding(4) var<storage, read> a4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn direct4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let tile = group_index(wid, nwg);
    if (tile == 0xffffffffu) { return; }
    let n = cols_n();
    let kd4 = d.cin / 4u;
    let bl = block8x4(tile, li, kd4);
    let rba = bl.rba;
    let rbb = bl.rbb;
    let ok = bl.ok;
    let cc = select(vec4(0u), bl.col, ok);
    var p0a = vec4(0.0); var p0b = vec4(0.0);
    var p1a = vec4(0.0); var p1b = vec4(0.0);
    var p2a = vec4(0.0); var p2b = vec4(0.0);
    var p3a = vec4(0.0); var p3b = vec4(0.0);
    for (var k4 = 0u; k4 < kd4; k4++) {
        let q0 = a4[rba.x + k4];
        let q1 = a4[rba.y + k4];
        let q2 = a4[rba.z + k4];
        let q3 = a4[rba.w + k4];
        let q4 = a4[rbb.x + k4];
        let q5 = a4[rbb.y + k4];
        let q6 = a4[rbb.z + k4];
        let q7 = a4[rbb.w + k4];
        for (var e = 0u; e < 4u; e++) {
            let w0 = vec4(q0[e], q1[e], q2[e], q3[e]);
            let w1 = vec4(q4[e], q5[e], q6[e], q7[e]);
            let brow = (4u * k4 + e) * n;
            let bv = select(vec4(0.0), vec4(bm[brow + cc.x], bm[brow + cc.y], bm[brow + cc.z], bm[brow + cc.w]), ok);
            p0a += w0 * bv.x; p0b += w1 * bv.x;
            p1a += w0 * bv.y; p1b += w1 * bv.y;
            p2a += w0 * bv.z; p2b += w1 * bv.z;
            p3a += w0 * bv.w; p3b += w1 * bv.w;
        }
    }
    store8x4(bl, array<vec4<f32>, 8>(p0a, p0b, p1a, p1b, p2a, p2b, p3a, p3b));
}

// `nt4`: the register blocking of the correlation's channel-last entries (`gemm_tile_channel_last` in
// shaders/correlation.wgsl) on a plain GEMM whose B is stored transposed (N x K, an "NT" GEMM):
// the same 8 x 4 block per invocation and 32 x 64 tile as `direct4`, both operands read as vec4s
// along K (K % 4 == 0): per 4 inner steps 8 vec4 A loads and 4 vec4 B loads feed 128
// multiply-adds.
@group(0) @binding(5) var<storage, read> bt4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn nt4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
    let tile = group_index(wid, nwg);
    if (tile == 0xffffffffu) { return; }
    let kd4 = d.cin / 4u;
    let bl = block8x4(tile, li, kd4);
    let rba = bl.rba;
    let rbb = bl.rbb;
    let ok = bl.ok;
    let cb = select(vec4(0u), bl.col, ok) * kd4;
    var p0a = vec4(0.0); var p0b = vec4(0.0);
    var p1a = vec4(0.0); var p1b = vec4(0.0);
    var p2a = vec4(0.0); var p2b = vec4(0.0);
    var p3a = vec4(0.0); var p3b = vec4(0.0);
    for (var k4 = 0u; k4 < kd4; k4++) {
        let q0 = a4[rba.x + k4];
        let q1 = a4[rba.y + k4];
        let q2 = a4[rba.z + k4];
        let q3 = a4[rba.w + k4];
        let q4 = a4[rbb.x + k4];
        let q5 = a4[rbb.y + k4];
        let q6 = a4[rbb.z + k4];
        let q7 = a4[rbb.w + k4];
        let b0 = select(vec4(0.0), bt4[cb.x + k4], ok.x);
        let b1 = select(vec4(0.0), bt4[cb.y + k4], ok.y);
        let b2 = select(vec4(0.0), bt4[cb.z + k4], ok.z);
        let b3 = select(vec4(0.0), bt4[cb.w + k4], ok.w);
        for (var e = 0u; e < 4u; e++) {
            let w0 = vec4(q0[e], q1[e], q2[e], q3[e]);
            let w1 = vec4(q4[e], q5[e], q6[e], q7[e]);
            p0a += w0 * b0[e]; p0b += w1 * b0[e];
            p1a += w0 * b1[e]; p1b += w1 * b1[e];
            p2a += w0 * b2[e]; p2b += w1 * b2[e];
            p3a += w0 * b3[e]; p3b += w1 * b3[e];
        }
    }
    store8x4(bl, array<vec4<f32>, 8>(p0a, p0b, p1a, p1b, p2a, p2b, p3a, p3b));
}
