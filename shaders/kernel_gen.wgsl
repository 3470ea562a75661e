// conv_kernel.3: grouped 1x1 conv (groups = r) from the r*r sigmoid maps to the r*I*O kernel
// channels. Group g reads sigmoid channels g*r..g*r+r-1 and writes channels g*I*O..(g+1)*I*O-1:
// per (b, g) a small GEMM, kernel[c, uv] = b3[c] + sum_j w3[c, j] * sig[j, uv], with only r
// terms per output. `main` (any r): one invocation per (b, g, 8 channels, 4 taps); per j, 8 weight
// and 4 sigmoid loads feed 32 multiply-adds. `registers` (r <= 8): one invocation per (b, g, 8
// channels) for every tap, its weights kept in registers. CPU adapters with k = 3 and r in {4, 8}
// use kernel_gen_k3.wgsl instead (`kernel_gen_entry` in src/gpu/forward.rs picks).
// Bindings 10-13: the module is also composed with region_select.wgsl (shaders/gen_lists.wgsl),
// whose bindings are 2-8.
@group(0) @binding(10) var<storage, read> sig: array<f32>;
@group(0) @binding(11) var<storage, read> w3: array<f32>;
@group(0) @binding(12) var<storage, read> b3: array<f32>;
@group(0) @binding(13) var<storage, read_write> kern: array<f32>;

// Channels c0 + 4h .. c0 + 4h + 3 of group g (clamped to the group: the extra ones are loaded
// but never stored).
fn chans(c0: u32, h: u32, c_last: u32) -> vec4<u32> {
    let c = c0 + 4u * h;
    return vec4(min(c, c_last), min(c + 1u, c_last), min(c + 2u, c_last), min(c + 3u, c_last));
}

// Item = ((b * r + g) * ceil(I*O / 8) + channel block) * ceil(k*k / 4) + tap block.
@compute @workgroup_size(WG)
fn blocked(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    blocked_item(idx);
}

// Item `idx` of `blocked` (also run by shaders/gen_lists.wgsl).
fn blocked_item(idx: u32) {
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let tblocks = (kk + 3u) / 4u;
    let cblocks = (io + 7u) / 8u;
    let uv0 = (idx % tblocks) * 4u;
    let cl0 = ((idx / tblocks) % cblocks) * 8u;
    let bg = idx / (tblocks * cblocks);
    let g = bg % d.r;
    let b = bg / d.r;
    let c_last = g * io + io - 1u;
    let c0 = g * io + cl0;
    let ca = chans(c0, 0u, c_last);
    let cb = chans(c0, 1u, c_last);
    let sig_base = (b * d.r + g) * d.r * kk;
    let ts = vec4(uv0, min(uv0 + 1u, kk - 1u), min(uv0 + 2u, kk - 1u), min(uv0 + 3u, kk - 1u));
    // a0..a3 / b0..b3: tap uv0 + t of channels c0 .. c0+3 / c0+4 .. c0+7. Named registers, not
    // an array: llvmpipe lowers a dynamically indexed private array to memory.
    let bias_a = vec4(b3[ca.x], b3[ca.y], b3[ca.z], b3[ca.w]);
    let bias_b = vec4(b3[cb.x], b3[cb.y], b3[cb.z], b3[cb.w]);
    var a0 = bias_a; var a1 = bias_a; var a2 = bias_a; var a3 = bias_a;
    var b0 = bias_b; var b1 = bias_b; var b2 = bias_b; var b3v = bias_b;
    for (var j = 0u; j < d.r; j++) {
        let wa = vec4(w3[ca.x * d.r + j], w3[ca.y * d.r + j], w3[ca.z * d.r + j], w3[ca.w * d.r + j]);
        let wb = vec4(w3[cb.x * d.r + j], w3[cb.y * d.r + j], w3[cb.z * d.r + j], w3[cb.w * d.r + j]);
        let sj = sig_base + j * kk;
        let s = vec4(sig[sj + ts.x], sig[sj + ts.y], sig[sj + ts.z], sig[sj + ts.w]);
        a0 += wa * s.x; a1 += wa * s.y; a2 += wa * s.z; a3 += wa * s.w;
        b0 += wb * s.x; b1 += wb * s.y; b2 += wb * s.z; b3v += wb * s.w;
    }
    let ob = (b * d.r * io + c0) * kk + uv0;
    let nq = min(8u, io - cl0);
    let nt = min(4u, kk - uv0);
    store8(ob, nq, nt, a0, a1, a2, a3, b0, b1, b2, b3v);
}

// A block of 8 channels x 4 taps: a_t / b_t hold tap t of channels 0..3 / 4..7; only the first
// nq channels and nt taps exist.
fn store8(ob: u32, nq: u32, nt: u32, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
          b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3v: vec4<f32>) {
    store4(ob, 0u, nq, nt, vec4(a0.x, a1.x, a2.x, a3.x));
    store4(ob, 1u, nq, nt, vec4(a0.y, a1.y, a2.y, a3.y));
    store4(ob, 2u, nq, nt, vec4(a0.z, a1.z, a2.z, a3.z));
    store4(ob, 3u, nq, nt, vec4(a0.w, a1.w, a2.w, a3.w));
    store4(ob, 4u, nq, nt, vec4(b0.x, b1.x, b2.x, b3v.x));
    store4(ob, 5u, nq, nt, vec4(b0.y, b1.y, b2.y, b3v.y));
    store4(ob, 6u, nq, nt, vec4(b0.z, b1.z, b2.z, b3v.z));
    store4(ob, 7u, nq, nt, vec4(b0.w, b1.w, b2.w, b3v.w));
}

// Taps uv0 .. uv0 + nt - 1 of channel c0 + q (if q < nq), at kern[ob + q * kk ..].
fn store4(ob: u32, q: u32, nq: u32, nt: u32, v: vec4<f32>) {
    if (q >= nq) { return; }
    let o = ob + q * d.k * d.k;
    kern[o] = v.x;
    if (nt > 1u) { kern[o + 1u] = v.y; }
    if (nt > 2u) { kern[o + 2u] = v.z; }
    if (nt > 3u) { kern[o + 3u] = v.w; }
}

// r <= 8: one invocation per (b, g, 8 channels) for every tap. Its 8 x r weights are loaded once
// into registers (8 vec4s per half: loops of constant trip count 8 unroll, so the arrays stay in
// registers) and reused for every block of 4 taps; per block, 8 sigmoid vec4s and the weights
// feed 256 multiply-adds. The same operations in the same order as `main`.
// Item = (b * r + g) * ceil(I*O / 8) + channel block.
@compute @workgroup_size(WG)
fn registers(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    registers_item(idx);
}

// Item `idx` of `registers` (also run by shaders/gen_lists.wgsl).
fn registers_item(idx: u32) {
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let cblocks = (io + 7u) / 8u;
    let cl0 = (idx % cblocks) * 8u;
    let bg = idx / cblocks;
    let g = bg % d.r;
    let b = bg / d.r;
    let c_last = g * io + io - 1u;
    let c0 = g * io + cl0;
    let ca = chans(c0, 0u, c_last);
    let cb = chans(c0, 1u, c_last);
    let sig_base = (b * d.r + g) * d.r * kk;
    let r1 = d.r - 1u;
    var wa: array<vec4<f32>, 8>;
    var wb: array<vec4<f32>, 8>;
    for (var j = 0u; j < 8u; j++) {
        let jj = min(j, r1);
        wa[j] = vec4(w3[ca.x * d.r + jj], w3[ca.y * d.r + jj], w3[ca.z * d.r + jj], w3[ca.w * d.r + jj]);
        wb[j] = vec4(w3[cb.x * d.r + jj], w3[cb.y * d.r + jj], w3[cb.z * d.r + jj], w3[cb.w * d.r + jj]);
    }
    let bias_a = vec4(b3[ca.x], b3[ca.y], b3[ca.z], b3[ca.w]);
    let bias_b = vec4(b3[cb.x], b3[cb.y], b3[cb.z], b3[cb.w]);
    let nq = min(8u, io - cl0);
    for (var uv0 = 0u; uv0 < kk; uv0 += 4u) {
        let ts = vec4(uv0, min(uv0 + 1u, kk - 1u), min(uv0 + 2u, kk - 1u), min(uv0 + 3u, kk - 1u));
        var a0 = bias_a; var a1 = bias_a; var a2 = bias_a; var a3 = bias_a;
        var b0 = bias_b; var b1 = bias_b; var b2 = bias_b; var b3v = bias_b;
        for (var j = 0u; j < 8u; j++) {
            if (j < d.r) {
                let sj = sig_base + j * kk;
                let s = vec4(sig[sj + ts.x], sig[sj + ts.y], sig[sj + ts.z], sig[sj + ts.w]);
                let xa = wa[j];
                let xb = wb[j];
                a0 += xa * s.x; a1 += xa * s.y; a2 += xa * s.z; a3 += xa * s.w;
                b0 += xb * s.x; b1 += xb * s.y; b2 += xb * s.z; b3v += xb * s.w;
            }
        }
        let ob = (b * d.r * io + c0) * kk + uv0;
        let nt = min(4u, kk - uv0);
        store8(ob, nq, nt, a0, a1, a2, a3, b0, b1, b2, b3v);
    }
}

// One invocation per kernel element (b, channel, tap), for GPUs where the blocks of `blocked`
// would leave compute units idle (small layers): consecutive invocations write consecutive
// elements, the r weights of a channel are shared by its k*k taps' invocations (a broadcast).
// The same operations in the same order as `blocked`.
@compute @workgroup_size(WG)
fn elements(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    elements_item(idx);
}

// Item `idx` of `elements` (also run by shaders/gen_lists.wgsl).
fn elements_item(idx: u32) {
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let uv = idx % kk;
    let c = (idx / kk) % (d.r * io);
    let b = idx / (kk * d.r * io);
    let g = c / io;
    let sig_base = (b * d.r + g) * d.r * kk + uv;
    var v = b3[c];
    for (var j = 0u; j < d.r; j++) {
        v += w3[c * d.r + j] * sig[sig_base + j * kk];
    }
    kern[idx] = v;
}
