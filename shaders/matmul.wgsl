// A plain single-precision GEMM, C = A B (row-major, A: M x K, B: K x N), timed by the benchmark
// as the device's attainable rate. M = d.aux0, N = d.aux1, K = d.cin. One workgroup per tile;
// tiles are numbered by `group_index` (see src/gpu/tiles.rs).
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> bm: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Linear tile index of this workgroup, or 0xffffffff for the padding of the folded grid.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    let t = wid.x + wid.y * nwg.x;
    if (t >= d.count / WG) {
        return 0xffffffffu;
    }
    return d.base / WG + t;
}

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
    let m = d.aux0;
    let n = d.aux1;
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

// `broadcast`: each invocation owns PX columns of C and computes TM rows of them; the TM x KC
// block of A is staged in workgroup memory and read at the same address by every invocation
// (a broadcast), B is read straight from memory by the one invocation that needs it. Tile:
// TM x (64 PX).
const TM: u32 = 16u;
const PX: u32 = 2u;
const KC: u32 = 64u;
var<workgroup> ab: array<f32, 1024>; // [kk][m], TM * KC

@compute @workgroup_size(64)
fn broadcast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let tile = group_index(wid, nwg);
    if (tile == 0xffffffffu) { return; }
    let m = d.aux0;
    let n = d.aux1;
    let kd = d.cin;
    let tn = 64u * PX;
    let tiles_n = (n + tn - 1u) / tn;
    let m0 = (tile / tiles_n) * TM;
    let n0 = (tile % tiles_n) * tn;
    var acc: array<array<f32, PX>, TM>;
    for (var k0 = 0u; k0 < kd; k0 += KC) {
        for (var j = 0u; j < TM * KC / 64u; j++) {
            let e = li + j * 64u;
            let am = e / KC;
            let ak = e % KC;
            var av = 0.0;
            if (m0 + am < m && k0 + ak < kd) { av = a[(m0 + am) * kd + k0 + ak]; }
            ab[ak * TM + am] = av;
        }
        workgroupBarrier();
        let kend = min(KC, kd - k0);
        for (var kk = 0u; kk < kend; kk++) {
            var bv: array<f32, PX>;
            for (var p = 0u; p < PX; p++) {
                let col = n0 + li + 64u * p;
                bv[p] = select(0.0, bm[(k0 + kk) * n + min(col, n - 1u)], col < n);
            }
            for (var i = 0u; i < TM; i++) {
                let av = ab[kk * TM + i];
                for (var p = 0u; p < PX; p++) {
                    acc[i][p] += av * bv[p];
                }
            }
        }
        workgroupBarrier();
    }
    for (var p = 0u; p < PX; p++) {
        let col = n0 + li + 64u * p;
        if (col >= n) { continue; }
        for (var i = 0u; i < TM; i++) {
            if (m0 + i < m) { c[(m0 + i) * n + col] = acc[i][p]; }
        }
    }
}
