// Channel-last copies for the CPU adapters' entries (the correlation, the guide conv and their
// backward read them as vec4s along the channels): [n, C, S] into [n, S, C], C % 4 == 0. The
// plan sets C and S with `Dims::transpose`.
@group(0) @binding(1) var<storage, read> src: array<f32>;
// The same source as vec4s, for `transpose4`.
@group(0) @binding(2) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;

fn channels() -> u32 { return d.aux0; }
fn positions() -> u32 { return d.aux1; }

// One invocation per (n, s, block of 4 channels): 4 loads, one vec4 store.
@compute @workgroup_size(WG)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let cs = channels();
    let ss = positions();
    let c4 = cs / 4u;
    let blk = idx % c4;
    let sp = (idx / c4) % ss;
    let n = idx / (c4 * ss);
    let a = (n * cs + blk * 4u) * ss + sp;
    dst[idx] = vec4<f32>(src[a], src[a + ss], src[a + 2u * ss], src[a + 3u * ss]);
}

// `transpose` where S % 4 == 0: one invocation per (n, block of 4 s, block of 4 channels) reads
// 4 vec4s (4 channels, 4 positions each) and writes 4 (4 positions, 4 channels each): 8 memory
// instructions per 16 values instead of 20.
@compute @workgroup_size(WG)
fn transpose4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let cs = channels();
    let c4 = cs / 4u;
    let s4 = positions() / 4u;
    let blk = idx % c4;
    let sb = (idx / c4) % s4;
    let n = idx / (c4 * s4);
    let a = (n * cs + blk * 4u) * s4 + sb;
    let q0 = src4[a];
    let q1 = src4[a + s4];
    let q2 = src4[a + 2u * s4];
    let q3 = src4[a + 3u * s4];
    let o = (n * positions() + sb * 4u) * c4 + blk;
    dst[o] = vec4(q0.x, q1.x, q2.x, q3.x);
    dst[o + c4] = vec4(q0.y, q1.y, q2.y, q3.y);
    dst[o + 2u * c4] = vec4(q0.z, q1.z, q2.z, q3.z);
    dst[o + 3u * c4] = vec4(q0.w, q1.w, q2.w, q3.w);
}
