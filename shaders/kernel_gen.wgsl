// conv_kernel.3: grouped 1x1 conv (groups = r) from the r*r sigmoid maps to the r*I*O kernel
// channels. Group g reads sigmoid channels g*r..g*r+r-1 and writes channels g*I*O..(g+1)*I*O-1:
// per (b, g) a small GEMM, kernel[c, uv] = b3[c] + sum_j w3[c, j] * sig[j, uv], with only r
// terms per output. One invocation per (b, g, 8 channels, 4 taps): per j, 8 weight and 4 sigmoid
// loads feed 32 multiply-adds, instead of 2 loads per multiply-add.
@group(0) @binding(1) var<storage, read> sig: array<f32>;
@group(0) @binding(2) var<storage, read> w3: array<f32>;
@group(0) @binding(3) var<storage, read> b3: array<f32>;
@group(0) @binding(4) var<storage, read_write> kern: array<f32>;

// Channels c0 + 4h .. c0 + 4h + 3 of group g (clamped to the group: the extra ones are loaded
// but never stored).
fn chans(c0: u32, h: u32, c_last: u32) -> vec4<u32> {
    let c = c0 + 4u * h;
    return vec4(min(c, c_last), min(c + 1u, c_last), min(c + 2u, c_last), min(c + 3u, c_last));
}

// Item = ((b * r + g) * ceil(I*O / 8) + channel block) * ceil(k*k / 4) + tap block.
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
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
    // acc[2t + h]: tap uv0 + t of channels c0 + 4h .. +3.
    let bias_a = vec4(b3[ca.x], b3[ca.y], b3[ca.z], b3[ca.w]);
    let bias_b = vec4(b3[cb.x], b3[cb.y], b3[cb.z], b3[cb.w]);
    var acc = array<vec4<f32>, 8>(bias_a, bias_b, bias_a, bias_b, bias_a, bias_b, bias_a, bias_b);
    for (var j = 0u; j < d.r; j++) {
        let wa = vec4(w3[ca.x * d.r + j], w3[ca.y * d.r + j], w3[ca.z * d.r + j], w3[ca.w * d.r + j]);
        let wb = vec4(w3[cb.x * d.r + j], w3[cb.y * d.r + j], w3[cb.z * d.r + j], w3[cb.w * d.r + j]);
        let sj = sig_base + j * kk;
        let s = vec4(sig[sj + ts.x], sig[sj + ts.y], sig[sj + ts.z], sig[sj + ts.w]);
        for (var t = 0u; t < 4u; t++) {
            acc[2u * t] += wa * s[t];
            acc[2u * t + 1u] += wb * s[t];
        }
    }
    let out_base = b * d.r * io;
    for (var q = 0u; q < 8u; q++) {
        if (cl0 + q >= io) { break; }
        let ob = (out_base + c0 + q) * kk;
        for (var t = 0u; t < 4u; t++) {
            if (uv0 + t >= kk) { break; }
            kern[ob + uv0 + t] = acc[2u * t + q / 4u][q % 4u];
        }
    }
}
