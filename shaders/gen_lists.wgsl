// The kernel generator and the fused path's lists in one dispatch (as shaders/pool_guide.wgsl;
// the module adds kernel_logits.wgsl, kernel_gen.wgsl and region_select.wgsl, whose bindings do
// not overlap: `src/gpu/shaders.rs` `GEN_LISTS`). The generator's items first, 256 per
// workgroup, in its entry the decisions picked (`gen_lists_*`: `blocked`, `registers`,
// `elements`), then the list blocks (`lists_block`, Dims::lists_blocks): the lists need the
// guide, the generator the logits, and neither reads the other's output. `logits_gen_lists`
// also takes the logits' dispatch: each generator workgroup computes the logits it needs.

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

// Inference's generator with its logits (`Decisions::gen_with_logits`): the logits need only
// the pool, so each generator workgroup computes the r x k*k sigmoid values of its (sample,
// group) itself, into workgroup memory, and the logits' dispatch goes. Workgroup t < B * r *
// blocks takes block t % blocks of sample-and-group t / blocks: 256 * gen_lanes() consecutive
// kernel elements, each in `elements`' order of operations (bitwise `elements`, given the same
// sigmoid). The logits sum as `split` does (8 invocations each, `logit_part` / `logit_sum`);
// each group's first block also writes them and their sigmoid out (the forward's trace).
// Then the list blocks, as in `gen_or_lists`.
const GEN_SIG: u32 = 1024u; // the most r * k*k the workgroup holds (`shaders::GEN_SIGMOID_MOST`)
var<workgroup> gsig: array<f32, GEN_SIG>;

// Kernel elements per invocation (Dims::logits_gen_lists, 7 bits above `block_px`).
fn gen_lanes() -> u32 { return d.aux0 >> 25u; }

@compute @workgroup_size(256)
fn logits_gen_lists(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    let n = d.cin * d.cout * d.k * d.k;
    let per = 256u * gen_lanes();
    let blocks = (n + per - 1u) / per;
    if (t >= d.batch * d.r * blocks) {
        lists_block(t - d.batch * d.r * blocks, li);
        return;
    }
    let bg = t / blocks;
    group_sigmoid(bg, t % blocks == 0u, li);
    let kk = d.k * d.k;
    let g = bg % d.r;
    let e0 = (t % blocks) * per;
    let e1 = min(e0 + per, n);
    for (var e = e0 + li; e < e1; e += 256u) {
        let uv = e % kk;
        let c = g * d.cin * d.cout + e / kk;
        var v = b3[c];
        for (var j = 0u; j < d.r; j++) {
            v += w3[c * d.r + j] * gsig[j * kk + uv];
        }
        kern[bg * n + e] = v;
    }
}

// The sigmoid of sample-and-group bg's logits m = g r + j (j < r) at every tap, into
// gsig[j * k*k + tap]; `write`: also into `logits` and `sigmoid`. 32 logits per round.
fn group_sigmoid(bg: u32, write: bool, li: u32) {
    let kk = d.k * d.k;
    let b = bg / d.r;
    let g = bg % d.r;
    let n = d.r * kk;
    for (var l0 = 0u; l0 < n; l0 += 32u) {
        let l = l0 + li / 8u;
        let m = g * d.r + l / kk;
        let live = l < n;
        var s = 0.0;
        if (live) {
            s = logit_part(b, m, l % kk, li % 8u);
        }
        lpart[li] = s;
        workgroupBarrier();
        if (live && li % 8u == 0u) {
            let v = logit_sum(m, li);
            gsig[l] = sigmoid_of(v);
            if (write) {
                let at = (b * d.r * d.r + m) * kk + l % kk;
                logits[at] = v;
                sigmoid[at] = gsig[l];
            }
        }
        workgroupBarrier();
    }
}
