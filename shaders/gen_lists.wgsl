// The kernel generator and the fused path's lists in one dispatch (as shaders/pool_guide.wgsl;
// the module adds kernel_gen.wgsl and region_select.wgsl, whose bindings do not overlap:
// `src/gpu/shaders.rs` `GEN_LISTS`). The generator's items first, 256 per workgroup, in its entry
// the decisions picked (`gen_lists_*`: `blocked`, `registers`, `elements`), then the list blocks
// (`lists_block`, Dims::lists_blocks): the lists need the guide, the generator the logits, and
// neither reads the other's output.

// The generator's workgroups for `items` items, 256 each.
fn gen_groups(items: u32) -> u32 {
    return (items + 255u) / 256u;
}

// `blocked`: (b, g, 8 channels, 4 taps) items.
@compute @workgroup_size(256)
fn gen_lists_blocked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    let items = d.batch * d.r * ((d.cin * d.cout + 7u) / 8u) * ((d.k * d.k + 3u) / 4u);
    let gens = gen_groups(items);
    if (t < gens) {
        let idx = t * 256u + li;
        if (idx < items) { blocked_item(idx); }
    } else {
        lists_block(t - gens, li);
    }
}

// `registers`: (b, g, 8 channels) items.
@compute @workgroup_size(256)
fn gen_lists_registers(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    let items = d.batch * d.r * ((d.cin * d.cout + 7u) / 8u);
    let gens = gen_groups(items);
    if (t < gens) {
        let idx = t * 256u + li;
        if (idx < items) { registers_item(idx); }
    } else {
        lists_block(t - gens, li);
    }
}

// `elements`: one item per kernel element.
@compute @workgroup_size(256)
fn gen_lists_elements(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    let items = d.batch * d.r * d.cin * d.cout * d.k * d.k;
    let gens = gen_groups(items);
    if (t < gens) {
        let idx = t * 256u + li;
        if (idx < items) { elements_item(idx); }
    } else {
        lists_block(t - gens, li);
    }
}
