// Region selection after the fused guide conv + argmax (guide_conv.wgsl):
// `gather` (training) copies each pixel's own region's correlation to the output;
// `lists` (inference) groups each sample's pixels by region, so the correlation runs one GEMM
// per region over exactly the pixels that use it; `tiles` (inference, after `lists`) lists the
// pixel tiles of those GEMMs and sizes the correlation's dispatch to them.

@group(0) @binding(2) var<storage, read> region: array<i32>;
@group(0) @binding(3) var<storage, read> corr: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// B x H'W' pixel indices, region 0's first, each region's in ascending order.
@group(0) @binding(5) var<storage, read_write> order: array<u32>;
// B x (r+1) offsets into a sample's `order`: region g is starts[g] .. starts[g+1].
@group(0) @binding(6) var<storage, read_write> starts: array<u32>;
// [0]: the number n of pixel tiles with pixels; then per tile k, sample-major, region by region:
// [1 + 3k] = b * r + g, [2 + 3k] = the tile's first index into the sample's `order`, [3 + 3k] =
// its pixel count.
@group(0) @binding(7) var<storage, read_write> tile_list: array<u32>;
// The correlation's indirect dispatch (x, y, z): n x (row tiles) workgroups, folded into y at
// grid_limit() (the device's per-dimension limit).
@group(0) @binding(8) var<storage, read_write> tile_args: array<u32>;

// The shader-specific words of `Dims`, by name: the fused correlation's tile, pixels by rows,
// and its K slices (`Dims::corr_tile`).
fn tile_px() -> u32 { return d.aux0 & 0xfffu; }
fn tile_rows() -> u32 { return (d.aux0 >> 12u) & 0xfffu; }
fn slices() -> u32 { return d.aux0 >> 24u; }
// grid_limit: the indirect grid's per-dimension limit (`Dims::grid_limit`).
fn grid_limit() -> u32 { return d.aux1; }

// One invocation per (b, o, y, x).
@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = item_index(gid, nwg);
    if (idx == 0xffffffffu) { return; }
    let hw = d.ho * d.wo;
    let p = idx % hw;
    let o = (idx / hw) % d.cout;
    let b = idx / (hw * d.cout);
    let g = u32(region[b * hw + p]);
    out[idx] = corr[((b * d.r + g) * d.cout + o) * hw + p];
}

var<workgroup> part: array<vec4<u32>, 64>;

// One workgroup per sample (see src/gpu/correlation.rs); invocation li owns a contiguous chunk of
// pixels. For 4 regions at a time: count the chunk's pixels of each, offset by the counts of the
// chunks before (a stable counting sort, no atomics: the same order every run). Each pass reads
// the chunk once for 4 regions (llvmpipe: one per-lane load loop per pixel and pass).
@compute @workgroup_size(64)
fn lists(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= d.count / WG) { return; }
    let b = d.base / WG + t;
    let hw = d.ho * d.wo;
    let chunk = (hw + 63u) / 64u;
    let p0 = min(li * chunk, hw);
    let p1 = min(p0 + chunk, hw);
    let rb = b * hw;
    var off = 0u;
    for (var g0 = 0u; g0 < d.r; g0 += 4u) {
        let gs = vec4(g0, g0 + 1u, g0 + 2u, g0 + 3u);
        var n = vec4(0u);
        for (var p = p0; p < p1; p++) {
            n += vec4<u32>(vec4(u32(region[rb + p])) == gs);
        }
        part[li] = n;
        workgroupBarrier();
        var before = vec4(0u);
        var total = vec4(0u);
        for (var j = 0u; j < 64u; j++) {
            let c = part[j];
            before += select(vec4(0u), c, j < li);
            total += c;
        }
        // Where regions g0 .. g0+3 start: each after the ones before it.
        let s4 = vec4(off) + vec4(0u, total.x, total.x + total.y, total.x + total.y + total.z);
        if (li == 0u) {
            for (var q = 0u; q < 4u; q++) {
                if (g0 + q < d.r) {
                    starts[b * (d.r + 1u) + g0 + q] = s4[q];
                }
            }
        }
        var pos = vec4(rb) + s4 + before;
        for (var p = p0; p < p1; p++) {
            let hit = vec4(u32(region[rb + p])) == gs;
            if (any(hit)) {
                order[dot(select(vec4(0u), pos, hit), vec4(1u))] = p;
                pos += vec4<u32>(hit);
            }
        }
        off += total.x + total.y + total.z + total.w;
        workgroupBarrier();
    }
    if (li == 0u) {
        starts[b * (d.r + 1u) + d.r] = off;
    }
}

var<workgroup> scan: array<u32, 64>;

// An indirect grid of at least `groups` workgroups (at least one, which the correlation ends at
// once when there are none) at tile_args[at], folded into y past the per-dimension limit.
fn write_grid(at: u32, groups: u32) {
    let x = clamp(groups, 1u, grid_limit());
    tile_args[at] = x;
    tile_args[at + 1u] = max(1u, (groups + x - 1u) / x);
    tile_args[at + 2u] = 1u;
}

// One workgroup. Tiles are tile_rows() by tile_px(), as the correlation's
// (src/gpu/correlation.rs `CorrTiling`), each run as slices() workgroups. Samples go 64 at a
// time, one per invocation:
// count its tiles, offset by the samples before (a scan in workgroup memory), write its entries.
// With the grid sized to n the correlation runs no empty workgroups; a CPU adapter's threads
// each take a fixed contiguous share of a dispatch, so empty ones at the end idled one thread.
// tile_args[0..3] is that grid; tile_args[4 (1 + j)..] the grid of (sample, region) j alone.
@compute @workgroup_size(64)
fn tiles(@builtin(local_invocation_index) li: u32) {
    let px = tile_px();
    let rows = tile_rows();
    var base = 0u;
    for (var b0 = 0u; b0 < d.batch; b0 += 64u) {
        let b = b0 + li;
        let live = b < d.batch;
        let s = min(b, d.batch - 1u) * (d.r + 1u);
        var n = 0u;
        for (var g = 0u; g < d.r; g++) {
            n += (starts[s + g + 1u] - starts[s + g] + px - 1u) / px;
        }
        scan[li] = select(0u, n, live);
        workgroupBarrier();
        var k = base;
        var total = 0u;
        for (var j = 0u; j < 64u; j++) {
            let c = scan[j];
            k += select(0u, c, j < li);
            total += c;
        }
        workgroupBarrier();
        if (live) {
            let mt = (d.cout + rows - 1u) / rows;
            for (var g = 0u; g < d.r; g++) {
                let end = starts[s + g + 1u];
                // The grid of this (sample, region)'s own dispatch (`selected_channel_last_per_region`).
                let own = (end - starts[s + g] + px - 1u) / px * mt * slices();
                write_grid(4u * (1u + b * d.r + g), own);
                for (var f = starts[s + g]; f < end; f += px) {
                    tile_list[1u + 3u * k] = b * d.r + g;
                    tile_list[2u + 3u * k] = f;
                    tile_list[3u + 3u * k] = min(px, end - f);
                    k += 1u;
                }
            }
        }
        base += total;
    }
    if (li == 0u) {
        tile_list[0] = base;
        write_grid(0u, base * ((d.cout + rows - 1u) / rows) * slices());
    }
}

// The GPU family's lists and tiles in one dispatch, no single-workgroup step: workgroup t takes
// block t % blocks of sample t / blocks (block_px() pixels, at most 32 blocks a sample). For 4
// regions at a time its 256 invocations count the sample's pixels of each region, all of them
// and those before the block (each workgroup rereads the sample's region map: at most 32 times
// its size), then place the block's pixels 256 at a time with a workgroup prefix sum of the
// region hits: the same stable order as `lists`, ascending within a region. The sample's first
// block also writes `starts` and the sample's tile slots: `sample_slots()` entries from
// 1 + 3 (b * slots) on, the tiles of region 0, then 1, ..., of slot_px() pixels, the rest with
// count 0 (the GEMM correlation's workgroups for those return at once).
// Pixels per block, 25 bits (the top 7 are gen_lists.wgsl's `gen_lanes`).
fn block_px() -> u32 { return d.aux0 & 0x1ffffffu; }
fn slot_px() -> u32 { return d.aux1 & 0x1ffu; }
fn sample_slots() -> u32 { return d.aux1 >> 9u; }

var<workgroup> scan4: array<vec4<u32>, 256>;

// The sum over the workgroup of each invocation's `v` (a fixed-order tree), in every invocation.
fn workgroup_sum4(li: u32, v: vec4<u32>) -> vec4<u32> {
    scan4[li] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride /= 2u) {
        if (li < stride) {
            scan4[li] += scan4[li + stride];
        }
        workgroupBarrier();
    }
    let s = scan4[0];
    workgroupBarrier();
    return s;
}

// The inclusive prefix sum of `v` over invocations 0 ..= li (Hillis-Steele), and in `.total`
// the whole workgroup's.
struct Prefix4 {
    incl: vec4<u32>,
    total: vec4<u32>,
}

fn workgroup_prefix4(li: u32, v: vec4<u32>) -> Prefix4 {
    scan4[li] = v;
    workgroupBarrier();
    for (var off = 1u; off < 256u; off *= 2u) {
        let add = select(vec4(0u), scan4[max(li, off) - off], li >= off);
        workgroupBarrier();
        scan4[li] += add;
        workgroupBarrier();
    }
    let r = Prefix4(scan4[li], scan4[255]);
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn lists_blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let t = group_index(wid, nwg);
    if (t == 0xffffffffu) { return; }
    lists_block(t, li);
}

// Workgroup t's block of `lists_blocks` (also run by `gen_lists.wgsl`). Every
// invocation of the workgroup calls it (barriers).
fn lists_block(t: u32, li: u32) {
    let hw = d.ho * d.wo;
    let blocks = (hw + block_px() - 1u) / block_px();
    let b = t / blocks;
    let p0 = (t % blocks) * block_px();
    let p1 = min(p0 + block_px(), hw);
    let rb = b * hw;
    let first = p0 == 0u;
    var off = 0u;
    for (var g0 = 0u; g0 < d.r; g0 += 4u) {
        let gs = vec4(g0, g0 + 1u, g0 + 2u, g0 + 3u);
        var before = vec4(0u);
        var all = vec4(0u);
        for (var p = li; p < hw; p += 256u) {
            let hit = vec4<u32>(vec4(u32(region[rb + p])) == gs);
            all += hit;
            before += select(vec4(0u), hit, p < p0);
        }
        let total = workgroup_sum4(li, all);
        var run = workgroup_sum4(li, before);
        // Where regions g0 .. g0+3 start: each after the ones before it.
        let s4 = vec4(off) + vec4(0u, total.x, total.x + total.y, total.x + total.y + total.z);
        if (first && li == 0u) {
            for (var q = 0u; q < 4u; q++) {
                if (g0 + q < d.r) {
                    starts[b * (d.r + 1u) + g0 + q] = s4[q];
                }
            }
        }
        for (var q0 = p0; q0 < p1; q0 += 256u) {
            let p = q0 + li;
            let live = p < p1;
            let hit = select(vec4(0u), vec4<u32>(vec4(u32(region[rb + min(p, hw - 1u)])) == gs), live);
            let pre = workgroup_prefix4(li, hit);
            if (any(hit == vec4(1u))) {
                let pos = vec4(rb) + s4 + run + pre.incl - hit;
                order[dot(select(vec4(0u), pos, hit == vec4(1u)), vec4(1u))] = p;
            }
            run += pre.total;
        }
        off += total.x + total.y + total.z + total.w;
    }
    if (first && li == 0u) {
        let sb = b * (d.r + 1u);
        starts[sb + d.r] = off;
        // The sample's tile slots, region by region, then empty ones.
        let px = slot_px();
        var k = b * sample_slots();
        let end_k = k + sample_slots();
        for (var g = 0u; g < d.r; g++) {
            let end = starts[sb + g + 1u];
            for (var f = starts[sb + g]; f < end && k < end_k; f += px) {
                tile_list[1u + 3u * k] = b * d.r + g;
                tile_list[2u + 3u * k] = f;
                tile_list[3u + 3u * k] = min(px, end - f);
                k += 1u;
            }
        }
        for (; k < end_k; k++) {
            tile_list[1u + 3u * k] = b * d.r;
            tile_list[2u + 3u * k] = 0u;
            tile_list[3u + 3u * k] = 0u;
        }
    }
}
