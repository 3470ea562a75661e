// Backward of the per-sample correlation. Only each pixel's own region receives gradient
// (dcorr = gy masked by the region map), so both entries read gy and the region map directly.
// Gather form: one invocation per gradient element, contributors summed in a fixed order.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> kern: array<f32>;
@group(0) @binding(3) var<storage, read> gy: array<f32>;
@group(0) @binding(4) var<storage, read> region: array<i32>;
@group(0) @binding(5) var<storage, read_write> dkern: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

// dkernel[b, g*I*O + o*I + i, u, v] = sum over (y, x) with region == g of
// gy[b, o, y, x] * xpad[b, i, y*s + u*dil, x*s + v*dil]. One invocation per kernel element.
@compute @workgroup_size(WG)
fn kernel_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let uv = idx % kk;
    let c = (idx / kk) % (d.r * io);
    let b = idx / (kk * d.r * io);
    let g = c / io;
    let o = (c % io) / d.cin;
    let i = c % d.cin;
    let u = uv / d.k;
    let v = uv % d.k;
    let hw = d.ho * d.wo;
    let xbase = (b * d.cin + i) * d.h;
    let gbase = (b * d.cout + o) * hw;
    var s = 0.0;
    for (var oy = 0u; oy < d.ho; oy++) {
        let iy = in_coord(oy, u);
        if (iy < 0 || iy >= i32(d.h)) { continue; }
        let xrow = (xbase + u32(iy)) * d.w;
        for (var ox = 0u; ox < d.wo; ox++) {
            let ix = in_coord(ox, v);
            if (ix < 0 || ix >= i32(d.w)) { continue; }
            let p = oy * d.wo + ox;
            if (u32(region[b * hw + p]) != g) { continue; }
            s += gy[gbase + p] * x[xrow + u32(ix)];
        }
    }
    dkern[idx] = s;
}

// Output position that reads input coordinate `i` at tap `t` along an axis with `n_out` outputs,
// or -1 when none does (i + pad - t*dil negative, not a multiple of the stride, or past the end).
fn out_coord(i: u32, t: u32, n_out: u32) -> i32 {
    let q = i32(i + d.pad) - i32(t * d.dil);
    if (q < 0 || u32(q) % d.stride != 0u) { return -1; }
    let o = u32(q) / d.stride;
    if (o >= n_out) { return -1; }
    return i32(o);
}

// The correlation's share of dx (the first of the three paths: it assigns, the guide conv and
// the pool backward then add theirs). One invocation per (b, i, y, x) of x.
@compute @workgroup_size(WG)
fn input_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let ix = idx % d.w;
    let iy = (idx / d.w) % d.h;
    let i = (idx / (d.w * d.h)) % d.cin;
    let b = idx / (d.w * d.h * d.cin);
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let hw = d.ho * d.wo;
    var s = 0.0;
    for (var u = 0u; u < d.k; u++) {
        let oy = out_coord(iy, u, d.ho);
        if (oy < 0) { continue; }
        for (var v = 0u; v < d.k; v++) {
            let ox = out_coord(ix, v, d.wo);
            if (ox < 0) { continue; }
            let p = u32(oy) * d.wo + u32(ox);
            let g = u32(region[b * hw + p]);
            let kbase = ((b * d.r + g) * io + i) * kk + u * d.k + v;
            for (var o = 0u; o < d.cout; o++) {
                s += kern[kbase + o * d.cin * kk] * gy[(b * d.cout + o) * hw + p];
            }
        }
    }
    dx[idx] = s;
}
