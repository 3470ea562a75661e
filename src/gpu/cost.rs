//! The plan report's counts: every dispatch a plan records, from its [`Decisions`] alone (no
//! device), with its entry, workgroups, workgroup memory, the FLOPs it does and the least bytes
//! it must move (each tensor it reads or writes once, f32). `tests/plan_report.rs` checks the
//! list against the steps real plans record, dispatch by dispatch, so the two cannot drift.
//!
//! Counts, not guesses: FLOPs count a multiply-add as 2 and leave out comparisons, sigmoids
//! and index arithmetic; bytes are the minimum traffic to memory, what a perfect cache would
//! leave (a dispatch that rereads x from memory moves more).

use serde::Serialize;

use crate::config::{DrConvConfig, ForwardShape, Mode};
use crate::gpu::decide::{logits_gen_groups, Decisions};
use crate::gpu::shaders::LOGITS_GEN_LISTS_WORKGROUP_BYTES;
use crate::gpu::shaders::{CORR_WORKGROUP_BYTES, GEMM_INVOCATIONS, GEMM_WORKGROUP_BYTES};
use crate::gpu::shaders::{GUIDE_WORKGROUP_BYTES, KERNEL_GRAD_WORKGROUP_BYTES, WG};

/// One dispatch of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatch {
    /// The step's label (what the benchmark's per-step times name).
    pub label: &'static str,
    pub entry: &'static str,
    /// Workgroups (for an indirect dispatch, the most the device may write).
    pub workgroups: u64,
    /// Invocations per workgroup.
    pub invocations: u32,
    pub workgroup_bytes: u32,
    pub flops: u64,
    pub bytes: u64,
    /// The grid is written on the device.
    pub indirect: bool,
}

/// The layer's sizes as u64, named as in the golden README.
#[derive(Clone, Copy)]
struct Sizes {
    b: u64,
    i: u64,
    o: u64,
    r: u64,
    kk: u64,
    /// Input pixels per sample, H x W.
    hw: u64,
    /// Output pixels per sample, H' x W'.
    p: u64,
}

impl Sizes {
    fn new(c: &DrConvConfig, s: &ForwardShape) -> Self {
        Sizes {
            b: s.batch as u64,
            i: c.in_channels as u64,
            o: c.out_channels as u64,
            r: c.region_num as u64,
            kk: (c.kernel_size * c.kernel_size) as u64,
            hw: (s.height * s.width) as u64,
            p: (s.out_height * s.out_width) as u64,
        }
    }

    /// Floats of x, of the generated kernel (all regions) and of the output.
    fn x(&self) -> u64 {
        self.b * self.i * self.hw
    }

    fn kernel(&self) -> u64 {
        self.b * self.r * self.o * self.i * self.kk
    }

    fn out(&self) -> u64 {
        self.b * self.o * self.p
    }

    /// Floats of the guide, B x r x H' x W'.
    fn guide(&self) -> u64 {
        self.b * self.r * self.p
    }

    /// The guide weight gradient's partial sums, one per `chunk` output positions.
    fn chunks(&self, chunk: usize) -> u64 {
        (self.b * self.p).div_ceil(chunk as u64)
    }

    /// One region's correlation: 2 B O I k^2 H'W'.
    fn corr_flops(&self) -> u64 {
        2 * self.out() * self.i * self.kk
    }
}

/// `region_select.wgsl` `lists`: one workgroup per sample (forward and backward alike).
fn region_lists(z: Sizes) -> Dispatch {
    let (b, p, r) = (z.b, z.p, z.r);
    let mut lists = groups("region_lists", "lists", b, 0, 2 * b * p + b * (r + 1));
    lists.workgroup_bytes = 1024;
    lists
}

/// A dispatch of `items` invocations in workgroups of `WG` (`GpuContext::steps`).
fn lanes(
    label: &'static str,
    entry: &'static str,
    items: u64,
    flops: u64,
    floats: u64,
) -> Dispatch {
    groups(label, entry, items.div_ceil(WG as u64), flops, floats)
}

/// A dispatch of `workgroups` workgroups (`GpuContext::group_steps`).
fn groups(
    label: &'static str,
    entry: &'static str,
    workgroups: u64,
    flops: u64,
    floats: u64,
) -> Dispatch {
    Dispatch {
        label,
        entry,
        workgroups: workgroups.max(1),
        invocations: WG,
        workgroup_bytes: 0,
        flops,
        bytes: 4 * floats,
        indirect: false,
    }
}

/// `transpose.wgsl`: `n x ch x sp` into `n x sp x ch` (`GpuContext::transpose_steps`).
fn transpose(label: &'static str, numel: u64, positions: u64) -> Dispatch {
    let (entry, per_item) = match positions % 4 {
        0 => ("transpose4", 16),
        _ => ("transpose", 4),
    };
    lanes(label, entry, numel / per_item, 0, 2 * numel)
}

/// Every dispatch of a plan with decisions `d`: the forward, and in training its backward.
pub fn dispatches(d: &Decisions, c: &DrConvConfig, s: &ForwardShape) -> Vec<Dispatch> {
    let mut v = forward(d, c, s);
    if d.mode == Mode::Training {
        v.extend(backward(d, c, s));
    }
    v
}

/// The GPU family's small reductions, 64 partial sums each in workgroup memory (256 bytes).
const SMALL_REDUCTIONS: [&str; 4] = ["pool_split", "split", "big_g_split", "weight_grad_split"];

/// Sets the workgroup memory of the small reductions in `v`.
fn with_reduction_memory(mut v: Vec<Dispatch>) -> Vec<Dispatch> {
    for x in &mut v {
        if SMALL_REDUCTIONS.contains(&x.entry) && x.invocations == WG {
            // `split` shares its array with `logits_gen_lists`' 256 invocations.
            x.workgroup_bytes = 4 * if x.entry == "split" { 256 } else { WG };
        }
    }
    v
}

/// The forward's dispatches, in the order `ForwardPlan::stages` records them.
pub fn forward(d: &Decisions, c: &DrConvConfig, s: &ForwardShape) -> Vec<Dispatch> {
    let z = Sizes::new(c, s);
    merge_stages(d, z, with_reduction_memory(forward_steps(d, c, s)))
}

/// The GPU family's shared dispatches (`shaders/pool_guide.wgsl`, `shaders/gen_lists.wgsl`):
/// the pool's dispatch becomes the pool's and the guide's (4 pooled values per workgroup of 256,
/// then the guide's workgroups, x read once), the generator's the generator's and the lists'
/// (its items 256 per workgroup, then the list blocks).
fn merge_stages(d: &Decisions, z: Sizes, mut v: Vec<Dispatch>) -> Vec<Dispatch> {
    fn take(v: &mut Vec<Dispatch>, label: &str) -> Option<(usize, Dispatch)> {
        let at = v.iter().position(|x| x.label == label)?;
        Some((at, v.remove(at)))
    }
    if d.pool_with_guide {
        let pool = take(&mut v, "adaptive_pool");
        if let (Some((at, pool)), Some((_, guide))) = (pool, take(&mut v, "guide_argmax")) {
            let pooled = z.b * z.i * z.kk;
            let mut m = groups(
                "pool_guide",
                "pool_guide",
                pooled.div_ceil(4) + guide.workgroups,
                pool.flops + guide.flops,
                0,
            );
            m.bytes = pool.bytes + guide.bytes - 4 * z.x();
            (m.invocations, m.workgroup_bytes) =
                (GEMM_INVOCATIONS, 4 * 256 + GUIDE_WORKGROUP_BYTES);
            v.insert(at, m);
        }
    }
    if d.gen_with_lists {
        let logits = d
            .gen_with_logits
            .and_then(|_| take(&mut v, "kernel_logits"));
        let gen = take(&mut v, "kernel_gen");
        if let (Some((at, gen)), Some((_, lists))) = (gen, take(&mut v, "region_lists")) {
            let entry = match gen.entry {
                "blocked" => "gen_lists_blocked",
                "registers" => "gen_lists_registers",
                _ => "gen_lists_elements",
            };
            let workgroups = d.kernel_gen.entry.items.div_ceil(256) + lists.workgroups;
            let mut m = groups("gen_lists", entry, workgroups, gen.flops, 0);
            m.bytes = gen.bytes + lists.bytes;
            (m.invocations, m.workgroup_bytes) = (GEMM_INVOCATIONS, lists.workgroup_bytes);
            if let Some(lanes) = d.gen_with_logits {
                m = with_logits(z, lanes, m, logits, lists.workgroups);
            }
            v.insert(at, m);
        }
    }
    v
}

/// The generator-and-lists dispatch `m` also taking the logits' dispatch (`logits_gen_lists`):
/// `lanes` kernel elements per invocation, every generator workgroup computing its group's r x
/// k*k logits again (their FLOPs counted each time), the sigmoid map no longer read back.
fn with_logits(
    z: Sizes,
    lanes: u64,
    mut m: Dispatch,
    logits: Option<(usize, Dispatch)>,
    list_groups: u64,
) -> Dispatch {
    let gens = logits_gen_groups(z.b * z.r, z.i * z.o * z.kk, lanes);
    let map = z.b * z.r * z.r * z.kk;
    let logits = logits.map(|(_, l)| l.bytes).unwrap_or(0);
    m.entry = "logits_gen_lists";
    m.workgroups = gens + list_groups;
    m.flops += gens * 2 * z.r * z.kk * z.i;
    m.bytes = m.bytes + logits - 4 * map;
    m.workgroup_bytes = LOGITS_GEN_LISTS_WORKGROUP_BYTES;
    m
}

fn forward_steps(d: &Decisions, c: &DrConvConfig, s: &ForwardShape) -> Vec<Dispatch> {
    let z = Sizes::new(c, s);
    let (b, i, o, r, kk, p) = (z.b, z.i, z.o, z.r, z.kk, z.p);
    let pooled = b * i * kk;
    let logits = b * r * r * kk;
    let mut v = vec![
        match d.pool_split {
            true => groups("adaptive_pool", "pool_split", pooled, z.x(), z.x() + pooled),
            false => lanes("adaptive_pool", "main", pooled, z.x(), z.x() + pooled),
        },
        match d.logits_split {
            true => groups(
                "kernel_logits",
                "split",
                logits.div_ceil(8),
                2 * logits * i,
                0,
            ),
            false => lanes("kernel_logits", "main", logits, 2 * logits * i, 0),
        },
    ];
    v[1].bytes = 4 * (pooled + r * r * (i + 1) + 2 * logits);
    let g = d.kernel_gen;
    // The unrolled generator writes the kernel and its channel-last rows in training.
    let layouts = match d.generator_writes_rows && !d.kernel_channel_last {
        true => 2,
        false => 1,
    };
    let weights = r * i * o * (r + 1);
    let gen_flops = 2 * z.kernel() * r;
    v.push(lanes(
        "kernel_gen",
        g.entry.entry,
        g.entry.items,
        gen_flops,
        logits + weights + layouts * z.kernel(),
    ));
    if d.variants.channel_last() {
        v.push(transpose("corr_x_t", z.x(), z.hw));
        if !d.generator_writes_rows {
            v.push(transpose("corr_kernel_t", z.kernel(), kk));
        }
        v.push(transpose("guide_weight_t", r * i * kk, kk));
    }
    let guide_floats = z.x() + r * i * kk + r + b * r * p + b * p;
    let mut guide = lanes(
        "guide_argmax",
        d.guide.entry,
        d.guide.items,
        2 * b * r * i * kk * p,
        guide_floats,
    );
    if d.guide_split.is_some() {
        (guide.invocations, guide.workgroup_bytes) = (GEMM_INVOCATIONS, GUIDE_WORKGROUP_BYTES);
    }
    v.push(guide);
    let corr = d.corr;
    if d.mode == Mode::Training {
        let floats = z.x() + z.kernel() + b * r * o * p;
        let flops = 2 * r * z.out() * i * kk;
        let out = b * r * o * p;
        v.extend(correlation(d, "corr_all_regions", (flops, floats), out));
        v.push(lanes("gather", "gather", z.out(), 0, b * p + 2 * z.out()));
        return v;
    }
    v.extend(fused_lists(d, z));
    let (flops, floats) = (z.corr_flops(), z.x() + z.kernel() + b * p + z.out());
    match d.per_region_uniform {
        Some(_) => {
            let bound = o.div_ceil(corr.tiling.rows) * p.div_ceil(corr.tiling.pixels);
            let n = b * r;
            for _ in 0..n {
                let mut one = groups("corr_selected", corr.entry, bound, flops / n, floats / n);
                one.indirect = true;
                v.push(one);
            }
        }
        None => {
            let mut sel = correlation(d, "corr_selected", (flops, floats), z.out());
            sel[0].indirect = d.variants.device_grid && d.lists_block.is_none();
            v.extend(sel);
        }
    }
    v
}

/// The fused path's region lists and tiles: the GPU family's one dispatch, else `lists` and
/// `corr_tiles`.
fn fused_lists(d: &Decisions, z: Sizes) -> Vec<Dispatch> {
    let (b, p, r) = (z.b, z.p, z.r);
    let slots = 3 * b * d.corr.slots as u64;
    match d.lists_block {
        // Every workgroup reads its sample's region map; the first writes starts and slots.
        Some(block) => {
            let floats = b * p * p.div_ceil(block) + b * p + b * (r + 1) + slots;
            let mut lists = groups(
                "region_lists",
                "lists_blocks",
                b * p.div_ceil(block),
                0,
                floats,
            );
            (lists.invocations, lists.workgroup_bytes) = (GEMM_INVOCATIONS, 16 * 256);
            vec![lists]
        }
        None => {
            let tile_floats = b * (r + 1) + 1 + slots + 4 * (1 + b * r);
            let mut tiles = groups("corr_tiles", "tiles", 1, 0, tile_floats);
            tiles.workgroup_bytes = 256;
            vec![region_lists(z), tiles]
        }
    }
}

/// The correlation's dispatch of `(flops, floats)` into an output of `out` floats; where it
/// runs in K slices, their partial outputs' extra traffic and the second pass that adds them.
fn correlation(d: &Decisions, label: &'static str, work: (u64, u64), out: u64) -> Vec<Dispatch> {
    let (corr, slices) = (d.corr, d.corr.slices);
    let mut one = groups(label, corr.entry, corr.workgroups, work.0, work.1);
    (one.invocations, one.workgroup_bytes) = match (d.variants.gemm(), d.variants.staged()) {
        (true, _) => (GEMM_INVOCATIONS, GEMM_WORKGROUP_BYTES),
        (false, true) => (WG, CORR_WORKGROUP_BYTES),
        (false, false) => (WG, 0),
    };
    if slices == 1 {
        return vec![one];
    }
    one.bytes += 4 * (slices - 1) * out;
    let sum = lanes(
        "corr_slice_sum",
        "slice_sum",
        out,
        out * (slices - 1),
        (slices + 1) * out,
    );
    vec![one, sum]
}

/// The sigmoid map's gradient (`floats` read and written): one invocation per element, or the
/// GPU family's workgroup per (sample, group, tap, chunk) and the chunks' sum.
fn sigmoid_grad(d: &Decisions, z: Sizes, flops: u64, floats: u64) -> Vec<Dispatch> {
    let sig = z.b * z.r * z.r * z.kk;
    let Some(chunks) = d.sigmoid_chunks else {
        return vec![lanes(
            "kernel_gen_sigmoid_grad",
            "sigmoid_grad",
            sig,
            flops,
            floats,
        )];
    };
    let label = "kernel_gen_sigmoid_grad";
    let workgroups = z.b * z.r * z.kk * chunks;
    let mut split = groups(label, "sigmoid_grad_split", workgroups, flops, floats);
    split.invocations = GEMM_INVOCATIONS;
    split.workgroup_bytes = 16 * 512;
    if chunks == 1 {
        return vec![split];
    }
    split.bytes += 4 * (chunks - 1) * sig;
    let sum_floats = (chunks + 1) * sig;
    let sum = lanes(
        "kernel_gen_sigmoid_sum",
        "sigmoid_grad_sum",
        sig,
        (chunks - 1) * sig,
        sum_floats,
    );
    vec![split, sum]
}

/// The correlation's kernel gradient on the gather family: one invocation per (sample, channel,
/// 4 input channels, tap), or the GPU family's region lists, GEMM over them and slices' sum.
fn kernel_grad(d: &Decisions, z: Sizes) -> Vec<Dispatch> {
    let (b, i, o, r, kk, p) = (z.b, z.i, z.o, z.r, z.kk, z.p);
    let floats = z.x() + z.out() + b * p + z.kernel();
    let Some(slices) = d.kernel_grad_slices else {
        let items = b * o * i.div_ceil(4) * kk;
        return vec![lanes(
            "corr_kernel_grad",
            "kernel_grad",
            items,
            z.corr_flops(),
            floats,
        )];
    };
    let tiles = b * r * o.div_ceil(64) * (i * kk).div_ceil(64);
    let mut gemm = groups(
        "corr_kernel_grad",
        "kernel_grad_gemm",
        tiles * slices,
        z.corr_flops(),
        floats,
    );
    (gemm.invocations, gemm.workgroup_bytes) = (GEMM_INVOCATIONS, KERNEL_GRAD_WORKGROUP_BYTES);
    let mut v = vec![region_lists(z), gemm];
    if slices > 1 {
        v[1].bytes += 4 * (slices - 1) * z.kernel();
        let (n, sum_floats) = (z.kernel(), (slices + 1) * z.kernel());
        v.push(lanes(
            "corr_kernel_grad_sum",
            "slice_sum",
            n,
            (slices - 1) * n,
            sum_floats,
        ));
    }
    v
}

/// The training backward's dispatches, in the order `BackwardPlan::build` records them.
pub fn backward(d: &Decisions, c: &DrConvConfig, s: &ForwardShape) -> Vec<Dispatch> {
    with_reduction_memory(backward_steps(d, c, s))
}

fn backward_steps(d: &Decisions, c: &DrConvConfig, s: &ForwardShape) -> Vec<Dispatch> {
    let z = Sizes::new(c, s);
    let (b, i, o, r, kk) = (z.b, z.i, z.o, z.r, z.kk);
    let chunks = z.chunks(d.guide_chunk);
    let mut v = match d.backward_lists {
        Some(entry) => lists_family(d, z, entry),
        None => gather_family(d, z),
    };
    let gw = r * i * kk + r;
    let sig = b * r * r * kk;
    let gen_flops = 2 * z.kernel() * r;
    let w3 = r * i * o * r;
    v.extend([lanes(
        "guide_weight_reduce",
        "weight_reduce",
        gw,
        chunks * gw,
        (chunks + 1) * gw,
    )]);
    v.extend(sigmoid_grad(d, z, gen_flops, z.kernel() + w3 + sig));
    v.extend([
        lanes(
            "kernel_gen_weight_grad",
            "weight_grad",
            c.kernel_channels() as u64 * (r + 1),
            gen_flops,
            sig + z.kernel() + w3 + r * i * o,
        ),
        lanes("logits_grad", "logits_grad", sig, 0, 3 * sig),
        lanes(
            "pooled_grad",
            "pooled_grad",
            b * i * kk,
            2 * sig * i,
            r * r * i + sig + b * i * kk,
        ),
        match d.logits_weight_lanes {
            Some(l) => groups(
                "kernel_logits_weight_grad",
                "weight_grad_split",
                (r * r * (i + 1) * l).div_ceil(WG as u64),
                2 * sig * i,
                b * i * kk + sig + r * r * (i + 1),
            ),
            None => lanes(
                "kernel_logits_weight_grad",
                "weight_grad",
                r * r * (i + 1),
                2 * sig * i,
                b * i * kk + sig + r * r * (i + 1),
            ),
        },
        lanes(
            "pool_input_grad",
            "main",
            z.x(),
            z.x(),
            b * i * kk + 2 * z.x(),
        ),
    ]);
    v
}

/// The gather family's correlation and guide backward (`Backward::Gather`), with the GPU
/// family's G values once, kernel-gradient GEMM and filling input gradients.
fn gather_family(d: &Decisions, z: Sizes) -> Vec<Dispatch> {
    let (b, i, r, kk, p) = (z.b, z.i, z.r, z.kk, z.p);
    let (guide, chunks, corr_flops) = (z.guide(), z.chunks(d.guide_chunk), z.corr_flops());
    let blocks = i.div_ceil(4);
    let mut v = match d.big_g_lanes {
        // Each G once, then the gradient from the r G values of each pixel.
        Some(lanes_per) => {
            let g_floats = z.out() + r * z.out() + guide;
            let big_g = (guide * lanes_per).div_ceil(WG as u64);
            vec![
                groups("big_g", "big_g_split", big_g, 2 * r * z.out(), g_floats),
                lanes(
                    "guide_grad",
                    "guide_grad_g",
                    guide,
                    2 * r * guide,
                    3 * guide,
                ),
            ]
        }
        None => vec![lanes(
            "guide_grad",
            "guide_grad",
            guide,
            2 * r * z.out(),
            2 * guide + r * z.out() + z.out(),
        )],
    };
    v.extend(kernel_grad(d, z));
    v.extend([
        lanes(
            "corr_input_grad",
            "input_grad",
            b * i.div_ceil(d.input_grad_channels as u64) * z.hw,
            corr_flops,
            z.kernel() + z.out() + b * p + z.x(),
        ),
        lanes(
            "guide_input_grad",
            "input_grad",
            b * i.div_ceil(d.input_grad_channels as u64) * z.hw,
            2 * guide * i * kk,
            r * i * kk + guide + 2 * z.x(),
        ),
        lanes(
            "guide_weight_partial",
            "weight_partial",
            chunks * r * (blocks * kk + 1),
            2 * guide * i * kk,
            z.x() + guide + chunks * (r * i * kk + r),
        ),
    ]);
    v
}

/// The region-list family's correlation and guide backward (`Backward::RegionLists`).
fn lists_family(d: &Decisions, z: Sizes, entry: &'static str) -> Vec<Dispatch> {
    let (b, i, o, r, kk, p) = (z.b, z.i, z.o, z.r, z.kk, z.p);
    let (guide, chunks, corr_flops) = (z.guide(), z.chunks(d.guide_chunk), z.corr_flops());
    // The training forward's channel-last x and guide weights are reused where it made them.
    let shared = d.variants.channel_last();
    let mut v = vec![region_lists(z), transpose("corr_gy_t", z.out(), p)];
    if !shared {
        v.push(transpose("corr_x_t", z.x(), z.hw));
    }
    let ob = if entry == "kernel_grad_lists8" { 8 } else { 4 };
    v.push(lanes(
        "corr_kernel_grad",
        entry,
        b * o.div_ceil(ob) * (i / 4) * kk,
        corr_flops,
        z.x() + z.out() + 2 * b * p + z.kernel(),
    ));
    v.push(match kk == 9 {
        true => lanes(
            "corr_kernel_t",
            "kernel_t3",
            z.kernel() / (4 * kk),
            0,
            2 * z.kernel(),
        ),
        false => transpose("corr_kernel_t", z.kernel(), kk),
    });
    v.push(lanes(
        "corr_input_grad",
        "input_grad_t",
        b * i.div_ceil(8) * z.hw,
        corr_flops,
        b * p + z.x() + z.kernel() + z.out(),
    ));
    v.push(lanes(
        "big_g",
        "big_g_t",
        guide,
        2 * r * z.out(),
        r * z.out() + z.out() + guide,
    ));
    v.push(lanes("guide_grad", "guide_grad_g", guide, 0, 3 * guide));
    if !shared {
        v.push(transpose("guide_weight_t", r * i * kk, kk));
    }
    v.push(lanes(
        "guide_input_grad",
        "input_grad_t",
        b * (i / 4) * z.hw,
        2 * guide * i * kk,
        r * i * kk + guide + 2 * z.x(),
    ));
    v.push(lanes(
        "guide_weight_partial",
        "weight_partial_t",
        chunks * r * ((i / 4) * kk + 1),
        2 * guide * i * kk,
        z.x() + guide + chunks * (r * i * kk + r),
    ));
    v
}
