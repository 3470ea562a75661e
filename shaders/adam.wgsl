// torch.optim.Adam (amsgrad off): g += wd * p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= step_size * m / (sqrt(v) / bc2_sqrt + eps), with step_size = lr / (1 - b1^t) and
// bc2_sqrt = sqrt(1 - b2^t) computed on the host (in f64, as PyTorch's Python floats).
// hyper = [beta1, beta2, eps, weight_decay, step_size, bc2_sqrt], rewritten before every step.
@group(0) @binding(1) var<storage, read> hyper: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let b1 = hyper[0];
    let b2 = hyper[1];
    var g = grad[idx];
    if (hyper[3] != 0.0) {
        g += hyper[3] * param[idx];
    }
    let mi = b1 * m[idx] + (1.0 - b1) * g;
    let vi = b2 * v[idx] + (1.0 - b2) * g * g;
    m[idx] = mi;
    v[idx] = vi;
    param[idx] -= hyper[4] * mi / (sqrt(vi) / hyper[5] + hyper[2]);
}
