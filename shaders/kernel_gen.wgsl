// conv_kernel.3: grouped 1x1 conv (groups = r) from the r*r sigmoid maps to the r*I*O kernel
// channels. Group g reads sigmoid channels g*r..g*r+r-1 and writes channels g*I*O..(g+1)*I*O-1.
// One invocation per (b, c, u, v).
@group(0) @binding(1) var<storage, read> sig: array<f32>;
@group(0) @binding(2) var<storage, read> w3: array<f32>;
@group(0) @binding(3) var<storage, read> b3: array<f32>;
@group(0) @binding(4) var<storage, read_write> kern: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let nc = d.r * io;
    let uv = idx % kk;
    let c = (idx / kk) % nc;
    let b = idx / (kk * nc);
    let g = c / io;
    var s = b3[c];
    let sig_base = (b * d.r * d.r + g * d.r) * kk + uv;
    for (var j = 0u; j < d.r; j++) {
        s += w3[c * d.r + j] * sig[sig_base + j * kk];
    }
    kern[idx] = s;
}
