//! Plans split over the batch and the output channels so that every tensor a shader binds fits
//! the device's `max_storage_buffer_binding_size` (the full tensors only need `max_buffer_size`:
//! they are copied in and out, never bound).
//!
//! A split plan runs ordinary sub-plans of `nb` samples and `no` output channels (one per chunk
//! size: full chunks and remainders) one chunk after another, in one submission: copy the chunk's
//! inputs in, run the sub-plan, copy its results out. [`crate::gpu::limits::forward_split`] picks
//! the largest chunks that fit: whole samples while one fits, else one sample (or a few) and the
//! most output channels that fit.
//!
//! The output-channel split needs no shader of its own: a DRConv with O outputs is the
//! concatenation over chunks `o0..o0+no` of DRConvs with `no` outputs that share the pool, kernel
//! logits and guide parameters and take conv_kernel.3's rows for those outputs. conv_kernel.3's
//! row `g*I*O + o*I + i` is region g, output o, input i, so a chunk's rows are r contiguous runs
//! (one per region), copied into the sub-layer's own conv_kernel.3 buffers by the program itself
//! (parameters change between calls). Each chunk recomputes the pool, kernel logits, guide and
//! region map: wasted work, but exact, and the region map is the same in every chunk.
//!
//! What a split plan keeps whole: the forward's output, region map and guide; the backward's
//! `grad_output`, `grad.x` and the parameter gradients. Gradients that every chunk contributes to
//! (x, the guide's, conv_kernel.1's) are summed chunk by chunk in a fixed order (deterministic,
//! though not in the unsplit plan's order); each channel chunk's conv_kernel.3 gradient goes to
//! its rows. Every other intermediate (pooled, kernel logits, sigmoid, kernel, corr, the region
//! lists, and their gradients) is the last chunk's: the plan's field holds the last sub-plan's
//! tensor, with that chunk's shape (so does a `forward_trace` of a split plan). The backward
//! recomputes each chunk's forward before its backward (the chunk buffers are reused), so a split
//! training step runs the forward twice.

use crate::config::{DrConvConfig, ForwardShape};
use crate::error::Result;
use crate::gpu::backward::{param_grad_buffers, BackwardPlan};
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::forward::{ForwardPlan, Mode};
use crate::gpu::limits::{self, with_out_channels, Split};
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Dims, Program, Step};
use crate::gpu::shaders;
use crate::params::ParamId;

/// Samples `b0..b0+nb` and output channels `o0..o0+no` of a split plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    b0: usize,
    nb: usize,
    o0: usize,
    no: usize,
}

/// `(start, len)` of the chunks of `n` items, `size` at a time.
fn spans(n: usize, size: usize) -> impl Iterator<Item = (usize, usize)> + Clone {
    (0..n).step_by(size).map(move |s| (s, size.min(n - s)))
}

/// Every chunk of `split`, channel chunks outer when `channels_outer` (the forward: each chunk's
/// conv_kernel.3 rows are copied once), else batch chunks outer (the backward: a batch chunk's
/// `grad.x` is summed over the channel chunks before the next batch chunk).
fn chunks(split: Split, s: &ForwardShape, c: &DrConvConfig, channels_outer: bool) -> Vec<Chunk> {
    let (bs, os) = (
        spans(s.batch, split.batch),
        spans(c.out_channels, split.channels),
    );
    let mut v = Vec::new();
    if channels_outer {
        for (o0, no) in os {
            v.extend(bs.clone().map(|(b0, nb)| Chunk { b0, nb, o0, no }));
        }
    } else {
        for (b0, nb) in bs {
            v.extend(os.clone().map(|(o0, no)| Chunk { b0, nb, o0, no }));
        }
    }
    v
}

/// One value per distinct key (a chunk size), in order of first use.
struct PerSize<K, T> {
    items: Vec<(K, T)>,
}

impl<K: PartialEq + Copy, T> PerSize<K, T> {
    fn build(
        keys: impl IntoIterator<Item = K>,
        mut make: impl FnMut(K) -> Result<T>,
    ) -> Result<Self> {
        let mut items: Vec<(K, T)> = Vec::new();
        for k in keys {
            if !items.iter().any(|(have, _)| *have == k) {
                let v = make(k)?;
                items.push((k, v));
            }
        }
        Ok(PerSize { items })
    }

    fn get(&self, k: K) -> &T {
        &self
            .items
            .iter()
            .find(|(have, _)| *have == k)
            .expect("built for every chunk")
            .1
    }

    fn take(mut self, k: K) -> T {
        let pos = self.items.iter().position(|(have, _)| *have == k);
        self.items
            .swap_remove(pos.expect("built for every chunk"))
            .1
    }
}

/// Copies between a chunk's tensor (`nb x no x rest`) and samples `b0..`, channels `o0..` of the
/// full `B x O x rest` tensor: one copy per sample, or one in all when the chunk has every
/// channel. `into_chunk` copies full -> chunk, else chunk -> full.
fn slices(
    label: &'static str,
    full: &GpuTensor,
    chunk: &GpuTensor,
    ch: &Chunk,
    into_chunk: bool,
) -> Vec<Step> {
    let o = full.shape[1];
    let plane = full.shape[2..].iter().product::<usize>() as u64 * 4;
    let (nb, no) = (ch.nb as u64, chunk.shape[1] as u64);
    let pieces: Vec<(u64, u64, u64)> = if no == o as u64 {
        vec![(ch.b0 as u64 * no * plane, 0, nb * no * plane)]
    } else {
        (0..nb)
            .map(|j| {
                let at = ((ch.b0 as u64 + j) * o as u64 + ch.o0 as u64) * plane;
                (at, j * no * plane, no * plane)
            })
            .collect()
    };
    pieces
        .into_iter()
        .map(|(at, chunk_at, size)| {
            if into_chunk {
                Step::copy(label, &full.buffer, at, &chunk.buffer, chunk_at, size)
            } else {
                Step::copy(label, &chunk.buffer, chunk_at, &full.buffer, at, size)
            }
        })
        .collect()
}

/// Copies of the samples of a chunk for tensors with no channel axis to split (input, region
/// map, guide, grad.x): samples `b0..b0+nb` of `full` and all of `chunk`.
fn samples(
    label: &'static str,
    full: &GpuTensor,
    chunk: &GpuTensor,
    ch: &Chunk,
    into_chunk: bool,
) -> Step {
    let sample = full.shape[1..].iter().product::<usize>() as u64 * 4;
    let (at, size) = (ch.b0 as u64 * sample, ch.nb as u64 * sample);
    if into_chunk {
        Step::copy(label, &full.buffer, at, &chunk.buffer, 0, size)
    } else {
        Step::copy(label, &chunk.buffer, 0, &full.buffer, at, size)
    }
}

/// Copies of conv_kernel.3's rows (weight or bias `id`, or their gradients) for output channels
/// `o0..o0+no` between the full layer's tensor and a channel chunk's: per region g, full rows
/// `g*I*O + o0*I ..` are chunk rows `g*I*no ..`, `no*I` of them.
#[allow(clippy::too_many_arguments)]
fn kernel3_rows(
    label: &'static str,
    c: &DrConvConfig,
    id: ParamId,
    full: &GpuTensor,
    chunk: &GpuTensor,
    o0: usize,
    no: usize,
    into_chunk: bool,
) -> Vec<Step> {
    let row = match id {
        ParamId::KernelW3 => c.region_num as u64 * 4,
        _ => 4,
    };
    let (i, o) = (c.in_channels as u64, c.out_channels as u64);
    let (o0, no) = (o0 as u64, no as u64);
    (0..c.region_num as u64)
        .map(|g| {
            let at = (g * i * o + o0 * i) * row;
            let chunk_at = g * i * no * row;
            let size = no * i * row;
            if into_chunk {
                Step::copy(label, &full.buffer, at, &chunk.buffer, chunk_at, size)
            } else {
                Step::copy(label, &chunk.buffer, chunk_at, &full.buffer, at, size)
            }
        })
        .collect()
}

const KERNEL3: [ParamId; 2] = [ParamId::KernelW3, ParamId::KernelB3];

/// The parameters of a sub-layer with `no` output channels: the layer's own when `no` is all of
/// them, else the layer's buffers for what every chunk shares and new ones for conv_kernel.3
/// (filled by [`load_kernel3`] before each chunk that uses them).
fn sub_params(
    ctx: &GpuContext,
    c: &DrConvConfig,
    params: &GpuParams,
    no: usize,
) -> Result<GpuParams> {
    if no == c.out_channels {
        return Ok(params.clone());
    }
    let sub = with_out_channels(c, no);
    let mut tensors = params.tensors.clone();
    for id in KERNEL3 {
        tensors[id.index()] = ctx.empty(id.name(), &sub.param_shape(id))?;
    }
    Ok(GpuParams { tensors })
}

/// Tracks which channel chunk's conv_kernel.3 rows each sub-layer's buffers hold, so the forward
/// (channel chunks outer) copies them once per channel chunk.
struct Kernel3Loads {
    loaded: Vec<(usize, usize)>,
}

impl Kernel3Loads {
    /// The copies that put chunk `ch`'s rows into its sub-layer's buffers, unless they hold them.
    fn load(
        &mut self,
        c: &DrConvConfig,
        full: &GpuParams,
        sub: &GpuParams,
        ch: &Chunk,
    ) -> Vec<Step> {
        if ch.no == c.out_channels {
            return Vec::new();
        }
        match self.loaded.iter_mut().find(|(no, _)| *no == ch.no) {
            Some((_, o0)) if *o0 == ch.o0 => return Vec::new(),
            Some((_, o0)) => *o0 = ch.o0,
            None => self.loaded.push((ch.no, ch.o0)),
        }
        KERNEL3
            .iter()
            .flat_map(|&id| {
                kernel3_rows(
                    "conv_kernel.3 rows in",
                    c,
                    id,
                    full.get(id),
                    sub.get(id),
                    ch.o0,
                    ch.no,
                    true,
                )
            })
            .collect()
    }
}

/// The input of a chunk's sub-plan: the full input when the chunk has every sample (bound
/// directly: it fits, the split checked), else a buffer the program copies the samples into.
fn chunk_input(
    ctx: &GpuContext,
    c: &DrConvConfig,
    s: &ForwardShape,
    input: &GpuTensor,
    nb: usize,
) -> Result<GpuTensor> {
    if nb == s.batch {
        return Ok(input.clone());
    }
    ctx.empty("input chunk", &[nb, c.in_channels, s.height, s.width])
}

/// The forward of `input` as sub-plans over batch and output-channel chunks, or `None` when the
/// unsplit plan fits the device. Refuses (before allocating) what no split can fit.
pub fn forward(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    input: &GpuTensor,
    mode: Mode,
) -> Result<Option<ForwardPlan>> {
    let (c, s) = (config, config.forward_shape(&input.shape)?);
    let split = limits::forward_split(&ctx.limits, c, &s, mode)?;
    if !split.splits(c, &s) {
        return Ok(None);
    }
    limits::check_holds("input", input)?;
    let output = ctx.empty_stored("output", &s.output(c))?;
    let region = ctx.empty_stored("region_index", &s.region())?;
    let guide = ctx.empty_stored("guide", &s.guide(c))?;
    let all = chunks(split, &s, c, true);
    let sizes = || all.iter().map(|ch| (ch.nb, ch.no));
    let params_of = PerSize::build(all.iter().map(|ch| ch.no), |no| {
        sub_params(ctx, c, params, no)
    })?;
    let subs = PerSize::build(sizes(), |(nb, no)| {
        let x = chunk_input(ctx, c, &s, input, nb)?;
        ForwardPlan::build(ctx, &with_out_channels(c, no), params_of.get(no), &x, mode)
    })?;
    let mut loads = Kernel3Loads { loaded: Vec::new() };
    let mut steps = Vec::new();
    for ch in &all {
        let sub = subs.get((ch.nb, ch.no));
        steps.extend(loads.load(c, params, params_of.get(ch.no), ch));
        if ch.nb < s.batch {
            steps.push(samples("input chunk in", input, &sub.input, ch, true));
        }
        steps.extend(sub.program.steps.iter().cloned());
        steps.extend(slices("output chunk out", &output, &sub.output, ch, false));
        // The same in every channel chunk.
        if ch.o0 == 0 {
            steps.push(samples("region chunk out", &region, &sub.region, ch, false));
            steps.push(samples("guide chunk out", &guide, &sub.guide, ch, false));
        }
    }
    let last = all[all.len() - 1];
    Ok(Some(ForwardPlan {
        shape: s,
        mode,
        input: input.clone(),
        guide,
        region,
        output,
        program: Program { steps },
        ..subs.take((last.nb, last.no))
    }))
}

/// The parameter gradients of a layer, one buffer each. Only `max_buffer_size` limits them: an
/// unsplit backward binds them whole (its limits check covers them), a plan split over output
/// channels copies conv_kernel.3's gradient in row slices, and the optimizer binds them in
/// windows.
pub fn layer_param_grad_buffers(ctx: &GpuContext, config: &DrConvConfig) -> Result<[GpuTensor; 6]> {
    let mut out = Vec::with_capacity(6);
    for id in ParamId::ALL {
        out.push(ctx.empty_stored(id.name(), &config.param_shape(id))?);
    }
    Ok(out.try_into().expect("six parameters"))
}

/// The parts of a backward split over chunks (assembled into a `BackwardPlan` by
/// `BackwardPlan::build`).
pub struct SplitBackward {
    /// Full batch, B x O x H' x W'.
    pub grad_output: GpuTensor,
    /// Full batch, B x I x H x W.
    pub grad_x: GpuTensor,
    pub program: Program,
    /// The last chunk's backward plan: its intermediate gradients stand for the plan's.
    pub last: BackwardPlan,
}

/// One chunk size's sub-plans: the training forward it recomputes, its backward, its own
/// parameter gradients and the steps adding the shared ones into the layer's.
struct SubBackward {
    fwd: ForwardPlan,
    bwd: BackwardPlan,
    grads: [GpuTensor; 6],
    /// Adds the gradients that have the layer's shape (all but conv_kernel.3's when the channels
    /// are split) into the layer's.
    accumulate: Vec<Step>,
    /// Channel split: adds the chunk's `grad.x` into its batch chunk's sum.
    add_x: Vec<Step>,
}

/// The gradients shared by every chunk (same shape as the layer's): all six without a channel
/// split, else all but conv_kernel.3's.
fn shared_grads(channel_split: bool) -> impl Iterator<Item = ParamId> {
    ParamId::ALL
        .into_iter()
        .filter(move |id| !(channel_split && KERNEL3.contains(id)))
}

fn accumulate(
    ctx: &GpuContext,
    label: &'static str,
    src: &GpuTensor,
    dst: &GpuTensor,
) -> Result<Vec<Step>> {
    ctx.steps(
        label,
        &shaders::ACCUMULATE,
        "add",
        Dims::default(),
        &[(1, &src.buffer), (2, &dst.buffer)],
        src.numel() as u64,
    )
}

/// The backward of the training forward `fwd` as sub-plans over batch and output-channel
/// chunks, or `None` when the unsplit backward fits the device. Parameter gradients go to
/// `param_grads`: the first chunk's are copied there, the later ones added in chunk order
/// (conv_kernel.3's per channel chunk, to its rows).
pub fn backward(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    fwd: &ForwardPlan,
    param_grads: &[GpuTensor; 6],
) -> Result<Option<SplitBackward>> {
    let (c, s) = (config, fwd.shape);
    let split = limits::backward_split(&ctx.limits, c, &s)?;
    if !split.splits(c, &s) {
        return Ok(None);
    }
    let (batch_split, channel_split) = (split.batch < s.batch, split.channels < c.out_channels);
    let grad_output = ctx.empty_stored("grad_output", &s.output(c))?;
    let grad_x = ctx.empty_stored("grad.x", &s.input(c))?;
    let all = chunks(split, &s, c, false);
    let params_of = PerSize::build(all.iter().map(|ch| ch.no), |no| {
        sub_params(ctx, c, params, no)
    })?;
    // Channel split: grad.x of a batch chunk summed over its channel chunks.
    let x_sums = PerSize::build(all.iter().map(|ch| ch.nb), |nb| {
        if !channel_split {
            return Ok(None);
        }
        let shape = [nb, c.in_channels, s.height, s.width];
        ctx.empty("grad.x chunk sum", &shape).map(Some)
    })?;
    let subs = PerSize::build(all.iter().map(|ch| (ch.nb, ch.no)), |(nb, no)| {
        let sc = with_out_channels(c, no);
        let sp = params_of.get(no);
        let x = chunk_input(ctx, c, &s, &fwd.input, nb)?;
        let fwd = ForwardPlan::build(ctx, &sc, sp, &x, Mode::Training)?;
        let grads = param_grad_buffers(ctx, &sc)?;
        let bwd = BackwardPlan::build(ctx, &sc, sp, &fwd, &grads)?;
        let mut acc = Vec::new();
        for id in shared_grads(channel_split) {
            let (src, dst) = (&grads[id.index()], &param_grads[id.index()]);
            acc.extend(accumulate(ctx, "accumulate param grad", src, dst)?);
        }
        let add_x = match x_sums.get(nb) {
            Some(sum) => accumulate(ctx, "accumulate grad.x", &bwd.grads.x, sum)?,
            None => Vec::new(),
        };
        Ok(SubBackward {
            fwd,
            bwd,
            grads,
            accumulate: acc,
            add_x,
        })
    })?;
    // Channel and batch split: each channel chunk's conv_kernel.3 gradients summed over the batch
    // chunks (they fit one binding, the layer's may not), copied to their rows at the end.
    let kernel3_sums = PerSize::build(all.iter().map(|ch| ch.o0), |o0| {
        if !(channel_split && batch_split) {
            return Ok(None);
        }
        let ch = all.iter().find(|ch| ch.o0 == o0).expect("a chunk at o0");
        let sc = with_out_channels(c, ch.no);
        let sums = [
            ctx.empty(
                "conv_kernel.3.weight grad sum",
                &sc.param_shape(ParamId::KernelW3),
            )?,
            ctx.empty(
                "conv_kernel.3.bias grad sum",
                &sc.param_shape(ParamId::KernelB3),
            )?,
        ];
        // The adds of every batch-chunk size's sub-plan with these channels.
        let mut adds = Vec::new();
        for (nb, no) in all.iter().map(|ch| (ch.nb, ch.no)) {
            if no != ch.no || adds.iter().any(|(have, _)| *have == nb) {
                continue;
            }
            let sub = subs.get((nb, no));
            let mut steps = Vec::new();
            for (id, sum) in KERNEL3.iter().zip(&sums) {
                steps.extend(accumulate(
                    ctx,
                    "accumulate conv_kernel.3 grad",
                    &sub.grads[id.index()],
                    sum,
                )?);
            }
            adds.push((nb, steps));
        }
        Ok(Some((ch.no, sums, adds)))
    })?;

    let mut steps = Vec::new();
    let mut loads = Kernel3Loads { loaded: Vec::new() };
    for (k, ch) in all.iter().enumerate() {
        let sub = subs.get((ch.nb, ch.no));
        steps.extend(loads.load(c, params, params_of.get(ch.no), ch));
        if ch.nb < s.batch {
            steps.push(samples(
                "input chunk in",
                &fwd.input,
                &sub.fwd.input,
                ch,
                true,
            ));
        }
        steps.extend(sub.fwd.program.steps.iter().cloned());
        steps.extend(slices(
            "grad_output chunk in",
            &grad_output,
            &sub.bwd.grad_output,
            ch,
            true,
        ));
        steps.extend(sub.bwd.program.steps.iter().cloned());
        let dx = &sub.bwd.grads.x;
        match x_sums.get(ch.nb) {
            None => steps.push(samples("grad.x chunk out", &grad_x, dx, ch, false)),
            Some(sum) => {
                if ch.o0 == 0 {
                    steps.push(Step::copy(
                        "grad.x sum",
                        &dx.buffer,
                        0,
                        &sum.buffer,
                        0,
                        dx.numel() as u64 * 4,
                    ));
                } else {
                    steps.extend(sub.add_x.iter().cloned());
                }
                if ch.o0 + ch.no == c.out_channels {
                    steps.push(samples("grad.x chunk out", &grad_x, sum, ch, false));
                }
            }
        }
        if k == 0 {
            for id in shared_grads(channel_split) {
                let (src, dst) = (&sub.grads[id.index()], &param_grads[id.index()]);
                steps.push(Step::copy(
                    "param grad",
                    &src.buffer,
                    0,
                    &dst.buffer,
                    0,
                    src.numel() as u64 * 4,
                ));
            }
        } else {
            steps.extend(sub.accumulate.iter().cloned());
        }
        if !channel_split {
            continue;
        }
        match kernel3_sums.get(ch.o0) {
            // One batch chunk: the chunk's conv_kernel.3 gradients are final.
            None => {
                for id in KERNEL3 {
                    let (full, part) = (&param_grads[id.index()], &sub.grads[id.index()]);
                    steps.extend(kernel3_rows(
                        "conv_kernel.3 grad rows out",
                        c,
                        id,
                        full,
                        part,
                        ch.o0,
                        ch.no,
                        false,
                    ));
                }
            }
            Some((_, sums, adds)) => {
                if ch.b0 == 0 {
                    for (id, sum) in KERNEL3.iter().zip(sums) {
                        let src = &sub.grads[id.index()];
                        steps.push(Step::copy(
                            "conv_kernel.3 grad sum",
                            &src.buffer,
                            0,
                            &sum.buffer,
                            0,
                            src.numel() as u64 * 4,
                        ));
                    }
                } else {
                    let (_, add) = adds
                        .iter()
                        .find(|(nb, _)| *nb == ch.nb)
                        .expect("adds per batch size");
                    steps.extend(add.iter().cloned());
                }
            }
        }
    }
    for (o0, sums) in &kernel3_sums.items {
        if let Some((no, sums, _)) = sums {
            for (id, sum) in KERNEL3.iter().zip(sums) {
                let full = &param_grads[id.index()];
                steps.extend(kernel3_rows(
                    "conv_kernel.3 grad rows out",
                    c,
                    *id,
                    full,
                    sum,
                    *o0,
                    *no,
                    false,
                ));
            }
        }
    }
    let last = all[all.len() - 1];
    Ok(Some(SplitBackward {
        grad_output,
        grad_x,
        program: Program { steps },
        last: subs.take((last.nb, last.no)).bwd,
    }))
}
