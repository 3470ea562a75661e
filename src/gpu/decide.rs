//! Every per-shape decision of a plan in one pure function: which variants a layer runs, the
//! entries, the layouts, the uniform bindings and the correlation's tiling at one input shape
//! and mode. [`decide`] reads only a [`Target`] (what the adapter is, its limits, the forced
//! variants) and the layer's shape, so the same choices can be printed (`drconv info`) and
//! tested without a device; the plan builders allocate from [`Decisions`] and the stages only
//! read it. The one choice no property decides, the per-region uniform bindings, is measured
//! by `crate::gpu::autotune` and comes in as `per_region_allowed`.

use std::fmt;

use crate::config::{DrConvConfig, ForwardShape, Mode};
use crate::gpu::context::GpuContext;
use crate::gpu::correlation::CorrTiling;
use crate::gpu::correlation::{corr_entries, fits_per_region_uniform, fits_uniform_binding};
use crate::gpu::limits::LOGITS_GEN_LISTS_STORAGE_BINDINGS;
use crate::gpu::limits::{GEN_LISTS_STORAGE_BINDINGS, GUIDE_CHUNK};
use crate::gpu::shaders::{self, Shader, WG};
use crate::gpu::shaders::{GEMM_INVOCATIONS, GEMM_WORKGROUP_BYTES, GEN_SIGMOID_MOST};
use crate::gpu::variants::Variants;
use crate::gpu::variants::{AdapterTraits, Backward, Correlation, KernelGen, VariantOverrides};
use crate::tensor::numel;

/// What the decisions read of a device.
#[derive(Debug, Clone)]
pub struct Target {
    /// The adapter's kind and indirect dispatch.
    pub traits: AdapterTraits,
    /// The device's limits.
    pub limits: wgpu::Limits,
    /// Variants forced by the application (`ContextOptions::variants`).
    pub forced: VariantOverrides,
    /// Whether stages that do not read each other's output may share a dispatch (off for a
    /// split plan's parts: a band's part runs without its pool).
    pub merge_stages: bool,
    /// Compute units the GPU family's correlation tries to fill (a named GPU's, or
    /// [`ASSUMED_COMPUTE_UNITS`]: no API reports them).
    pub compute_units: u64,
}

/// The compute units a device is assumed to have where nothing says: a large discrete GPU's
/// (an H100 has 132 SMs, an RTX 4090 128, an RX 7900 XTX 96 CUs). On a smaller GPU the K slices
/// this leads to cost only their second pass, a few percent of a small layer's bytes.
pub const ASSUMED_COMPUTE_UNITS: u64 = 128;

/// Workgroups per compute unit the GEMM correlation aims for: two, so that one waits on memory
/// while the other computes.
pub const FILL_PER_UNIT: u64 = 2;

/// Chunks of 16 inner indices a K slice keeps at least: its partial outputs then cost at most a
/// sixteenth of its loads.
pub const MIN_SLICE_CHUNKS: u64 = 4;

/// Most K slices (the count's 8 bits in `Dims::corr_tile`).
pub const MAX_SLICES: u64 = 32;

impl Target {
    /// What `ctx`'s adapter, limits and forced variants say.
    pub fn of(ctx: &GpuContext) -> Self {
        Target {
            traits: ctx.traits(),
            limits: ctx.limits.clone(),
            forced: *ctx.overrides(),
            merge_stages: true,
            compute_units: (ctx.overrides().compute_units).map_or(ASSUMED_COMPUTE_UNITS, u64::from),
        }
    }
}

/// A stage's shader, entry point and invocation count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub shader: &'static Shader,
    pub entry: &'static str,
    /// Invocations, in workgroups of `WG`.
    pub items: u64,
}

/// The kernel generator's entry and, for the unrolled k = 3 code, the blocks of 4 channels per
/// invocation (0 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelGenEntry {
    pub entry: Entry,
    pub blocks: u32,
}

/// How the correlation runs: all regions (training) or each pixel's own region (inference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrPlan {
    pub shader: &'static Shader,
    pub entry: &'static str,
    /// Workgroups, one per output tile (the most the regions could need in inference).
    pub workgroups: u64,
    pub tiling: CorrTiling,
    /// K slices of the GEMM correlation (1: none): the inner dimension cut so that the
    /// workgroups fill the compute units, summed by `slice_sum` (`correlation_gemm.wgsl`).
    pub slices: u64,
    /// Inference: the most pixel tiles the regions of one sample can need (region g needs
    /// ceil(n_g / tile), over all regions at most ceil(H'W' / tile) + r - 1); 0 in training.
    pub slots: usize,
}

/// Every per-shape decision of one plan (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decisions {
    pub mode: Mode,
    pub variants: Variants,
    /// The whole generated kernel goes to the correlation as a uniform kernel.
    pub uniform_kernel: bool,
    /// Inference: each (sample, region)'s kernel rows, this many bytes, bound as a uniform of
    /// their own (`selected_channel_last_per_region`, one indirect dispatch each).
    pub per_region_uniform: Option<u64>,
    /// The unrolled k = 3 generator writes the correlation's channel-last kernel rows itself.
    pub generator_writes_rows: bool,
    /// Inference on the channel-last path: the kernel buffer holds only those rows.
    pub kernel_channel_last: bool,
    /// The guide's channel-last weights are read as a uniform binding.
    pub guide_uniform: bool,
    pub kernel_gen: KernelGenEntry,
    /// The guide conv and its argmax over regions.
    pub guide: Entry,
    /// The GPU family's guide (`guide_argmax_split_k`): pixels per workgroup of 256, the rest
    /// of the invocations cutting the inner dimension into K groups.
    pub guide_split: Option<u64>,
    pub corr: CorrPlan,
    /// Training on the region-list backward: its kernel-gradient entry.
    pub backward_lists: Option<&'static str>,
    /// The GPU family's fused path: the region lists and tile slots in one dispatch
    /// (`lists_blocks`), this many pixels per workgroup (at most 32 workgroups a sample).
    pub lists_block: Option<u64>,
    /// The GPU family: the pool and the guide in one dispatch (`shaders/pool_guide.wgsl`).
    pub pool_with_guide: bool,
    /// The GPU family's fused path: the kernel generator and the lists in one dispatch
    /// (`shaders/gen_lists.wgsl`).
    pub gen_with_lists: bool,
    /// Inference on the GPU family: the generator's workgroups also compute the logits they
    /// need, so the logits take no dispatch of their own (`logits_gen_lists`), each invocation
    /// generating this many kernel elements (enough to outweigh the logits it recomputes).
    pub gen_with_logits: Option<u64>,
    /// The pool as one workgroup per pooled value (`pool_split`): the GPU family where one
    /// invocation per value would not fill the compute units.
    pub pool_split: bool,
    /// The kernel logits as 8 invocations per logit (`kernel_logits.wgsl` `split`): the GPU
    /// family where one per logit would not fill the compute units.
    pub logits_split: bool,
    /// The GPU family's sigmoid gradient (`sigmoid_grad_split`): the I*O channels of each
    /// (sample, group, tap) cut into this many chunks, summed by `sigmoid_grad_sum` when > 1.
    pub sigmoid_chunks: Option<u64>,
    /// The GPU family's kernel gradient (`kernel_grad_gemm`): per (sample, region) a GEMM over
    /// its pixel list, each list cut into this many K slices (summed by `slice_sum` when > 1).
    pub kernel_grad_slices: Option<u64>,
    /// Output positions per partial sum of the guide weight's gradient (`GUIDE_CHUNK`, or on
    /// the GPU family down to an eighth of it where that many chunks fill the compute units).
    pub guide_chunk: usize,
    /// Input channels per invocation of the gather input gradients (correlation and guide):
    /// 4, or on the GPU family 2 or 1 where 4 would not fill the compute units.
    pub input_grad_channels: usize,
    /// The GPU family's guide gradient: each G value once (`big_g_split`, this many
    /// invocations per value, 1 to 8 by fill), then `guide_grad_g`.
    pub big_g_lanes: Option<u64>,
    /// The GPU family's conv_kernel.1 weight gradient where one invocation per weight would
    /// not fill the compute units: this many per weight (`weight_grad_split`), 2 to 8, at most
    /// one per sample.
    pub logits_weight_lanes: Option<u64>,
}

/// The decisions for a layer of `config` at `shape` in `mode` on `target`;
/// `per_region_allowed` is the measured (or forced) per-region uniform choice.
pub fn decide(
    target: &Target,
    config: &DrConvConfig,
    shape: &ForwardShape,
    mode: Mode,
    per_region_allowed: bool,
) -> Decisions {
    let (c, s, limits) = (config, shape, &target.limits);
    let v = variants(target, c, s, mode);
    let kernel_bytes = 4 * numel(&s.kernel(c)) as u64;
    let uniform_kernel = fits_uniform_binding(&v, limits, kernel_bytes);
    let regions = (s.batch * c.region_num) as u64;
    let block = kernel_bytes / regions.max(1);
    let per_region_uniform = (mode == Mode::Inference
        && per_region_allowed
        && !uniform_kernel
        && fits_per_region_uniform(&v, limits, block, regions))
    .then_some(block);
    let generator_writes_rows = v.kernel_gen == KernelGen::UnrolledK3 && v.channel_last();
    let guide_w = [c.kernel_size * c.kernel_size, c.region_num, c.in_channels];
    let guide_uniform = fits_uniform_binding(&v, limits, 4 * numel(&guide_w) as u64);
    let uniform_corr = uniform_kernel || per_region_uniform.is_some();
    let guide_split = v.gemm().then(|| guide_split_px(target, s));
    let mut guide = guide_entry(&v, c, s, guide_uniform);
    if let Some(px) = guide_split {
        let pixels = (s.batch * s.out_height * s.out_width) as u64;
        guide.entry = "guide_argmax_split_k";
        guide.items = pixels.div_ceil(px) * WG as u64;
    }
    Decisions {
        mode,
        variants: v,
        uniform_kernel,
        per_region_uniform,
        generator_writes_rows,
        kernel_channel_last: generator_writes_rows && mode == Mode::Inference,
        guide_uniform,
        kernel_gen: kernel_gen_entry(&v, c, s.batch as u64),
        guide,
        guide_split,
        corr: corr_plan(
            target,
            &v,
            c,
            s,
            mode,
            (uniform_corr, per_region_uniform.is_some()),
        ),
        backward_lists: (mode == Mode::Training)
            .then(|| list_entry(&v, c, s))
            .flatten(),
        pool_with_guide: v.gemm() && target.merge_stages,
        gen_with_lists: v.gemm() && gen_with_lists(target, &v, mode),
        gen_with_logits: (v.gemm() && v.kernel_gen == KernelGen::Elements)
            .then(|| gen_logits_lanes(target, c, s, mode))
            .flatten(),
        lists_block: (v.gemm() && mode == Mode::Inference).then(|| {
            let hw = (s.out_height * s.out_width) as u64;
            hw.div_ceil(32).div_ceil(256).max(1) * 256
        }),
        pool_split: v.gemm()
            && ((s.batch * c.in_channels * c.kernel_size * c.kernel_size) as u64)
                < fill_items(target),
        logits_split: v.gemm() && logits_items(c, s) < fill_items(target),
        sigmoid_chunks: v.gemm().then(|| sigmoid_chunks(target, c, s)),
        kernel_grad_slices: (v.gemm() && v.backward == Backward::Gather && mode == Mode::Training)
            .then(|| kernel_grad_slices(target, c, s)),
        big_g_lanes: v.gemm().then(|| {
            let g = (s.batch * c.region_num * s.out_height * s.out_width) as u64;
            [1, 2, 4]
                .into_iter()
                .find(|&l| g * l >= fill_items(target))
                .unwrap_or(8)
        }),
        logits_weight_lanes: {
            let n = (c.region_num * c.region_num * (c.in_channels + 1)) as u64;
            // Lanes split the samples (no more lanes than samples) and divide a workgroup.
            let lanes = [1, 2, 4].into_iter().find(|&l| n * l >= fill_items(target));
            let most = 1 << (s.batch as u64).ilog2();
            let lanes = lanes.unwrap_or(8).min(most);
            (v.gemm() && lanes > 1).then_some(lanes)
        },
        input_grad_channels: match v.gemm() {
            true => [4, 2]
                .into_iter()
                .find(|&ch| {
                    (s.batch * c.in_channels.div_ceil(ch) * s.height * s.width) as u64
                        >= fill_items(target)
                })
                .unwrap_or(1),
            false => 4,
        },
        guide_chunk: match v.gemm() {
            true => guide_chunk(target, c, s),
            false => GUIDE_CHUNK,
        },
    }
}

/// Invocations that fill [`FILL_PER_UNIT`] workgroups of `WG` per compute unit.
fn fill_items(target: &Target) -> u64 {
    FILL_PER_UNIT * target.compute_units * WG as u64
}

/// The kernel logits, B x r*r x k*k: one invocation each in `kernel_logits.wgsl` `main`.
fn logits_items(c: &DrConvConfig, s: &ForwardShape) -> u64 {
    (s.batch * c.region_num * c.region_num * c.kernel_size * c.kernel_size) as u64
}

/// Chunks of the I*O channels per (sample, group, tap) workgroup of the GPU family's sigmoid
/// gradient: enough for [`FILL_PER_UNIT`] workgroups per compute unit, each chunk at least
/// 1024 channels (4 per invocation), at most 64.
fn sigmoid_chunks(target: &Target, c: &DrConvConfig, s: &ForwardShape) -> u64 {
    let groups = (s.batch * c.region_num * c.kernel_size * c.kernel_size) as u64;
    let want = (FILL_PER_UNIT * target.compute_units).div_ceil(groups);
    let most = ((c.in_channels * c.out_channels) as u64 / 1024).clamp(1, 64);
    want.clamp(1, most)
}

/// Output positions per partial sum of the GPU family's guide weight gradient: the largest of
/// `GUIDE_CHUNK`, its half, quarter and eighth whose invocations (one per chunk, region, 4
/// channels and tap) fill [`FILL_PER_UNIT`] workgroups per compute unit, with the partial sums
/// within one storage binding (else the smallest within it).
fn guide_chunk(target: &Target, c: &DrConvConfig, s: &ForwardShape) -> usize {
    let positions = (s.batch * s.out_height * s.out_width) as u64;
    let kk = (c.kernel_size * c.kernel_size) as u64;
    let (r, i) = (c.region_num as u64, c.in_channels as u64);
    let binding = target.limits.max_storage_buffer_binding_size;
    let fitting: Vec<usize> = [1, 2, 4, 8]
        .into_iter()
        .map(|part| GUIDE_CHUNK / part)
        .take_while(|&n| positions.div_ceil(n as u64) * 4 * (r * i * kk + r) <= binding)
        .collect();
    let fills = |n: &&usize| {
        positions.div_ceil(**n as u64) * r * (i.div_ceil(4) * kk + 1) >= fill_items(target)
    };
    // The largest that fills, else the smallest whose partial sums fit a binding.
    (fitting.iter().find(fills).or(fitting.last()))
        .copied()
        .unwrap_or(GUIDE_CHUNK)
}

/// K slices of each (sample, region)'s pixel list in the GPU family's kernel gradient: enough
/// for [`FILL_PER_UNIT`] workgroups per compute unit over its 64 x 64 tiles, each slice at least
/// [`MIN_SLICE_CHUNKS`] chunks of 16 pixels of an average region, at most [`MAX_SLICES`], the
/// partial gradients within one storage binding; `forced.k_slices` within the last two bounds.
fn kernel_grad_slices(target: &Target, c: &DrConvConfig, s: &ForwardShape) -> u64 {
    let (b, r, o) = (s.batch as u64, c.region_num as u64, c.out_channels as u64);
    let kd = (c.in_channels * c.kernel_size * c.kernel_size) as u64;
    let tiles = b * r * o.div_ceil(64) * kd.div_ceil(64);
    let want = (FILL_PER_UNIT * target.compute_units).div_ceil(tiles);
    let chunks = ((s.out_height * s.out_width) as u64).div_ceil(r * 16);
    let elements = b * r * o * kd;
    let binding = target.limits.max_storage_buffer_binding_size;
    let fits = (binding / (4 * elements)).min(u32::MAX as u64 / elements);
    let want = match target.forced.k_slices {
        Some(n) => n as u64,
        None => want.min(chunks / MIN_SLICE_CHUNKS),
    };
    want.min(fits).clamp(1, MAX_SLICES)
}

/// The GPU family's kernel generator: the first of `v.kernel_gen` (registers where r <= 8),
/// `Blocked` and `Elements` whose invocations fill [`FILL_PER_UNIT`] workgroups of `per_group`
/// per compute unit (the more invocations, the less each reuses its weights), else `Elements`.
fn filling_generator(
    target: &Target,
    v: &Variants,
    c: &DrConvConfig,
    (batch, per_group): (u64, u64),
) -> KernelGen {
    let want = FILL_PER_UNIT * target.compute_units * per_group;
    [v.kernel_gen, KernelGen::Blocked]
        .into_iter()
        .find(|&g| {
            let e = Variants {
                kernel_gen: g,
                ..*v
            };
            kernel_gen_entry(&e, c, batch).entry.items >= want
        })
        .unwrap_or(KernelGen::Elements)
}

/// The kernel generator's entry for `v.kernel_gen`, and for the k = 3 kernels the blocks of 4
/// channels per invocation (8, 4 or 2 where they divide I*O / 4 and leave 256 invocations or
/// more: the sigmoid map is then read once for them all).
fn kernel_gen_entry(v: &Variants, c: &DrConvConfig, batch: u64) -> KernelGenEntry {
    let (r, io) = (c.region_num as u64, (c.in_channels * c.out_channels) as u64);
    let kk = (c.kernel_size * c.kernel_size) as u64;
    let plain = |entry, items| KernelGenEntry {
        entry: Entry {
            shader: &shaders::KERNEL_GEN,
            entry,
            items,
        },
        blocks: 0,
    };
    match v.kernel_gen {
        KernelGen::UnrolledK3 => {
            let blocks = batch * r * io / 4;
            let nb = [8, 4, 2]
                .into_iter()
                .find(|&nb| (io / 4).is_multiple_of(nb) && blocks / nb >= 256)
                .unwrap_or(1);
            KernelGenEntry {
                entry: Entry {
                    shader: &shaders::KERNEL_GEN_K3,
                    entry: if r == 8 { "unrolled_r8" } else { "unrolled_r4" },
                    items: blocks / nb,
                },
                blocks: nb as u32,
            }
        }
        KernelGen::Registers => plain("registers", batch * r * io.div_ceil(8)),
        KernelGen::Blocked => plain("blocked", batch * r * io.div_ceil(8) * kk.div_ceil(4)),
        KernelGen::Elements => plain("elements", batch * r * io * kk),
    }
}

/// The guide conv + argmax entry: 8 pixels x 4 regions per invocation up to r = 4, else 4 pixels
/// x 8 regions; on the channel-last path at k = 3, stride 1, dilation 1 and r <= 4, runs of 8
/// pixels along a row that share their x loads.
fn guide_entry(v: &Variants, c: &DrConvConfig, s: &ForwardShape, uniform: bool) -> Entry {
    let pixels = (s.batch * s.out_height * s.out_width) as u64;
    // Invocations for `px` pixels each, 64 apart: whole workgroups.
    let strided = |px: u64| pixels.div_ceil(WG as u64 * px) * WG as u64;
    let runs = c.kernel_size == 3 && c.stride == 1 && c.dilation == 1;
    let (entry, items) = match (c.region_num <= 4, v.channel_last()) {
        (true, false) => ("guide_argmax4", strided(8)),
        (false, false) => ("guide_argmax8", strided(4)),
        (true, true) if runs => (
            "guide_argmax4_channel_last_k3",
            (s.batch * s.out_height * s.out_width.div_ceil(8)) as u64,
        ),
        (true, true) => ("guide_argmax4_channel_last", strided(8)),
        (false, true) => ("guide_argmax8_channel_last", strided(4)),
    };
    let shader = match v.channel_last() && uniform {
        true => &shaders::GUIDE_CONV_UBO,
        false => &shaders::GUIDE_CONV,
    };
    Entry {
        shader,
        entry,
        items,
    }
}

/// The layer's variants ([`Variants::choose`]) refined for the shape: the staged correlation
/// where a device cannot run the GEMM's workgroups; the GPU family's generator by fill.
fn variants(target: &Target, c: &DrConvConfig, s: &ForwardShape, mode: Mode) -> Variants {
    let mut v = Variants::choose(target.traits, c, &target.forced);
    if v.gemm() && !gemm_fits(&target.limits) {
        v.correlation = Correlation::Staged;
    }
    if v.gemm() && target.forced.kernel_gen.is_none() {
        // Beside the lists, 256 items per workgroup; else 64. With the logits, elements.
        let per_group = match gen_with_lists(target, &v, mode) {
            true => GEMM_INVOCATIONS as u64,
            false => WG as u64,
        };
        v.kernel_gen = match gen_logits_lanes(target, c, s, mode) {
            Some(_) => KernelGen::Elements,
            None => filling_generator(target, &v, c, (s.batch as u64, per_group)),
        };
    }
    v
}

/// Kernel elements per invocation of `logits_gen_lists`, where the generator (of `elements`'
/// order) takes the logits: beside the lists (inference, a whole plan), the group's r * k*k
/// sigmoid values within [`GEN_SIGMOID_MOST`], a device binding its 12 storage buffers.
/// Each workgroup recomputes r * k*k * I multiply-adds of logits; 256 x (k*k * I / 64)
/// elements (r multiply-adds each) make that a quarter of its generation, halved (down to 1)
/// while the workgroups would not fill [`FILL_PER_UNIT`] per compute unit, at most 64 (the 7
/// bits of `Dims::logits_gen_lists`).
fn gen_logits_lanes(
    target: &Target,
    c: &DrConvConfig,
    s: &ForwardShape,
    mode: Mode,
) -> Option<u64> {
    let (i, r) = (c.in_channels as u64, c.region_num as u64);
    let kk = (c.kernel_size * c.kernel_size) as u64;
    let n = i * c.out_channels as u64 * kk;
    let fits = r * kk <= GEN_SIGMOID_MOST as u64
        && target.limits.max_storage_buffers_per_shader_stage >= LOGITS_GEN_LISTS_STORAGE_BINDINGS;
    let takes = gen_with_lists_on(target, mode) && fits;
    let mut lanes = (kk * i).div_ceil(64).clamp(1, 64).min(n.div_ceil(256));
    let groups = |lanes: u64| logits_gen_groups(s.batch as u64 * r, n, lanes);
    while lanes > 1 && groups(lanes) < FILL_PER_UNIT * target.compute_units {
        lanes /= 2;
    }
    takes.then_some(lanes)
}

/// Generator workgroups of `logits_gen_lists`: each of `groups` (sample, group) pairs' `elements`
/// kernel elements, 256 x `lanes` per workgroup.
pub fn logits_gen_groups(groups: u64, elements: u64, lanes: u64) -> u64 {
    groups * elements.div_ceil(256 * lanes)
}

/// Whether the GPU family's generator and fused-path lists share a dispatch: inference on a
/// whole plan (not a split's part), a generator of `kernel_gen.wgsl`, and a device that binds
/// that dispatch's 8 storage buffers.
fn gen_with_lists(target: &Target, v: &Variants, mode: Mode) -> bool {
    gen_with_lists_on(target, mode) && v.kernel_gen != KernelGen::UnrolledK3
}

/// [`gen_with_lists`] but for the generator's entry.
fn gen_with_lists_on(target: &Target, mode: Mode) -> bool {
    target.merge_stages
        && mode == Mode::Inference
        && target.limits.max_storage_buffers_per_shader_stage >= GEN_LISTS_STORAGE_BINDINGS
}

/// Whether the device runs the GEMM correlation's workgroups: 256 invocations and its
/// workgroup memory (WebGPU's defaults allow both; some downlevel devices do not).
fn gemm_fits(limits: &wgpu::Limits) -> bool {
    limits.max_compute_invocations_per_workgroup >= GEMM_INVOCATIONS
        && limits.max_compute_workgroup_size_x >= GEMM_INVOCATIONS
        && limits.max_compute_workgroup_storage_size >= GEMM_WORKGROUP_BYTES
}

/// Pixels per workgroup of the GPU family's guide: the most of 64, 32, ..., 2 that still gives
/// [`FILL_PER_UNIT`] workgroups per compute unit (1 where none does); the other
/// 256 / pixels invocations of a pixel's column each take one K group.
fn guide_split_px(target: &Target, s: &ForwardShape) -> u64 {
    let pixels = (s.batch * s.out_height * s.out_width) as u64;
    let want = FILL_PER_UNIT * target.compute_units;
    [64, 32, 16, 8, 4, 2]
        .into_iter()
        .find(|&px| pixels.div_ceil(px) >= want)
        .unwrap_or(1)
}

/// The correlation's entry, tiling and workgroups: in training one GEMM of r*O kernel rows by
/// H'W' pixels per sample, tiled with the least padded work; in inference the per-region GEMMs
/// over the largest grid the regions could need (the device may size it smaller). The GEMM
/// correlation's tiles are cut into K slices where they would leave compute units idle.
fn corr_plan(
    target: &Target,
    v: &Variants,
    c: &DrConvConfig,
    s: &ForwardShape,
    mode: Mode,
    (uniform, per_region): (bool, bool),
) -> CorrPlan {
    let (batch, hw) = (s.batch as u64, (s.out_height * s.out_width) as u64);
    let (o, r) = (c.out_channels as u64, c.region_num as u64);
    let shader = match (uniform, v.gemm()) {
        (_, true) => &shaders::CORRELATION_GEMM,
        (true, false) => &shaders::CORRELATION_UBO,
        (false, false) => &shaders::CORRELATION,
    };
    let (all, selected) = corr_entries(v);
    let kd = (c.in_channels * c.kernel_size * c.kernel_size) as u64;
    if mode == Mode::Training {
        let t = CorrTiling::dense(r * o, hw, v.correlation);
        let tiles = batch * (r * o).div_ceil(t.rows) * hw.div_ceil(t.pixels);
        let slices = k_slices(target, v, tiles, kd, batch * r * o * hw);
        return CorrPlan {
            shader,
            entry: all,
            workgroups: tiles * slices,
            tiling: t,
            slices,
            slots: 0,
        };
    }
    let t = CorrTiling::per_region(o, hw, r, v.correlation);
    let slots = hw.div_ceil(t.pixels) as usize + c.region_num - 1;
    let tiles = batch * o.div_ceil(t.rows) * slots as u64;
    // The tiles a sample's regions typically need: its pixels' tiles and half a tile per region.
    let typical = batch * o.div_ceil(t.rows) * (hw.div_ceil(t.pixels) + r / 2);
    let slices = k_slices(target, v, typical, kd, batch * o * hw);
    CorrPlan {
        shader,
        entry: match per_region {
            true => "selected_channel_last_per_region",
            false => selected,
        },
        workgroups: tiles * slices,
        tiling: t,
        slices,
        slots,
    }
}

/// The K slices of the GEMM correlation over `tiles` output tiles, an inner dimension of `kd`
/// and an output of `elements` floats: enough for [`FILL_PER_UNIT`] workgroups per compute
/// unit, each slice at least [`MIN_SLICE_CHUNKS`] chunks of 16, none empty, and the slices'
/// partial outputs within one storage binding; `forced.k_slices` within the same bounds.
fn k_slices(target: &Target, v: &Variants, tiles: u64, kd: u64, elements: u64) -> u64 {
    if !v.gemm() {
        return 1;
    }
    let chunks = kd.div_ceil(16);
    let fill = (FILL_PER_UNIT * target.compute_units).div_ceil(tiles.max(1));
    let want = match target.forced.k_slices {
        Some(n) => (n as u64).min(chunks),
        None => fill.min(chunks / MIN_SLICE_CHUNKS),
    };
    let binding = target.limits.max_storage_buffer_binding_size;
    let fits = (binding / (4 * elements).max(1)).min(u32::MAX as u64 / elements.max(1));
    let n = want.min(fits).clamp(1, MAX_SLICES);
    // No empty slice: as many as the per-slice chunk count needs.
    chunks.div_ceil(chunks.div_ceil(n)).max(1)
}

/// The kernel gradient's entry of the region-list backward (`Backward::RegionLists`, CPU
/// adapters), or `None` for the gather entries: 8 output channels per invocation unless that
/// leaves fewer than 8 workgroups.
fn list_entry(v: &Variants, c: &DrConvConfig, s: &ForwardShape) -> Option<&'static str> {
    if v.backward != Backward::RegionLists {
        return None;
    }
    let kk = c.kernel_size * c.kernel_size;
    let items8 = s.batch * c.out_channels.div_ceil(8) * (c.in_channels / 4) * kk;
    Some(match items8 >= 8 * WG as usize {
        true => "kernel_grad_lists8",
        false => "kernel_grad_lists4",
    })
}

impl Decisions {
    /// The entries that run in more than one K slice: split as far as their inner dimension
    /// allows, whatever their workgroup count.
    pub fn sliced_entries(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.corr.slices > 1 {
            v.push(self.corr.entry);
        }
        if self.kernel_grad_slices > Some(1) {
            v.push("kernel_grad_gemm");
        }
        v
    }
}

impl fmt::Display for Decisions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        let mode = match self.mode {
            Mode::Inference => "inference",
            Mode::Training => "training",
        };
        write!(
            f,
            "{mode}: {} | entries: kernel_gen={} guide={} correlation={} ({} x {} tiles, {} \
             workgroups)",
            self.variants,
            self.kernel_gen.entry.entry,
            self.guide.entry,
            self.corr.entry,
            self.corr.tiling.rows,
            self.corr.tiling.pixels,
            self.corr.workgroups,
        )?;
        if self.corr.slices > 1 {
            write!(f, " in {} K slices", self.corr.slices)?;
        }
        if let Some(entry) = self.backward_lists {
            write!(f, " kernel_grad={entry}")?;
        }
        let shared = [
            (self.pool_with_guide, "pool+guide"),
            (
                self.gen_with_lists && self.gen_with_logits.is_none(),
                "kernel_gen+lists",
            ),
            (
                self.gen_with_logits.is_some(),
                "kernel_logits+kernel_gen+lists",
            ),
        ];
        let shared: Vec<_> = shared.iter().filter(|s| s.0).map(|s| s.1).collect();
        if !shared.is_empty() {
            write!(f, " | shared dispatches: {}", shared.join(", "))?;
        }
        write!(
            f,
            " | uniform bindings: kernel={} per_region={} guide={}",
            on(self.uniform_kernel),
            self.per_region_uniform
                .map_or("off".into(), |bytes| format!("{bytes} B")),
            on(self.guide_uniform),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WebGPU's default limits: what every adapter offers at least.
    fn target(cpu: bool) -> Target {
        Target {
            traits: AdapterTraits {
                cpu,
                indirect: true,
            },
            limits: wgpu::Limits::default(),
            forced: VariantOverrides::default(),
            merge_stages: true,
            compute_units: ASSUMED_COMPUTE_UNITS,
        }
    }

    /// `B x I x hw x hw` into `DRConv2d(I, O, k, r, padding = k / 2)`.
    fn layer(
        b: usize,
        i: usize,
        o: usize,
        k: usize,
        r: usize,
        hw: usize,
    ) -> (DrConvConfig, ForwardShape) {
        let c = DrConvConfig::new(i, o, k, r)
            .unwrap()
            .with_padding(k / 2)
            .unwrap();
        let s = c.forward_shape(&[b, i, hw, hw]).unwrap();
        (c, s)
    }

    /// The benchmark's S1-S4.
    fn bench_shapes() -> [(DrConvConfig, ForwardShape); 4] {
        [
            layer(1, 64, 64, 3, 8, 40),
            layer(1, 128, 128, 3, 8, 20),
            layer(8, 32, 32, 3, 4, 32),
            layer(1, 16, 16, 3, 4, 128),
        ]
    }

    #[test]
    fn the_gpu_family_runs_the_gemm_and_takes_no_uniform_bindings() {
        for (c, s) in bench_shapes() {
            for mode in [Mode::Inference, Mode::Training] {
                let d = decide(&target(false), &c, &s, mode, true);
                assert!(d.variants.gemm(), "{d}");
                assert!(!d.uniform_kernel && d.per_region_uniform.is_none() && !d.guide_uniform);
                assert!(!d.generator_writes_rows && !d.kernel_channel_last);
                assert_eq!(d.corr.shader, &shaders::CORRELATION_GEMM);
                assert_eq!(d.guide.shader, &shaders::GUIDE_CONV);
                assert!(!d.guide.entry.contains("channel_last"), "{d}");
                assert_eq!(d.backward_lists, None);
                let want = match mode {
                    Mode::Inference => "gemm_selected",
                    Mode::Training => "gemm_all_regions",
                };
                assert_eq!(d.corr.entry, want);
            }
        }
    }

    #[test]
    fn the_cpu_family_reads_channel_last_copies_and_small_kernels_as_uniforms() {
        // S3: 8 x 4 x 32 x 32 x 9 floats = 1.1 MiB of kernel, one (sample, region)'s 36 KiB.
        let [_, _, (c, s), _] = bench_shapes();
        let d = decide(&target(true), &c, &s, Mode::Inference, true);
        assert!(d.variants.channel_last() && d.generator_writes_rows && d.kernel_channel_last);
        assert!(!d.uniform_kernel, "{d}");
        assert_eq!(d.per_region_uniform, Some(4 * 32 * 32 * 9));
        assert_eq!(d.corr.entry, "selected_channel_last_per_region");
        assert_eq!(d.corr.shader, &shaders::CORRELATION_UBO);
        // The autotune's "no" and training both take storage reads.
        let no = decide(&target(true), &c, &s, Mode::Inference, false);
        assert_eq!(
            (no.per_region_uniform, no.corr.entry),
            (None, "selected_channel_last")
        );
        assert_eq!(no.corr.shader, &shaders::CORRELATION);
        let t = decide(&target(true), &c, &s, Mode::Training, true);
        assert_eq!((t.per_region_uniform, t.kernel_channel_last), (None, false));
        assert_eq!(t.backward_lists, Some("kernel_grad_lists8"));
        // A small layer's whole kernel (2 x 4 x 8 x 8 x 9 floats) is one uniform kernel.
        let (c, s) = layer(2, 8, 8, 3, 4, 12);
        let d = decide(&target(true), &c, &s, Mode::Inference, true);
        assert!(d.uniform_kernel && d.per_region_uniform.is_none() && d.guide_uniform);
        assert_eq!(d.corr.shader, &shaders::CORRELATION_UBO);
        assert_eq!(d.guide.shader, &shaders::GUIDE_CONV_UBO);
    }

    #[test]
    fn forced_storage_reads_turn_every_uniform_binding_off() {
        let mut t = target(true);
        t.forced.uniform_kernel = Some(false);
        for (c, s) in bench_shapes() {
            let d = decide(&t, &c, &s, Mode::Inference, true);
            assert!(!d.uniform_kernel && d.per_region_uniform.is_none() && !d.guide_uniform);
        }
        // Without indirect dispatch the per-region grids cannot come from the device.
        let mut t = target(true);
        t.traits.indirect = false;
        let [_, _, (c, s), _] = bench_shapes();
        assert_eq!(
            decide(&t, &c, &s, Mode::Inference, true).per_region_uniform,
            None
        );
    }

    #[test]
    fn the_guide_reads_runs_of_a_row_only_at_k3_stride1_dilation1_and_r4() {
        let (c, s) = layer(1, 8, 8, 3, 4, 20);
        let d = decide(&target(true), &c, &s, Mode::Inference, true);
        assert_eq!(d.guide.entry, "guide_argmax4_channel_last_k3");
        // One invocation per run of 8 pixels of a row: 20 rows x 3 runs.
        assert_eq!(d.guide.items, 60);
        let dilated = c.with_dilation(2).unwrap();
        let s2 = dilated.forward_shape(&[1, 8, 20, 20]).unwrap();
        let d = decide(&target(true), &dilated, &s2, Mode::Inference, true);
        assert_eq!(d.guide.entry, "guide_argmax4_channel_last");
        // 8 pixels per invocation in whole workgroups: 18 x 18 pixels -> 41 -> 64.
        assert_eq!(d.guide.items, 64);
        let (c, s) = layer(1, 8, 8, 3, 8, 20);
        assert_eq!(
            decide(&target(true), &c, &s, Mode::Inference, true)
                .guide
                .entry,
            "guide_argmax8_channel_last"
        );
        let (c, s) = layer(1, 6, 8, 3, 4, 20);
        assert_eq!(
            decide(&target(true), &c, &s, Mode::Inference, true)
                .guide
                .entry,
            "guide_argmax4"
        );
    }

    #[test]
    fn the_fused_grid_covers_the_most_tiles_the_regions_can_need() {
        for (c, s) in bench_shapes() {
            for cpu in [false, true] {
                let d = decide(&target(cpu), &c, &s, Mode::Inference, false);
                let (t, hw) = (d.corr.tiling, (s.out_height * s.out_width) as u64);
                assert_eq!(
                    d.corr.slots as u64,
                    hw.div_ceil(t.pixels) + c.region_num as u64 - 1
                );
                let row_tiles = (c.out_channels as u64).div_ceil(t.rows);
                assert_eq!(
                    d.corr.workgroups,
                    s.batch as u64 * row_tiles * d.corr.slots as u64 * d.corr.slices
                );
                let dense = decide(&target(cpu), &c, &s, Mode::Training, false).corr;
                let rows = (c.region_num * c.out_channels) as u64;
                let tiles = s.batch as u64
                    * rows.div_ceil(dense.tiling.rows)
                    * hw.div_ceil(dense.tiling.pixels);
                assert_eq!((dense.workgroups, dense.slots), (tiles * dense.slices, 0));
                // The GEMM's tiles are 4096 outputs; the CPU family never slices.
                match cpu {
                    false => assert_eq!(dense.tiling.rows * dense.tiling.pixels, 4096),
                    true => assert_eq!((d.corr.slices, dense.slices), (1, 1)),
                }
            }
        }
    }

    #[test]
    fn k_slices_fill_the_compute_units_within_their_bounds() {
        // S1 inference: 64 rows, 25 + 4 typical tiles of 64 pixels; 36 chunks of 16.
        let [(c, s), _, _, (c4, s4)] = bench_shapes();
        let d = decide(&target(false), &c, &s, Mode::Inference, true);
        assert_eq!((d.corr.tiling.rows, d.corr.tiling.pixels), (64, 64));
        // 2 x 128 / 29 -> 9, at most 36 / 4 = 9; 9 slices of 4 chunks.
        assert_eq!(d.corr.slices, 9);
        // Training: 8 x 25 = 200 tiles, 2 slices of 18 chunks.
        let t = decide(&target(false), &c, &s, Mode::Training, true);
        assert_eq!(t.corr.slices, 2);
        // S4 (I = 16): 9 chunks, at most 2 slices of 4, none empty: 9 -> 5 + 4.
        let d = decide(&target(false), &c4, &s4, Mode::Inference, true);
        assert_eq!(d.corr.slices, 2);
        // Forced: within the chunks, none empty (36 chunks in 7 -> 6 per slice -> 6 slices).
        let mut forced = target(false);
        forced.forced.k_slices = Some(7);
        assert_eq!(
            decide(&forced, &c, &s, Mode::Inference, true).corr.slices,
            6
        );
        forced.forced.k_slices = Some(1);
        assert_eq!(
            decide(&forced, &c, &s, Mode::Inference, true).corr.slices,
            1
        );
        // The partial outputs stay within one binding: 4 slices of S1's output where only 3 fit.
        forced.forced.k_slices = Some(4);
        forced.limits.max_storage_buffer_binding_size = 3 * 4 * 64 * 1600;
        assert_eq!(
            decide(&forced, &c, &s, Mode::Inference, true).corr.slices,
            3
        );
        // Large enough to fill the chip alone: Y16 runs unsliced.
        let (cy, sy) = layer(16, 256, 256, 3, 8, 40);
        for mode in [Mode::Inference, Mode::Training] {
            assert_eq!(decide(&target(false), &cy, &sy, mode, true).corr.slices, 1);
        }
    }

    #[test]
    fn devices_without_256_invocations_run_the_staged_correlation() {
        let [(c, s), ..] = bench_shapes();
        let mut t = target(false);
        t.limits.max_compute_invocations_per_workgroup = 128;
        let d = decide(&t, &c, &s, Mode::Inference, true);
        assert_eq!((d.corr.entry, d.corr.slices), ("selected", 1));
        assert_eq!(d.corr.shader, &shaders::CORRELATION);
    }

    #[test]
    fn the_kernel_generator_blocks_channels_where_invocations_remain() {
        // S3 on a CPU: 8 x 4 x 32 x 32 / 4 = 8192 blocks of 4 channels, 8 per invocation.
        let [_, _, (c, s), _] = bench_shapes();
        let g = decide(&target(true), &c, &s, Mode::Inference, true).kernel_gen;
        assert_eq!(
            (g.entry.entry, g.blocks, g.entry.items),
            ("unrolled_r4", 8, 1024)
        );
        // r = 8 at I*O = 64: 2 x 8 x 64 / 4 = 256 blocks, one each (2 would leave 128).
        let (c, s) = layer(2, 8, 8, 3, 8, 8);
        let g = decide(&target(true), &c, &s, Mode::Inference, true).kernel_gen;
        assert_eq!(
            (g.entry.entry, g.blocks, g.entry.items),
            ("unrolled_r8", 1, 256)
        );
        // The GPU family: the first generator whose invocations fill 2 workgroups per compute
        // unit: registers, blocked, else one per element. Training runs it alone (workgroups of
        // 64: 256 x 64 items on 128 units), inference beside the lists (of 256: 256 x 256).
        let gpu = |c: &DrConvConfig, s: &ForwardShape, mode| {
            let g = decide(&target(false), c, s, mode, true).kernel_gen;
            (g.entry.entry, g.entry.items)
        };
        let train = Mode::Training;
        // 2 x 8 x 64 / 8 blocks of 8 channels, x3 blocks of taps, too few: 2 x 8 x 64 x 9.
        assert_eq!(gpu(&c, &s, train), ("elements", 9216));
        // S2: 8 x 2048 = 16384 register blocks, 256 workgroups: enough for 128 units, not for
        // an H100's 132 (then blocked: 768 workgroups); beside the lists, one per element.
        let [_, (c2, s2), ..] = bench_shapes();
        assert_eq!(gpu(&c2, &s2, train), ("registers", 8 * 2048));
        assert_eq!(gpu(&c2, &s2, Mode::Inference), ("elements", 8 * 16384 * 9));
        let mut h100 = target(false);
        h100.compute_units = 132;
        let g = decide(&h100, &c2, &s2, train, true).kernel_gen;
        assert_eq!((g.entry.entry, g.entry.items), ("blocked", 3 * 8 * 2048));
        let (cy, sy) = layer(1, 256, 256, 3, 8, 40);
        assert_eq!(gpu(&cy, &sy, train), ("registers", 8 * 8192));
        assert_eq!(gpu(&cy, &sy, Mode::Inference), ("registers", 8 * 8192));
        // r > 8: no register code.
        let (c, s) = layer(16, 32, 32, 5, 12, 8);
        assert_eq!(gpu(&c, &s, train).0, "blocked");
        // A forced generator is kept.
        let mut forced = target(false);
        forced.forced.kernel_gen = Some(KernelGen::Registers);
        let g = decide(&forced, &c2, &s2, Mode::Inference, true).kernel_gen;
        assert_eq!(g.entry.entry, "registers");
    }

    #[test]
    fn the_generator_takes_the_logits_where_the_device_binds_12_storage_buffers() {
        let mut gpu = target(false);
        gpu.limits.max_storage_buffers_per_shader_stage = 12;
        let (y, ys) = layer(16, 256, 256, 3, 8, 40);
        let d = decide(&gpu, &y, &ys, Mode::Inference, true);
        // k*k * I / 64 = 36 elements per invocation: 64 workgroups per (sample, group).
        assert_eq!(d.gen_with_logits, Some(36));
        assert_eq!(d.kernel_gen.entry.entry, "elements");
        assert!(
            d.to_string().contains("kernel_logits+kernel_gen+lists"),
            "{d}"
        );
        // S4 (I = 16, r = 4, B = 1): k*k * I / 64 = 3 elements per invocation would leave 12
        // workgroups; 1 leaves 36, the most it can have.
        let [.., (c4, s4)] = bench_shapes();
        let d4 = decide(&gpu, &c4, &s4, Mode::Inference, true);
        assert_eq!(d4.gen_with_logits, Some(1));
        // Not in training, nor on a split's part, nor with WebGPU's 8 bindings, nor past the
        // workgroup's r * k*k sigmoid values (k 9, r 16: 1296), nor beside a forced generator.
        assert_eq!(
            decide(&gpu, &y, &ys, Mode::Training, true).gen_with_logits,
            None
        );
        let part = Target {
            merge_stages: false,
            ..gpu.clone()
        };
        assert_eq!(
            decide(&part, &y, &ys, Mode::Inference, true).gen_with_logits,
            None
        );
        let webgpu = target(false);
        assert_eq!(
            decide(&webgpu, &y, &ys, Mode::Inference, true).gen_with_logits,
            None
        );
        let (big, bs) = layer(1, 8, 8, 9, 16, 12);
        assert_eq!(
            decide(&gpu, &big, &bs, Mode::Inference, true).gen_with_logits,
            None
        );
        let (small, ss) = layer(1, 8, 8, 7, 16, 12);
        assert!(decide(&gpu, &small, &ss, Mode::Inference, true)
            .gen_with_logits
            .is_some());
        let mut forced = gpu.clone();
        forced.forced.kernel_gen = Some(KernelGen::Blocked);
        assert_eq!(
            decide(&forced, &y, &ys, Mode::Inference, true).gen_with_logits,
            None
        );
    }

    #[test]
    fn the_report_names_every_choice() {
        let [_, _, (c, s), _] = bench_shapes();
        let line = decide(&target(true), &c, &s, Mode::Training, true).to_string();
        for word in [
            "training:",
            "correlation=channel_last",
            "guide=guide_argmax4_channel_last_k3",
            "correlation=all_regions_channel_last",
            "kernel_grad=kernel_grad_lists8",
            "uniform bindings: kernel=off per_region=off guide=on",
        ] {
            assert!(line.contains(word), "{word} in {line}");
        }
    }
}
