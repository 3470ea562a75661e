// conv_guide: k x k conv I -> r with bias, stride, zero padding and dilation.
// Every channel is computed with the same operation order, so bitwise-equal weights give
// bitwise-equal guide channels and argmax ties resolve exactly as in the reference.
// One invocation per (b, g, y, x).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wg: array<f32>;
@group(0) @binding(3) var<storage, read> bg: array<f32>;
@group(0) @binding(4) var<storage, read_write> guide: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let ox = idx % d.wo;
    let oy = (idx / d.wo) % d.ho;
    let g = (idx / (d.wo * d.ho)) % d.r;
    let b = idx / (d.wo * d.ho * d.r);
    var s = bg[g];
    for (var i = 0u; i < d.cin; i++) {
        let xbase = (b * d.cin + i) * d.h;
        let wbase = (g * d.cin + i) * d.k;
        for (var u = 0u; u < d.k; u++) {
            let iy = in_coord(oy, u);
            if (iy < 0 || iy >= i32(d.h)) { continue; }
            let xrow = (xbase + u32(iy)) * d.w;
            for (var v = 0u; v < d.k; v++) {
                let ix = in_coord(ox, v);
                if (ix < 0 || ix >= i32(d.w)) { continue; }
                s += wg[(wbase + u) * d.k + v] * x[xrow + u32(ix)];
            }
        }
    }
    guide[idx] = s;
}
