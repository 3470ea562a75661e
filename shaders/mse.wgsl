// MSE loss mean((y - t)^2) over loss_elements() elements and its gradient 2 (y - t) / N. The loss reduces
// in two fixed-order stages: chunks of loss_chunk() elements, then the chunk sums in order.
// Outputs larger than one storage binding are bound range by range (buffer ranges of y, tgt
// and gy): d.cin is the range's element count and d.cout the index of its first chunk. Ranges
// start at multiples of loss_chunk() elements, so the chunks (and the loss) are those of one range.
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read_write> gy: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;

// The shader-specific words of `Dims`, by name.
// loss_elements: elements of the loss (`Dims::loss`).
fn loss_elements() -> u32 { return d.aux0; }
// loss_chunk: elements per partial sum.
fn loss_chunk() -> u32 { return d.aux1; }

// One invocation per element of the range.
@compute @workgroup_size(WG)
fn grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    gy[idx] = 2.0 * (y[idx] - tgt[idx]) / f32(loss_elements());
}

// One invocation per chunk of the range.
@compute @workgroup_size(WG)
fn loss_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = item_index(gid, nwg);
    if (c == 0xffffffffu) { return; }
    let e1 = min((c + 1u) * loss_chunk(), d.cin);
    var s = 0.0;
    for (var e = c * loss_chunk(); e < e1; e++) {
        let diff = y[e] - tgt[e];
        s += diff * diff;
    }
    partial[d.cout + c] = s;
}

// A single invocation.
@compute @workgroup_size(WG)
fn loss_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (item_index(gid, nwg) != 0u) { return; }
    let chunks = (loss_elements() + loss_chunk() - 1u) / loss_chunk();
    var s = 0.0;
    for (var c = 0u; c < chunks; c++) {
        s += partial[c];
    }
    loss[0] = s / f32(loss_elements());
}
