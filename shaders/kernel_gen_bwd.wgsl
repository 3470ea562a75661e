// Backward of conv_kernel.3, the grouped 1x1 conv (groups = r) from the r*r sigmoid maps to the
// r*I*O kernel channels: gradients to the sigmoid maps, the weight and the bias.
@group(0) @binding(1) var<storage, read> sig: array<f32>;
@group(0) @binding(2) var<storage, read> w3: array<f32>;
@group(0) @binding(3) var<storage, read> dkern: array<f32>;
@group(0) @binding(4) var<storage, read_write> dsig: array<f32>;
@group(0) @binding(5) var<storage, read_write> dw3: array<f32>;
@group(0) @binding(6) var<storage, read_write> db3: array<f32>;

// dsig[b, g*r + j, t] = sum over the I*O channels c of group g of w3[c, j] * dkern[b, c, t].
// One invocation per (b, m, t).
@compute @workgroup_size(WG)
fn sigmoid_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let rr = d.r * d.r;
    let io = d.cin * d.cout;
    let t = idx % kk;
    let m = (idx / kk) % rr;
    let b = idx / (kk * rr);
    let g = m / d.r;
    let j = m % d.r;
    var s = 0.0;
    for (var ch = 0u; ch < io; ch++) {
        let c = g * io + ch;
        s += w3[c * d.r + j] * dkern[(b * d.r * io + c) * kk + t];
    }
    dsig[idx] = s;
}

// One invocation per (c, jj), jj in 0..=r: jj < r gives dw3[c, jj] = sum_{b,t} dkern[b,c,t] *
// sig[b, g*r + jj, t]; jj == r gives db3[c] = sum_{b,t} dkern[b,c,t]. B*k*k terms: one stage.
@compute @workgroup_size(WG)
fn weight_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let jj = idx % (d.r + 1u);
    let c = idx / (d.r + 1u);
    let g = c / io;
    var s = 0.0;
    for (var b = 0u; b < d.batch; b++) {
        let kbase = (b * d.r * io + c) * kk;
        let sbase = (b * d.r * d.r + g * d.r + jj) * kk;
        for (var t = 0u; t < kk; t++) {
            if (jj == d.r) {
                s += dkern[kbase + t];
            } else {
                s += dkern[kbase + t] * sig[sbase + t];
            }
        }
    }
    if (jj == d.r) {
        db3[c] = s;
    } else {
        dw3[c * d.r + jj] = s;
    }
}

// The GPU family's `sigmoid_grad`: one workgroup of 256 per (b, g, t) and chunk of the I*O
// channels (`sig_chunks()` chunks), each invocation summing every 256th channel of the chunk
// for 8 regions j at a time, then a fixed-order tree over the 256 partial sums in workgroup
// memory (deterministic). One chunk writes dsig; more write dsig_part[chunk][b, m, t], added in
// chunk order by `sigmoid_grad_sum`. Workgroup w = ((b * r + g) * k*k + t) * chunks + chunk.
fn sig_chunks() -> u32 { return d.aux0; }

@group(0) @binding(7) var<storage, read_write> dsig_part: array<f32>;
var<workgroup> spart: array<vec4<f32>, 512>;

@compute @workgroup_size(256)
fn sigmoid_grad_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let w = group_index(wid, nwg);
    if (w == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let io = d.cin * d.cout;
    let chunks = sig_chunks();
    let chunk = w % chunks;
    let t = (w / chunks) % kk;
    let bg = w / (chunks * kk);
    let g = bg % d.r;
    let b = bg / d.r;
    let per = (io + chunks - 1u) / chunks;
    let c0 = min(chunk * per, io);
    let c1 = min(c0 + per, io);
    let r1 = d.r - 1u;
    for (var j0 = 0u; j0 < d.r; j0 += 8u) {
        var a = vec4(0.0);
        var e = vec4(0.0);
        for (var ch = c0 + li; ch < c1; ch += 256u) {
            let c = g * io + ch;
            let dk = dkern[(b * d.r * io + c) * kk + t];
            let wr = c * d.r;
            a += vec4(w3[wr + min(j0, r1)], w3[wr + min(j0 + 1u, r1)], w3[wr + min(j0 + 2u, r1)],
                      w3[wr + min(j0 + 3u, r1)]) * dk;
            e += vec4(w3[wr + min(j0 + 4u, r1)], w3[wr + min(j0 + 5u, r1)], w3[wr + min(j0 + 6u, r1)],
                      w3[wr + min(j0 + 7u, r1)]) * dk;
        }
        spart[li] = a;
        spart[256u + li] = e;
        workgroupBarrier();
        for (var stride = 128u; stride > 0u; stride /= 2u) {
            if (li < stride) {
                spart[li] += spart[li + stride];
                spart[256u + li] += spart[256u + li + stride];
            }
            workgroupBarrier();
        }
        if (li < min(8u, d.r - j0)) {
            let v = select(spart[0], spart[256], li >= 4u)[li % 4u];
            let at = ((b * d.r + g) * d.r + j0 + li) * kk + t;
            if (chunks == 1u) {
                dsig[at] = v;
            } else {
                dsig_part[chunk * d.batch * d.r * d.r * kk + at] = v;
            }
        }
        workgroupBarrier();
    }
}

// dsig as the sum of `sigmoid_grad_split`'s chunks, in chunk order; one invocation per element.
@compute @workgroup_size(WG)
fn sigmoid_grad_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let n = d.batch * d.r * d.r * d.k * d.k;
    var s = dsig_part[idx];
    for (var c = 1u; c < sig_chunks(); c++) {
        s += dsig_part[c * n + idx];
    }
    dsig[idx] = s;
}
