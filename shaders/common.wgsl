// Prepended to every shader by `src/gpu/shaders.rs`. One uniform layout for all ops keeps the
// Rust side to a single `Dims` struct; each op reads the fields it needs.
struct Dims {
    batch: u32, cin: u32, cout: u32, k: u32,
    r: u32, h: u32, w: u32, ho: u32,
    wo: u32, stride: u32, pad: u32, dil: u32,
    // Items this dispatch covers, and the first one: large jobs are split into several dispatches.
    count: u32, base: u32,
    // Two words each shader reads under its own meaning, only through accessors it names
    // (`fn row_groups() -> u32 { return d.aux0; }`); Rust sets them with `Dims`' named setters.
    aux0: u32, aux1: u32,
}

@group(0) @binding(0) var<uniform> d: Dims;

const WG: u32 = 64u;

// Linear item index of this invocation for a 2-D grid of 1-D workgroups (the grid folds into y
// when x would exceed the per-dimension workgroup limit), or 0xffffffff past the end.
fn item_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= d.count) {
        return 0xffffffffu;
    }
    return d.base + t;
}

// Linear tile index of this workgroup for the tiled shaders (one workgroup per output tile,
// `GpuContext::group_steps`; the grid folds into y like `item_index`'s), or 0xffffffff for the
// padding of the folded grid.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    let t = wid.x + wid.y * nwg.x;
    if (t >= d.count / WG) {
        return 0xffffffffu;
    }
    return d.base / WG + t;
}

// Bin i of d.k over an axis of n (AdaptiveAvgPool2d's bins, PyTorch's rule): [start, end) =
// [floor(i*n/k), ceil((i+1)*n/k)), overlapping when n is not a multiple of k.
fn pool_bin(i: u32, n: u32) -> vec2<u32> {
    return vec2((i * n) / d.k, ((i + 1u) * n + d.k - 1u) / d.k);
}

// Input row/column for output position `o`, tap `t`; negative (as i32) means padding.
fn in_coord(o: u32, t: u32) -> i32 {
    return i32(o * d.stride + t * d.dil) - i32(d.pad);
}

// The inverse of `in_coord`: the output position that reads input coordinate `i` at tap `t` along
// an axis with `n_out` outputs, or -1 when none does (i + pad - t*dil negative, not a multiple of
// the stride, or past the end). The backward's gather form of the transposed conv uses it.
fn out_coord(i: u32, t: u32, n_out: u32) -> i32 {
    let q = i32(i + d.pad) - i32(t * d.dil);
    if (q < 0 || u32(q) % d.stride != 0u) { return -1; }
    let o = u32(q) / d.stride;
    if (o >= n_out) { return -1; }
    return i32(o);
}
