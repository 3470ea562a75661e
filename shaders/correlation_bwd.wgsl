// Backward of the per-sample correlation. Only each pixel's own region receives gradient
// (dcorr = gy masked by the region map), so both entries read gy and the region map directly.
// Gather form (`kernel_grad`, `input_grad`; GPUs): one invocation per gradient element (block),
// contributors summed in a fixed order. CPU adapters (`Backward::RegionLists`):
// `transpose.wgsl` makes channel-last copies of x and gy, `kernel_grad_lists8`/`_lists4` run one GEMM
// per (sample, region) over the region's pixel list, `kernel_t3` (k = 3; `transpose` otherwise)
// transposes the kernel and `input_grad_t` reads it as vec4s; same sums in the same order,
// bitwise equal results.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> kern: array<f32>;
@group(0) @binding(3) var<storage, read> gy: array<f32>;
@group(0) @binding(4) var<storage, read> region: array<i32>;
@group(0) @binding(5) var<storage, read_write> dkern: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
// CPU-adapter entries (`_lists`, `_t`): per-region pixel lists made by the backward plan with the
// inference forward's stable counting sort (`region_select.wgsl` `lists`): B x H'W' pixel
// indices, region 0's first, ascending within a region; starts: B x (r+1) offsets.
@group(0) @binding(7) var<storage, read> order: array<u32>;
@group(0) @binding(8) var<storage, read> starts: array<u32>;
// The kernel transposed to B x r x k*k x O x I, as vec4s along I (I % 4 == 0): written by
// `kernel_t3` (or `transpose`, as [B*r, O*I, k*k] into [B*r, k*k, O*I]), read by `input_grad_t`.
@group(0) @binding(9) var<storage, read_write> kern_t_out: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> kern_t: array<vec4<f32>>;

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

// Input channels per `input_grad` invocation (4, or on GPUs 2 or 1 where 4 would leave compute
// units idle; `Dims::input_channels`): each gy load feeds this many kernel taps. Each channel's
// sum is the same whatever the count.
fn ig_ch() -> u32 { return d.aux0; }

// The correlation's share of dx (the first of the three paths: it assigns, the guide conv and
// the pool backward then add theirs). One invocation per (b, block of ig_ch() channels, y, x);
// every channel's sum runs over (u, v, o) in the same order as one invocation per element.
@compute @workgroup_size(WG)
fn input_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let blocks = (d.cin + ig_ch() - 1u) / ig_ch();
    let ix = idx % d.w;
    let iy = (idx / d.w) % d.h;
    let i0 = ((idx / (d.w * d.h)) % blocks) * ig_ch();
    let b = idx / (d.w * d.h * blocks);
    let nc = min(ig_ch(), d.cin - i0);
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

// Channel-last copies of x and gy for the CPU-adapter entries (`transpose.wgsl`): x as
// B x H x W x I, gy as B x H' x W' x O, read as vec4s along the channels.
@group(0) @binding(13) var<storage, read> x_t: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read> gy_t: array<vec4<f32>>;

// The kernel read as vec4s, for `kernel_t3`.
@group(0) @binding(15) var<storage, read> src4: array<vec4<f32>>;

// `kernel_grad` for CPU adapters (llvmpipe runs a per-lane loop for every load and keeps a
// dynamically indexed private array in memory): one GEMM per (sample, region) over that region's
// pixel list, so the accumulators are named registers. One invocation per (b, block of `ob`
// output channels (4 or 8), block of 4 input channels, u, v) walks every region's list in turn:
// per pixel 1 list load, one vec4 of x (4 input channels) and ob/4 vec4s of gy feed 4*ob
// multiply-adds (the gather form: 6 loads and a private-array update per 4). Each sum still runs
// over its region's pixels in ascending order with the same operations, so dkernel is bitwise
// that of `kernel_grad`.
fn kernel_grad_rows(idx: u32, ob: u32) {
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let i4 = d.cin / 4u;
    let o4 = d.cout / 4u;
    let oblocks = (d.cout + ob - 1u) / ob;
    let uv = idx % kk;
    let ib = (idx / kk) % i4;
    let o0 = ((idx / (kk * i4)) % oblocks) * ob;
    let b = idx / (kk * i4 * oblocks);
    let u = uv / d.k;
    let v = uv % d.k;
    let hw = d.ho * d.wo;
    // O % 8 == 4 with ob = 8: the last block's second half re-reads the first, not stored.
    let two = (ob == 8u) & (o0 + 4u < d.cout);
    let h1 = select(0u, 1u, two);
    let xb = b * d.h * d.w;
    let gb = b * hw * o4 + o0 / 4u;
    let lb = b * hw;
    let sb = b * (d.r + 1u);
    for (var g = 0u; g < d.r; g++) {
        var a0 = vec4(0.0); var a1 = vec4(0.0); var a2 = vec4(0.0); var a3 = vec4(0.0);
        var a4 = vec4(0.0); var a5 = vec4(0.0); var a6 = vec4(0.0); var a7 = vec4(0.0);
        let q1 = lb + starts[sb + g + 1u];
        for (var q = lb + starts[sb + g]; q < q1; q++) {
            let p = order[q];
            // Unsigned: a tap in the padding (negative coordinate) is huge.
            let iy = u32(in_coord(p / d.wo, u));
            let ix = u32(in_coord(p % d.wo, v));
            if ((iy >= d.h) | (ix >= d.w)) { continue; }
            let xv = x_t[(xb + iy * d.w + ix) * i4 + ib];
            let ga = gy_t[gb + p * o4];
            a0 += ga.x * xv;
            a1 += ga.y * xv;
            a2 += ga.z * xv;
            a3 += ga.w * xv;
            if (ob == 8u) {
                let gc = gy_t[gb + p * o4 + h1];
                a4 += gc.x * xv;
                a5 += gc.y * xv;
                a6 += gc.z * xv;
                a7 += gc.w * xv;
            }
        }
        // Output channel j's 4 sums picked with selects, not from a private array (which
        // llvmpipe keeps in memory, each access a per-lane loop compiled at first dispatch).
        let no = select(4u, 8u, two);
        let kb = ((b * d.r + g) * io + o0 * d.cin + ib * 4u) * kk + uv;
        for (var j = 0u; j < no; j++) {
            let lo = select(select(a0, a1, j == 1u), select(a2, a3, j == 3u), j >= 2u);
            let hi = select(select(a4, a5, j == 5u), select(a6, a7, j == 7u), j >= 6u);
            let val = select(lo, hi, j >= 4u);
            let at = kb + j * d.cin * kk;
            dkern[at] = val.x;
            dkern[at + kk] = val.y;
            dkern[at + 2u * kk] = val.z;
            dkern[at + 3u * kk] = val.w;
        }
    }
}

@compute @workgroup_size(WG)
fn kernel_grad_lists8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    kernel_grad_rows(idx, 8u);
}

// 4 output channels per invocation: twice the invocations, for shapes where 8 leave too few to
// keep every core busy.
@compute @workgroup_size(WG)
fn kernel_grad_lists4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    kernel_grad_rows(idx, 4u);
}

// The kernel transpose for k = 3 (`kern_t_out`): the 4 channels' 36 taps are 9 aligned vec4s, so
// 9 vec4 loads and 9 vec4 stores (`transpose`: 36 scalar loads).
@compute @workgroup_size(WG)
fn kernel_t3(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let i4 = d.cin / 4u;
    let blk = idx % i4;
    let o = (idx / i4) % d.cout;
    let bg = idx / (i4 * d.cout);
    // Past the last (b, g): on WebGPU an out-of-range store is clamped onto the last element,
    // not dropped as on Vulkan, so guard the tensor end explicitly.
    if (bg >= d.batch * d.r) { return; }
    let at = ((bg * d.cout + o) * d.cin + blk * 4u) * 9u / 4u;
    let ob = (bg * 9u * d.cout + o) * i4 + blk;
    let st = d.cout * i4;
    let m0 = src4[at + 0u];
    let m1 = src4[at + 1u];
    let m2 = src4[at + 2u];
    let m3 = src4[at + 3u];
    let m4 = src4[at + 4u];
    let m5 = src4[at + 5u];
    let m6 = src4[at + 6u];
    let m7 = src4[at + 7u];
    let m8 = src4[at + 8u];
    kern_t_out[ob + 0u * st] = vec4<f32>(m0.x, m2.y, m4.z, m6.w);
    kern_t_out[ob + 1u * st] = vec4<f32>(m0.y, m2.z, m4.w, m7.x);
    kern_t_out[ob + 2u * st] = vec4<f32>(m0.z, m2.w, m5.x, m7.y);
    kern_t_out[ob + 3u * st] = vec4<f32>(m0.w, m3.x, m5.y, m7.z);
    kern_t_out[ob + 4u * st] = vec4<f32>(m1.x, m3.y, m5.z, m7.w);
    kern_t_out[ob + 5u * st] = vec4<f32>(m1.y, m3.z, m5.w, m8.x);
    kern_t_out[ob + 6u * st] = vec4<f32>(m1.z, m3.w, m6.x, m8.y);
    kern_t_out[ob + 7u * st] = vec4<f32>(m1.w, m4.x, m6.y, m8.z);
    kern_t_out[ob + 8u * st] = vec4<f32>(m2.x, m4.y, m6.z, m8.w);
}

// `input_grad` for CPU adapters from the transposed kernel and gy: one invocation per (b, block
// of 8 channels, y, x); per (u, v) and 4 output channels one vec4 of gy and 8 vec4s of the kernel
// feed 32 multiply-adds (the gather form: 5 scalar loads per 4). Same sums in the same order, so dx is bitwise `input_grad`'s.
@compute @workgroup_size(WG)
fn input_grad_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let blocks = (d.cin + 7u) / 8u;
    let ix = idx % d.w;
    let iy = (idx / d.w) % d.h;
    let i0 = ((idx / (d.w * d.h)) % blocks) * 8u;
    let b = idx / (d.w * d.h * blocks);
    let kk = d.k * d.k;
    let i4 = d.cin / 4u;
    let hw = d.ho * d.wo;
    // I % 8 == 4: the last block's second half re-reads the first and is not stored.
    let two = i0 + 4u < d.cin;
    let h1 = select(0u, 1u, two);
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    for (var u = 0u; u < d.k; u++) {
        let oy = out_coord(iy, u, d.ho);
        if (oy < 0) { continue; }
        for (var v = 0u; v < d.k; v++) {
            let ox = out_coord(ix, v, d.wo);
            if (ox < 0) { continue; }
            let p = u32(oy) * d.wo + u32(ox);
            let g = u32(region[b * hw + p]);
            let kb = ((b * d.r + g) * kk + u * d.k + v) * d.cout * i4 + i0 / 4u;
            let gb = (b * hw + p) * (d.cout / 4u);
            for (var o4 = 0u; o4 < d.cout / 4u; o4++) {
                let g4 = gy_t[gb + o4];
                let ka = kb + o4 * 4u * i4;
                s0 += kern_t[ka] * g4.x;
                s1 += kern_t[ka + h1] * g4.x;
                s0 += kern_t[ka + i4] * g4.y;
                s1 += kern_t[ka + i4 + h1] * g4.y;
                s0 += kern_t[ka + 2u * i4] * g4.z;
                s1 += kern_t[ka + 2u * i4 + h1] * g4.z;
                s0 += kern_t[ka + 3u * i4] * g4.w;
                s1 += kern_t[ka + 3u * i4 + h1] * g4.w;
            }
        }
    }
    let a = ((b * d.cin + i0) * d.h + iy) * d.w + ix;
    let plane = d.h * d.w;
    dx[a] = s0.x;
    dx[a + plane] = s0.y;
    dx[a + 2u * plane] = s0.z;
    dx[a + 3u * plane] = s0.w;
    if (two) {
        dx[a + 4u * plane] = s1.x;
        dx[a + 5u * plane] = s1.y;
        dx[a + 6u * plane] = s1.z;
        dx[a + 7u * plane] = s1.w;
    }
}
