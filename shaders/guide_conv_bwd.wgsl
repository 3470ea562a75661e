// Backward of conv_guide (k x k conv I -> r, stride, zero padding, dilation).
// `input_grad` adds the guide's share to dx. The weight and bias gradients sum over B*H'*W'
// positions, so they reduce in two fixed-order stages: `weight_partial` sums each chunk of
// d.aux0 positions into `partial[chunk][e]`, `weight_reduce` sums the d.aux1 chunks in order.
// Element e < r*I*k*k is weight[g, i, u, v]; e = r*I*k*k + g is bias[g].
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wg: array<f32>;
@group(0) @binding(3) var<storage, read> dguide: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<storage, read_write> dwg: array<f32>;
@group(0) @binding(7) var<storage, read_write> dbg: array<f32>;

// See correlation_bwd.wgsl: the output position reading input coordinate `i` at tap `t`, or -1.
fn out_coord(i: u32, t: u32, n_out: u32) -> i32 {
    let q = i32(i + d.pad) - i32(t * d.dil);
    if (q < 0 || u32(q) % d.stride != 0u) { return -1; }
    let o = u32(q) / d.stride;
    if (o >= n_out) { return -1; }
    return i32(o);
}

// dx[b, i, y, x] += sum over taps and g of wg[g, i, u, v] * dguide[b, g, oy, ox].
@compute @workgroup_size(WG)
fn input_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let ix = idx % d.w;
    let iy = (idx / d.w) % d.h;
    let i = (idx / (d.w * d.h)) % d.cin;
    let b = idx / (d.w * d.h * d.cin);
    let kk = d.k * d.k;
    let hw = d.ho * d.wo;
    var s = 0.0;
    for (var u = 0u; u < d.k; u++) {
        let oy = out_coord(iy, u, d.ho);
        if (oy < 0) { continue; }
        for (var v = 0u; v < d.k; v++) {
            let ox = out_coord(ix, v, d.wo);
            if (ox < 0) { continue; }
            let p = u32(oy) * d.wo + u32(ox);
            for (var g = 0u; g < d.r; g++) {
                s += wg[(g * d.cin + i) * kk + u * d.k + v] * dguide[(b * d.r + g) * hw + p];
            }
        }
    }
    dx[idx] += s;
}

// One invocation per (chunk, e).
@compute @workgroup_size(WG)
fn weight_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let kk = d.k * d.k;
    let nw = d.r * d.cin * kk;
    let ne = nw + d.r;
    let e = idx % ne;
    let chunk = idx / ne;
    let hw = d.ho * d.wo;
    let q0 = chunk * d.aux0;
    let q1 = min(q0 + d.aux0, d.batch * hw);
    var s = 0.0;
    if (e >= nw) {
        let g = e - nw;
        for (var q = q0; q < q1; q++) {
            let b = q / hw;
            s += dguide[(b * d.r + g) * hw + q % hw];
        }
    } else {
        let uv = e % kk;
        let i = (e / kk) % d.cin;
        let g = e / (kk * d.cin);
        let u = uv / d.k;
        let v = uv % d.k;
        for (var q = q0; q < q1; q++) {
            let b = q / hw;
            let p = q % hw;
            let iy = in_coord(p / d.wo, u);
            let ix = in_coord(p % d.wo, v);
            if (iy < 0 || iy >= i32(d.h) || ix < 0 || ix >= i32(d.w)) { continue; }
            s += dguide[(b * d.r + g) * hw + p] * x[((b * d.cin + i) * d.h + u32(iy)) * d.w + u32(ix)];
        }
    }
    partial[idx] = s;
}

// One invocation per e: the chunks' partial sums, in chunk order.
@compute @workgroup_size(WG)
fn weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = item_index(gid, nwg);
    if (e == 0xffffffffu) { return; }
    let nw = d.r * d.cin * d.k * d.k;
    let ne = nw + d.r;
    var s = 0.0;
    for (var c = 0u; c < d.aux1; c++) {
        s += partial[c * ne + e];
    }
    if (e < nw) {
        dwg[e] = s;
    } else {
        dbg[e - nw] = s;
    }
}
