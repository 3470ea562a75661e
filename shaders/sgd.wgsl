// torch.optim.SGD (dampening 0, no Nesterov): g += wd * p; buf = g on the first step, then
// buf = momentum * buf + g; p -= lr * buf. Without momentum there is no buffer: p -= lr * g.
// hyper = [lr, momentum, weight_decay, first_step (1 or 0)], rewritten before every step.
@group(0) @binding(1) var<storage, read> hyper: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> buf: array<f32>;

fn decayed(idx: u32) -> f32 {
    var g = grad[idx];
    if (hyper[2] != 0.0) {
        g += hyper[2] * param[idx];
    }
    return g;
}

@compute @workgroup_size(WG)
fn momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let g = decayed(idx);
    var b = g;
    if (hyper[3] == 0.0) {
        b = hyper[1] * buf[idx] + g;
    }
    buf[idx] = b;
    param[idx] -= hyper[0] * b;
}

@compute @workgroup_size(WG)
fn plain(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    param[idx] -= hyper[0] * decayed(idx);
}
