// Per-sample correlation of x with the generated kernels. Kernel channel g*I*O + o*I + i is
// region g, output o, input i.
// `all_regions`: every region's output (the training path: the guide's gradient needs them all).
// `selected_region`: only each pixel's own region (inference), reading the region map.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> kern: array<f32>;
@group(0) @binding(3) var<storage, read_write> corr: array<f32>;
@group(0) @binding(4) var<storage, read> region: array<i32>;

// One invocation per (b, g, o, y, x) of the B x r x O x H' x W' output.
@compute @workgroup_size(WG)
fn all_regions(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let ox = idx % d.wo;
    let oy = (idx / d.wo) % d.ho;
    let go = (idx / (d.wo * d.ho)) % (d.r * d.cout);
    let b = idx / (d.wo * d.ho * d.r * d.cout);
    corr[idx] = correlate(b, go, oy, ox);
}

// Sum over i, u, v of kernel[b, go, i, u, v] * xpad[b, i, oy*s + u*dil, ox*s + v*dil],
// where go = g*O + o.
fn correlate(b: u32, go: u32, oy: u32, ox: u32) -> f32 {
    let kk = d.k * d.k;
    var s = 0.0;
    for (var i = 0u; i < d.cin; i++) {
        let xbase = (b * d.cin + i) * d.h;
        let kbase = ((b * d.r * d.cout + go) * d.cin + i) * kk;
        for (var u = 0u; u < d.k; u++) {
            let iy = in_coord(oy, u);
            if (iy < 0 || iy >= i32(d.h)) { continue; }
            let xrow = (xbase + u32(iy)) * d.w;
            for (var v = 0u; v < d.k; v++) {
                let ix = in_coord(ox, v);
                if (ix < 0 || ix >= i32(d.w)) { continue; }
                s += kern[kbase + u * d.k + v] * x[xrow + u32(ix)];
            }
        }
    }
    return s;
}

// One invocation per (b, o, y, x) of the B x O x H' x W' output: r times less work.
@compute @workgroup_size(WG)
fn selected_region(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let hw = d.ho * d.wo;
    let p = idx % hw;
    let o = (idx / hw) % d.cout;
    let b = idx / (hw * d.cout);
    let g = u32(region[b * hw + p]);
    corr[idx] = correlate(b, g * d.cout + o, p / d.wo, p % d.wo);
}
