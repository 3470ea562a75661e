// Region selection after the fused guide conv + argmax (guide_conv.wgsl):
// `gather` (training) copies each pixel's own region's correlation to the output;
// `lists` (inference) groups each sample's pixels by region, so the correlation runs one GEMM
// per region over exactly the pixels that use it.

@group(0) @binding(2) var<storage, read> region: array<i32>;
@group(0) @binding(3) var<storage, read> corr: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// B x H'W' pixel indices, region 0's first, each region's in ascending order.
@group(0) @binding(5) var<storage, read_write> order: array<u32>;
// B x (r+1) offsets into a sample's `order`: region g is starts[g] .. starts[g+1].
@group(0) @binding(6) var<storage, read_write> starts: array<u32>;

// One invocation per (b, o, y, x).
@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let hw = d.ho * d.wo;
    let p = idx % hw;
    let o = (idx / hw) % d.cout;
    let b = idx / (hw * d.cout);
    let g = u32(region[b * hw + p]);
    out[idx] = corr[((b * d.r + g) * d.cout + o) * hw + p];
}

var<workgroup> part: array<u32, 64>;

// One workgroup per sample (see src/gpu/tiles.rs); invocation li owns a contiguous chunk of
// pixels. For each region in turn: count the chunk's pixels of that region, offset by the counts
// of the chunks before (a stable counting sort, no atomics: the same order every run).
@compute @workgroup_size(64)
fn lists(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= d.count / WG) { return; }
    let b = d.base / WG + t;
    let hw = d.ho * d.wo;
    let chunk = (hw + 63u) / 64u;
    let p0 = min(li * chunk, hw);
    let p1 = min(p0 + chunk, hw);
    let rb = b * hw;
    var off = 0u;
    for (var g = 0u; g < d.r; g++) {
        var n = 0u;
        for (var p = p0; p < p1; p++) {
            n += u32(u32(region[rb + p]) == g);
        }
        part[li] = n;
        workgroupBarrier();
        var before = 0u;
        var total = 0u;
        for (var j = 0u; j < 64u; j++) {
            let c = part[j];
            before += select(0u, c, j < li);
            total += c;
        }
        if (li == 0u) {
            starts[b * (d.r + 1u) + g] = off;
        }
        var pos = rb + off + before;
        for (var p = p0; p < p1; p++) {
            if (u32(region[rb + p]) == g) {
                order[pos] = p;
                pos++;
            }
        }
        off += total;
        workgroupBarrier();
    }
    if (li == 0u) {
        starts[b * (d.r + 1u) + d.r] = off;
    }
}
