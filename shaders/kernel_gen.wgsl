// conv_kernel.3: grouped 1x1 conv (groups = r) from the r*r sigmoid maps to the r*I*O kernel
// channels. Group g reads sigmoid channels g*r..g*r+r-1 and writes channels g*I*O..(g+1)*I*O-1.
// One workgroup per (b, g, 64 channels of the group), one invocation per channel c computing its
// k*k taps: the sigmoid values of a tap are the same for the whole workgroup (a broadcast), and
// the workgroup's r*64 weights are read once per tap from cache.
@group(0) @binding(1) var<storage, read> sig: array<f32>;
@group(0) @binding(2) var<storage, read> w3: array<f32>;
@group(0) @binding(3) var<storage, read> b3: array<f32>;
@group(0) @binding(4) var<storage, read_write> kern: array<f32>;

// Workgroup t = (b * r + g) * ceil(I*O / 64) + channel tile (see src/gpu/tiles.rs).
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= d.count / WG) { return; }
    let tile = d.base / WG + t;
    let io = d.cin * d.cout;
    let ctiles = (io + 63u) / 64u;
    let bg = tile / ctiles;
    let cl = (tile % ctiles) * 64u + li;
    if (cl >= io) { return; }
    let g = bg % d.r;
    let b = bg / d.r;
    let kk = d.k * d.k;
    let c = g * io + cl;
    let sig_base = (b * d.r + g) * d.r * kk;
    let out_base = (b * d.r * io + c) * kk;
    for (var uv = 0u; uv < kk; uv++) {
        var s = b3[c];
        for (var j = 0u; j < d.r; j++) {
            s += w3[c * d.r + j] * sig[sig_base + j * kk + uv];
        }
        kern[out_base + uv] = s;
    }
}
