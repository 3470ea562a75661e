// AdaptiveAvgPool2d((k, k)) with PyTorch's bins (`pool_bin` in common.wgsl). One invocation per
// pooled value (b, i, u, v).
@group(0) @binding(1) var<storage, read> x: array<f32>;
// Binding 8: the module is also composed with guide_conv.wgsl (`shaders/pool_guide.wgsl`), whose
// bindings are 1-7.
@group(0) @binding(8) var<storage, read_write> pooled: array<f32>;

// The shader-specific words of `Dims`, by name.
// chunk_y0: the first input row of a row chunk (`Dims::pool_rows`).
fn chunk_y0() -> u32 { return d.aux0; }
// chunk_rows: its row count.
fn chunk_rows() -> u32 { return d.aux1; }

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let v = idx % d.k;
    let u = (idx / d.k) % d.k;
    let bi = idx / (d.k * d.k);
    let hb = pool_bin(u, d.h);
    let wb = pool_bin(v, d.w);
    var s = 0.0;
    for (var y = hb.x; y < hb.y; y++) {
        let row = (bi * d.h + y) * d.w;
        for (var xx = wb.x; xx < wb.y; xx++) {
            s += x[row + xx];
        }
    }
    pooled[idx] = s / f32((hb.y - hb.x) * (wb.y - wb.x));
}

// A plane larger than one binding, in chunks of rows (src/gpu/split/pool.rs): `x` holds rows
// chunk_y0() .. chunk_y0() + chunk_rows() of one channel's H x W plane, `pooled` that channel's k x k sums so
// far (zeroed before the first chunk). Each bin adds the sum of its window's rows in the chunk;
// `pool_finish` then divides by the bin areas.
@compute @workgroup_size(WG)
fn pool_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let v = idx % d.k;
    let u = idx / d.k;
    let y0 = chunk_y0();
    let hb = pool_bin(u, d.h);
    let h0 = max(hb.x, y0);
    let h1 = min(hb.y, y0 + chunk_rows());
    let wb = pool_bin(v, d.w);
    var s = 0.0;
    for (var y = h0; y < h1; y++) {
        let row = (y - y0) * d.w;
        for (var xx = wb.x; xx < wb.y; xx++) {
            s += x[row + xx];
        }
    }
    pooled[idx] += s;
}

// The k x k sums of `pool_rows` into means.
@compute @workgroup_size(WG)
fn pool_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let hb = pool_bin(idx / d.k, d.h);
    let wb = pool_bin(idx % d.k, d.w);
    pooled[idx] = pooled[idx] / f32((hb.y - hb.x) * (wb.y - wb.x));
}

// The GPU family's pool: 64 invocations per pooled value (b, i, u, v), reading the bin's pixels
// 64 at a time (consecutive lanes along a row: coalesced), then a fixed-order tree over the 64
// partial sums in workgroup memory (deterministic). `main` makes one invocation read a whole bin
// (a few thousand loads in sequence at 128 x 128) and launches B*I*k*k / 64 workgroups: 3 at 16
// channels. `pool_split`: a workgroup per value; `pool_guide.wgsl` `pool_guide`: 4 per workgroup
// of 256 beside the guide's workgroups.
var<workgroup> psum: array<f32, 256>;

// Pooled value `idx` (none past the end) from the 64 invocations `seg` * 64 + lane of the
// workgroup. Every invocation of the workgroup calls it (barriers).
fn pool_value(idx: u32, seg: u32, lane: u32) {
    let live = idx < d.batch * d.cin * d.k * d.k;
    let v = idx % d.k;
    let u = (idx / d.k) % d.k;
    let bi = idx / (d.k * d.k);
    let hb = pool_bin(u, d.h);
    let wb = pool_bin(v, d.w);
    let bw = wb.y - wb.x;
    let n = select(0u, (hb.y - hb.x) * bw, live);
    var s = 0.0;
    for (var j = lane; j < n; j += 64u) {
        s += x[(bi * d.h + hb.x + j / bw) * d.w + wb.x + j % bw];
    }
    let at = seg * 64u + lane;
    psum[at] = s;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            psum[at] += psum[at + stride];
        }
        workgroupBarrier();
    }
    if (live && lane == 0u) {
        pooled[idx] = psum[at] / f32(n);
    }
}

@compute @workgroup_size(WG)
fn pool_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let idx = group_index(wid, nwg);
    if (idx == 0xffffffffu) { return; }
    pool_value(idx, 0u, li);
}
