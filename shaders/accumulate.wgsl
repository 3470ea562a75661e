// dst += src, elementwise: sums the per-chunk gradients of a plan split over batch and output
// channels (see src/gpu/split/), chunk by chunk in order, so the sum is deterministic.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// One invocation per element.
@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    dst[idx] += src[idx];
}
