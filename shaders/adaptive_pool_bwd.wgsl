// Backward of AdaptiveAvgPool2d((k, k)): each bin spreads dpooled / (bin area) uniformly over its
// window; windows overlap when H (or W) is not a multiple of k, so an input pixel sums every bin
// that covers it. Adds the pool's share to dx. One invocation per (b, i, y, x) of x.
@group(0) @binding(1) var<storage, read> dpooled: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

// The shader-specific words of `Dims`, by name.
// chunk_y0: the first input row of a row chunk (`Dims::pool_rows`).
fn chunk_y0() -> u32 { return d.aux0; }
// chunk_rows: its row count.
fn chunk_rows() -> u32 { return d.aux1; }

// The pool's share of dx at input pixel (iy, ix): every bin whose window covers it spreads its
// gradient (dpooled[base + u*k + v]) over its area.
fn share(iy: u32, ix: u32, base: u32) -> f32 {
    var s = 0.0;
    for (var u = 0u; u < d.k; u++) {
        let hb = pool_bin(u, d.h);
        if (iy < hb.x || iy >= hb.y) { continue; }
        for (var v = 0u; v < d.k; v++) {
            let wb = pool_bin(v, d.w);
            if (ix < wb.x || ix >= wb.y) { continue; }
            s += dpooled[base + u * d.k + v] / f32((hb.y - hb.x) * (wb.y - wb.x));
        }
    }
    return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let ix = idx % d.w;
    let iy = (idx / d.w) % d.h;
    let bi = idx / (d.w * d.h);
    dx[idx] += share(iy, ix, bi * d.k * d.k);
}

// `main` for a plane larger than one binding, in chunks of rows (src/gpu/split/pool.rs): `dx`
// holds rows chunk_y0() .. chunk_y0() + chunk_rows() of one channel, `dpooled` that channel's k x k values.
@compute @workgroup_size(WG)
fn rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    dx[idx] += share(chunk_y0() + idx / d.w, idx % d.w, 0u);
}
