// Two independent stages of the GPU family's forward in one dispatch, so that a layer takes
// fewer dispatches (each a pipeline barrier): WGSL cannot order workgroups inside a dispatch, so
// only stages that do not read each other's output share one. The module is composed from
// adaptive_pool.wgsl and guide_conv.wgsl (their bindings do not overlap) and this file
// (`src/gpu/shaders.rs` `POOL_GUIDE`); shaders/gen_lists.wgsl does the same for the generator
// and the fused path's lists. Workgroups first take the first stage's work, the rest the
// second's: B*I*k*k / 4 workgroups pool 4 values each (`pool_value`), then the guide's
// workgroups (`guide_block`, pixels per workgroup from Dims::guide_px).
@compute @workgroup_size(256)
fn pool_guide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    let pools = (d.batch * d.cin * d.k * d.k + 3u) / 4u;
    if (t < pools) {
        pool_value(t * 4u + li / 64u, li / 64u, li % 64u);
    } else {
        guide_block(t - pools, li);
    }
}
