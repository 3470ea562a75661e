// conv_kernel.1 (1x1 conv I -> r*r) fused with the sigmoid. Both the logits and the sigmoid are
// stored: the backward needs the sigmoid, and `verify` inspects both.
// One invocation per (b, m, u, v).
// Bindings 14-18: the module is also composed with kernel_gen.wgsl and region_select.wgsl
// (shaders/gen_lists.wgsl), whose bindings are 2-13 (and whose `sig` is the generator's input).
@group(0) @binding(14) var<storage, read> pooled: array<f32>;
@group(0) @binding(15) var<storage, read> w1: array<f32>;
@group(0) @binding(16) var<storage, read> b1: array<f32>;
@group(0) @binding(17) var<storage, read_write> logits: array<f32>;
@group(0) @binding(18) var<storage, read_write> sigmoid: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let rr = d.r * d.r;
    let uv = idx % kk;
    let m = (idx / kk) % rr;
    let b = idx / (kk * rr);
    var s = b1[m];
    for (var i = 0u; i < d.cin; i++) {
        s += w1[m * d.cin + i] * pooled[(b * d.cin + i) * kk + uv];
    }
    logits[idx] = s;
    sigmoid[idx] = sigmoid_of(s);
}

fn sigmoid_of(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// The GPU family's form where one invocation per logit would leave compute units idle (large
// I, few logits): 8 invocations per logit, each summing a contiguous eighth of the channels
// (`logit_part`); the 8 partial sums meet in workgroup memory and add in order (`logit_sum`:
// b1 + part 0 + ... + part 7). Workgroup w takes logits 8 w .. 8 w + 7. `lpart` is sized for
// the 256 invocations of gen_lists.wgsl's `logits_gen_lists`, which sums in the same order.
var<workgroup> lpart: array<f32, 256>;

@compute @workgroup_size(WG)
fn split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let rr = d.r * d.r;
    let idx = t * 8u + li / 8u;
    let live = idx < d.batch * rr * kk;
    let uv = idx % kk;
    let m = (idx / kk) % rr;
    let b = idx / (kk * rr);
    var s = 0.0;
    if (live) {
        s = logit_part(b, m, uv, li % 8u);
    }
    lpart[li] = s;
    workgroupBarrier();
    if (live && li % 8u == 0u) {
        let v = logit_sum(m, li);
        logits[idx] = v;
        sigmoid[idx] = sigmoid_of(v);
    }
}

// Partial sum `eighth` (0..7) of logit (b, m, uv): its contiguous eighth of the I channels.
fn logit_part(b: u32, m: u32, uv: u32, eighth: u32) -> f32 {
    let kk = d.k * d.k;
    let per = (d.cin + 7u) / 8u;
    let i0 = min(eighth * per, d.cin);
    let i1 = min(i0 + per, d.cin);
    var s = 0.0;
    for (var i = i0; i < i1; i++) {
        s += w1[m * d.cin + i] * pooled[(b * d.cin + i) * kk + uv];
    }
    return s;
}

// Logit m from its 8 partial sums at lpart[at ..]: the bias, then the parts in order.
fn logit_sum(m: u32, at: u32) -> f32 {
    var v = b1[m];
    for (var q = 0u; q < 8u; q++) {
        v += lpart[at + q];
    }
    return v;
}
