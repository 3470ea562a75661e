// The GPU family's kernel gradient of the correlation: per (sample b, region g) the GEMM
//   dkern[b, g*O + o, kidx] = sum over the region's pixels p (ascending, from region_select.wgsl
//   `lists`) of gy[b, o, p] * x[b, i, p's tap (u, v)],   kidx = (i, u, v),
// as in `correlation_gemm.wgsl`: 256 invocations per 64 (o) x 64 (kidx) tile, each a 4 x 4 block,
// both operands staged 16 pixels at a time (gy along the list, x as the im2col of those
// pixels), the next chunk's loads issued before the current chunk's multiply-adds. Where the
// tiles are too few to fill a GPU, each region's pixel list is cut into `slices()` K slices
// whose partial sums `slice_sum` adds in slice order (deterministic, no atomics). With one slice
// every sum runs over the region's pixels in ascending order, as `correlation_bwd.wgsl`
// `kernel_grad`: bitwise its gradient.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gy: array<f32>;
@group(0) @binding(3) var<storage, read> order: array<u32>;
@group(0) @binding(4) var<storage, read> starts: array<u32>;
@group(0) @binding(5) var<storage, read_write> dkern: array<f32>;
// slices() partial gradients, slice s at s * (dkern's elements); unused with one slice.
@group(0) @binding(6) var<storage, read_write> dpart: array<f32>;

// K slices (`Dims::slice_sum`'s packing: the count in the top 8 bits) and, for `slice_sum`,
// dkern's elements.
fn slices() -> u32 { return d.aux0 >> 24u; }

const GW: u32 = 256u;
const KC: u32 = 16u; // pixels per staged chunk
const TM: u32 = 64u; // output channels per tile
const TN: u32 = 64u; // inner indices (i, u, v) per tile
const NONE: u32 = 0xffffffffu;
// gy at [kc * (TM + 4) + o] (8 pixels of 4 channels per 32 lanes: no bank conflict), the im2col
// at KOFF + [kc * (TN + 4) + n] (16 pixels of 2 columns per 32 lanes: at most 2-way). KOFF
// in vec4s: KC * (TM + 4) / 4.
const KOFF: u32 = 272u;
var<workgroup> ksh: array<vec4<f32>, 544>; // (KC * (TM + 4) + KC * (TN + 4)) / 4

// One workgroup's tile: sample, region, first channel and inner index, its slice's pixels.
struct GradTile {
    b: u32,
    g: u32,
    o0: u32,
    n0: u32,
    // The region's pixels in sample b's `order`: first .. first + count; this slice's chunks.
    first: u32,
    count: u32,
    c0: u32,
    c1: u32,
}

// gy element e of a chunk: pixel e % 8 + 8 (e / (8 TM)), channel (e / 8) % TM (as the weights of
// correlation_gemm.wgsl).
fn gy_kc(e: u32) -> u32 { return e % 8u + 8u * (e / (8u * TM)); }
fn gy_row(e: u32) -> u32 { return (e / 8u) % TM; }

// The pixel index of the region's chunk c, entry kc (NONE past its pixels).
fn list_pixel(t: GradTile, c: u32, kc: u32) -> u32 {
    let j = c * KC + kc;
    if (j >= t.count) { return NONE; }
    return order[t.b * d.ho * d.wo + t.first + j];
}

// The staged values of one chunk: 4 gy and 4 im2col values per invocation.
struct GradLoads {
    a: array<f32, 4>,
    x: array<f32, 4>,
}

fn load_grad_chunk(t: GradTile, li: u32, c: u32) -> GradLoads {
    var r: GradLoads;
    let hw = d.ho * d.wo;
    let kd = d.cin * d.k * d.k;
    for (var q = 0u; q < 4u; q++) {
        let e = li + GW * q;
        let o = t.o0 + gy_row(e);
        let p = list_pixel(t, c, gy_kc(e));
        let ok = p != NONE && o < d.cout;
        r.a[q] = select(0.0, gy[select(0u, (t.b * d.cout + o) * hw + p, ok)], ok);
    }
    // The im2col: pixel li % 16 of the chunk, columns li / 16 + 16 q.
    let p = list_pixel(t, c, li % KC);
    let live = p != NONE;
    let iy0 = i32((p / d.wo) * d.stride) - i32(d.pad);
    let ix0 = i32((p % d.wo) * d.stride) - i32(d.pad);
    let taps = d.k * d.k;
    for (var q = 0u; q < 4u; q++) {
        let kx = t.n0 + li / KC + 16u * q;
        let i = kx / taps;
        let u = (kx % taps) / d.k;
        let v = kx % d.k;
        let iy = iy0 + i32(u * d.dil);
        let ix = ix0 + i32(v * d.dil);
        let ok = live && kx < kd && u32(iy) < d.h && u32(ix) < d.w;
        let at = ((t.b * d.cin + i) * d.h + u32(iy)) * d.w + u32(ix);
        r.x[q] = select(0.0, x[select(0u, at, ok)], ok);
    }
    return r;
}

fn store_grad_chunk(r: GradLoads, li: u32) {
    for (var q = 0u; q < 4u; q++) {
        let e = li + GW * q;
        let at = gy_kc(e) * (TM + 4u) + gy_row(e);
        ksh[at / 4u][at % 4u] = r.a[q];
        let bt = 4u * KOFF + (li % KC) * (TN + 4u) + li / KC + 16u * q;
        ksh[bt / 4u][bt % 4u] = r.x[q];
    }
}

// The tile's slice into this invocation's 4 x 4 block: acc[q] holds channels 4 ty .. 4 ty + 3
// of column 4 tx + q. Every invocation reaches every barrier.
fn grad_gemm(t: GradTile, li: u32) -> array<vec4<f32>, 4> {
    let ty = li / 16u;
    let tx = li % 16u;
    var a0 = vec4(0.0);
    var a1 = vec4(0.0);
    var a2 = vec4(0.0);
    var a3 = vec4(0.0);
    var next = load_grad_chunk(t, li, t.c0);
    for (var c = t.c0; c < t.c1; c++) {
        workgroupBarrier();
        store_grad_chunk(next, li);
        workgroupBarrier();
        if (c + 1u < t.c1) {
            next = load_grad_chunk(t, li, c + 1u);
        }
        // Only the pixels that exist: adding a zero product could turn a -0.0 into +0.0.
        let n = min(KC, t.count - c * KC);
        for (var kc = 0u; kc < n; kc++) {
            let a = ksh[kc * ((TM + 4u) / 4u) + ty];
            let bv = ksh[KOFF + kc * ((TN + 4u) / 4u) + tx];
            a0 += a * bv.x;
            a1 += a * bv.y;
            a2 += a * bv.z;
            a3 += a * bv.w;
        }
    }
    return array<vec4<f32>, 4>(a0, a1, a2, a3);
}

// Workgroup w = ((((b * r + g) * channel tiles + channel tile) * column tiles) + column tile)
// * slices + slice.
@compute @workgroup_size(256)
fn kernel_grad_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let w = group_index(wid, nwg);
    if (w == NONE) { return; }
    let kd = d.cin * d.k * d.k;
    let ntiles = (kd + TN - 1u) / TN;
    let mtiles = (d.cout + TM - 1u) / TM;
    let s = w % slices();
    let tile = w / slices();
    let bg = tile / (ntiles * mtiles);
    var t: GradTile;
    t.b = bg / d.r;
    t.g = bg % d.r;
    t.n0 = (tile % ntiles) * TN;
    t.o0 = ((tile / ntiles) % mtiles) * TM;
    let sb = t.b * (d.r + 1u) + t.g;
    t.first = starts[sb];
    t.count = starts[sb + 1u] - t.first;
    let chunks = (t.count + KC - 1u) / KC;
    let per = (chunks + slices() - 1u) / slices();
    t.c0 = min(s * per, chunks);
    t.c1 = min(t.c0 + per, chunks);
    let acc = grad_gemm(t, li);
    let ty = li / 16u;
    let tx = li % 16u;
    let elements = d.batch * d.r * d.cout * kd;
    for (var q = 0u; q < 4u; q++) {
        let kx = t.n0 + 4u * tx + q;
        for (var e = 0u; e < 4u; e++) {
            let o = t.o0 + 4u * ty + e;
            if (kx < kd && o < d.cout) {
                let at = ((t.b * d.r + t.g) * d.cout + o) * kd + kx;
                if (slices() > 1u) {
                    dpart[s * elements + at] = acc[q][e];
                } else {
                    dkern[at] = acc[q][e];
                }
            }
        }
    }
}

// dkern as the sum of the slices' partial gradients, in slice order; d.aux1: its elements.
@compute @workgroup_size(WG)
fn slice_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == NONE) { return; }
    var v = dpart[idx];
    for (var s = 1u; s < slices(); s++) {
        v += dpart[s * d.aux1 + idx];
    }
    dkern[idx] = v;
}
