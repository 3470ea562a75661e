// conv_guide (k x k conv I -> r with bias, stride, zero padding, dilation) fused with the argmax
// over regions: one invocation per output pixel computes all r guide values, writes them (the
// backward and `verify` read the guide) and picks the region: the first maximal index, NaN
// counting as the maximum, as torch.argmax.
// Regions go 8 at a time in two vec4 accumulators, so one x load feeds 8 multiply-adds; the
// weights of a tap are the same for every invocation (a broadcast). Every channel runs the same
// operations in the same order (bias, then taps in (i, u, v) order), so bitwise-equal weights
// give bitwise-equal guide channels and ties resolve exactly as in the reference.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wg: array<f32>;
@group(0) @binding(3) var<storage, read> bg: array<f32>;
@group(0) @binding(4) var<storage, read_write> guide: array<f32>;
@group(0) @binding(5) var<storage, read_write> region: array<i32>;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Weight of region g at flat tap t (i*k*k + u*k + v), 0 for the padding regions g >= r.
fn w_at(g: u32, t: u32, ikk: u32) -> f32 {
    return select(0.0, wg[min(g, d.r - 1u) * ikk + t], g < d.r);
}

fn w4(g: u32, t: u32, ikk: u32) -> vec4<f32> {
    return vec4(w_at(g, t, ikk), w_at(g + 1u, t, ikk), w_at(g + 2u, t, ikk), w_at(g + 3u, t, ikk));
}

fn b4(g: u32) -> vec4<f32> {
    let r1 = d.r - 1u;
    return vec4(
        select(0.0, bg[min(g, r1)], g < d.r),
        select(0.0, bg[min(g + 1u, r1)], g + 1u < d.r),
        select(0.0, bg[min(g + 2u, r1)], g + 2u < d.r),
        select(0.0, bg[min(g + 3u, r1)], g + 3u < d.r),
    );
}

// One invocation per (b, y, x).
@compute @workgroup_size(WG)
fn guide_argmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let hw = d.ho * d.wo;
    let p = idx % hw;
    let b = idx / hw;
    let iy0 = i32((p / d.wo) * d.stride) - i32(d.pad);
    let ix0 = i32((p % d.wo) * d.stride) - i32(d.pad);
    let kk = d.k * d.k;
    let ikk = d.cin * kk;
    let xb = b * d.cin * d.h * d.w;
    var best = 0.0;
    var best_g = 0u;
    for (var g0 = 0u; g0 < d.r; g0 += 8u) {
        let two = g0 + 4u < d.r;
        var acc0 = b4(g0);
        var acc1 = b4(g0 + 4u);
        for (var i = 0u; i < d.cin; i++) {
            let xp = xb + i * d.h * d.w;
            for (var u = 0u; u < d.k; u++) {
                let iy = iy0 + i32(u * d.dil);
                if (iy < 0 || iy >= i32(d.h)) { continue; }
                let xrow = xp + u32(iy) * d.w;
                for (var v = 0u; v < d.k; v++) {
                    let ix = ix0 + i32(v * d.dil);
                    if (ix < 0 || ix >= i32(d.w)) { continue; }
                    let xv = x[xrow + u32(ix)];
                    let t = i * kk + u * d.k + v;
                    acc0 += w4(g0, t, ikk) * xv;
                    if (two) {
                        acc1 += w4(g0 + 4u, t, ikk) * xv;
                    }
                }
            }
        }
        for (var j = 0u; j < 8u; j++) {
            let g = g0 + j;
            if (g >= d.r) { break; }
            let val = select(acc1[j & 3u], acc0[j & 3u], j < 4u);
            guide[(b * d.r + g) * hw + p] = val;
            if (g == 0u || (!is_nan(best) && (val > best || is_nan(val)))) {
                best = val;
                best_g = g;
            }
        }
    }
    region[idx] = i32(best_g);
}
