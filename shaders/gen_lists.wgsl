// The kernel generator and the fused path's lists in one dispatch (as shaders/pool_guide.wgsl;
// the module adds kernel_gen.wgsl and region_select.wgsl, whose bindings do not overlap:
// `src/gpu/shaders.rs` `GEN_LISTS`). The generator's items first, 256 per workgroup, in its entry
// the decisions picked (`gen_lists_*`: `blocked`, `registers`, `elements`), then the list blocks
// (`lists_block`, Dims::lists_blocks): the lists need the guide, the generator the logits, and
// neither reads the other's output.

const BLOCKED: u32 = 0u; // (b, g, 8 channels, 4 taps) items
const REGISTERS: u32 = 1u; // (b, g, 8 channels) items
const ELEMENTS: u32 = 2u; // one item per kernel element

// Workgroup t of the dispatch with generator `gen` (a constant of each entry).
fn gen_or_lists(t: u32, li: u32, gen: u32) {
    let blocks8 = d.batch * d.r * ((d.cin * d.cout + 7u) / 8u);
    var items = d.batch * d.r * d.cin * d.cout * d.k * d.k;
    if (gen == BLOCKED) {
        items = blocks8 * ((d.k * d.k + 3u) / 4u);
    } else if (gen == REGISTERS) {
        items = blocks8;
    }
    let gens = (items + 255u) / 256u;
    if (t >= gens) {
        lists_block(t - gens, li);
        return;
    }
    let idx = t * 256u + li;
    if (idx >= items) { return; }
    switch gen {
        case BLOCKED: { blocked_item(idx); }
        case REGISTERS: { registers_item(idx); }
        default: { elements_item(idx); }
    }
}

@compute @workgroup_size(256)
fn gen_lists_blocked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    gen_or_lists(t, li, BLOCKED);
}

@compute @workgroup_size(256)
fn gen_lists_registers(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    gen_or_lists(t, li, REGISTERS);
}

@compute @workgroup_size(256)
fn gen_lists_elements(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    gen_or_lists(t, li, ELEMENTS);
}
