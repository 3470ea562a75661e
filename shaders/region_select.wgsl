// Region selection: `argmax` picks each pixel's region (first maximal index, NaN counts as the
// maximum, as torch.argmax); `gather` copies that region's correlation to the output.

@group(0) @binding(1) var<storage, read> guide: array<f32>;
@group(0) @binding(2) var<storage, read_write> region: array<i32>;
@group(0) @binding(3) var<storage, read> corr: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// One invocation per (b, y, x).
@compute @workgroup_size(WG)
fn argmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let hw = d.ho * d.wo;
    let p = idx % hw;
    let b = idx / hw;
    var best = guide[b * d.r * hw + p];
    var best_g = 0u;
    for (var g = 1u; g < d.r; g++) {
        let v = guide[(b * d.r + g) * hw + p];
        if (!is_nan(best) && (v > best || is_nan(v))) {
            best = v;
            best_g = g;
        }
    }
    region[idx] = i32(best_g);
}

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
