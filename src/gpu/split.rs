//! Plans split over the batch so that every tensor a shader binds fits the device's
//! `max_storage_buffer_binding_size` (the full-batch tensors only need `max_buffer_size`: they
//! are copied in and out, never bound).
//!
//! A split plan runs ordinary sub-plans of `chunk` samples (plus one for the remainder) one chunk
//! after another, in one submission: copy the chunk's input samples in, run the sub-plan, copy
//! its results out. [`crate::gpu::limits::forward_chunk`] picks the largest chunk that fits.
//!
//! What a split plan keeps for the whole batch: the forward's output, region map and guide; the
//! backward's `grad_output`, `grad.x` and the parameter gradients (summed chunk by chunk, in
//! order). Every other intermediate (pooled, kernel, corr, and their gradients) is the last
//! chunk's: the plan's field holds the last sub-plan's tensor, with that chunk's shape. The
//! backward recomputes each chunk's forward before its backward (the chunk buffers are reused),
//! so a split training step runs the forward twice.

use crate::config::DrConvConfig;
use crate::error::Result;
use crate::gpu::backward::{param_grad_buffers, BackwardPlan};
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::forward::{ForwardPlan, Mode};
use crate::gpu::limits;
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Dims, Program, Step};
use crate::gpu::shaders;
use crate::params::ParamId;

/// A sub-plan for full chunks and one for the remainder, if the batch does not divide.
struct Chunks<T> {
    batch: usize,
    chunk: usize,
    full: T,
    rest: Option<T>,
}

impl<T> Chunks<T> {
    fn new(batch: usize, chunk: usize, mut make: impl FnMut(usize) -> Result<T>) -> Result<Self> {
        let full = make(chunk)?;
        let rest = match batch % chunk {
            0 => None,
            n => Some(make(n)?),
        };
        Ok(Chunks {
            batch,
            chunk,
            full,
            rest,
        })
    }

    /// (first sample, sub-plan) of every chunk, in order.
    fn each(&self) -> impl Iterator<Item = (usize, &T)> {
        (0..self.batch).step_by(self.chunk).map(|b0| {
            let sub = match (&self.rest, b0 + self.chunk > self.batch) {
                (Some(rest), true) => rest,
                _ => &self.full,
            };
            (b0, sub)
        })
    }

    /// The sub-plan of the last chunk.
    fn into_last(self) -> T {
        self.rest.unwrap_or(self.full)
    }
}

/// Copies samples `src_b0..src_b0+n` of `src` to samples from `dst_b0` of `dst` (same
/// per-sample shape).
fn copy_samples(
    label: &'static str,
    src: &GpuTensor,
    src_b0: usize,
    dst: &GpuTensor,
    dst_b0: usize,
    n: usize,
) -> Step {
    let sample = src.shape[1..].iter().product::<usize>() as u64 * 4;
    Step::copy(
        label,
        &src.buffer,
        src_b0 as u64 * sample,
        &dst.buffer,
        dst_b0 as u64 * sample,
        n as u64 * sample,
    )
}

/// The forward of `input` as sub-plans over batch chunks, or `None` when the unsplit plan fits
/// the device. Refuses (before allocating) what no split over the batch can fit.
pub fn forward(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    input: &GpuTensor,
    mode: Mode,
) -> Result<Option<ForwardPlan>> {
    let (c, s) = (config, config.forward_shape(&input.shape)?);
    let chunk = limits::forward_chunk(&ctx.limits, c, &s, mode)?;
    if chunk >= s.batch {
        return Ok(None);
    }
    limits::check_holds("input", input)?;
    let output = ctx.empty_stored("output", &s.output(c))?;
    let region = ctx.empty_stored("region_index", &s.region())?;
    let guide = ctx.empty_stored("guide", &s.guide(c))?;
    let subs = Chunks::new(s.batch, chunk, |n| {
        let x = ctx.empty("input chunk", &[n, c.in_channels, s.height, s.width])?;
        ForwardPlan::build(ctx, c, params, &x, mode)
    })?;
    let mut steps = Vec::new();
    for (b0, sub) in subs.each() {
        let n = sub.shape.batch;
        steps.push(copy_samples("input chunk in", input, b0, &sub.input, 0, n));
        steps.extend(sub.program.steps.iter().cloned());
        steps.push(copy_samples(
            "output chunk out",
            &sub.output,
            0,
            &output,
            b0,
            n,
        ));
        steps.push(copy_samples(
            "region chunk out",
            &sub.region,
            0,
            &region,
            b0,
            n,
        ));
        steps.push(copy_samples(
            "guide chunk out",
            &sub.guide,
            0,
            &guide,
            b0,
            n,
        ));
    }
    Ok(Some(ForwardPlan {
        shape: s,
        mode,
        input: input.clone(),
        guide,
        region,
        output,
        program: Program { steps },
        ..subs.into_last()
    }))
}

/// The parts of a backward split over batch chunks (assembled into a `BackwardPlan` by
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
/// parameter gradients and the steps adding them into the layer's.
struct SubBackward {
    fwd: ForwardPlan,
    bwd: BackwardPlan,
    grads: [GpuTensor; 6],
    accumulate: Vec<Step>,
}

/// The backward of the training forward `fwd` as sub-plans over batch chunks, or `None` when
/// the unsplit backward fits the device. Parameter gradients go to `param_grads`: the first
/// chunk's are copied there, the later ones added in chunk order.
pub fn backward(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    fwd: &ForwardPlan,
    param_grads: &[GpuTensor; 6],
) -> Result<Option<SplitBackward>> {
    let (c, s) = (config, fwd.shape);
    let chunk = limits::backward_chunk(&ctx.limits, c, &s)?;
    if chunk >= s.batch {
        return Ok(None);
    }
    let grad_output = ctx.empty_stored("grad_output", &s.output(c))?;
    let grad_x = ctx.empty_stored("grad.x", &s.input(c))?;
    let subs = Chunks::new(s.batch, chunk, |n| {
        let x = ctx.empty("input chunk", &[n, c.in_channels, s.height, s.width])?;
        let fwd = ForwardPlan::build(ctx, c, params, &x, Mode::Training)?;
        let grads = param_grad_buffers(ctx, c)?;
        let bwd = BackwardPlan::build(ctx, c, params, &fwd, &grads)?;
        let mut accumulate = Vec::new();
        for id in ParamId::ALL {
            let (src, dst) = (&grads[id.index()], &param_grads[id.index()]);
            accumulate.extend(ctx.steps(
                "accumulate param grad",
                &shaders::ACCUMULATE,
                "add",
                Dims::default(),
                &[(1, &src.buffer), (2, &dst.buffer)],
                src.numel() as u64,
            )?);
        }
        Ok(SubBackward {
            fwd,
            bwd,
            grads,
            accumulate,
        })
    })?;
    let mut steps = Vec::new();
    for (b0, sub) in subs.each() {
        let n = sub.fwd.shape.batch;
        steps.push(copy_samples(
            "input chunk in",
            &fwd.input,
            b0,
            &sub.fwd.input,
            0,
            n,
        ));
        steps.extend(sub.fwd.program.steps.iter().cloned());
        let gy = &sub.bwd.grad_output;
        steps.push(copy_samples(
            "grad_output chunk in",
            &grad_output,
            b0,
            gy,
            0,
            n,
        ));
        steps.extend(sub.bwd.program.steps.iter().cloned());
        steps.push(copy_samples(
            "grad.x chunk out",
            &sub.bwd.grads.x,
            0,
            &grad_x,
            b0,
            n,
        ));
        if b0 == 0 {
            for (src, dst) in sub.grads.iter().zip(param_grads) {
                let bytes = src.numel() as u64 * 4;
                steps.push(Step::copy(
                    "param grad",
                    &src.buffer,
                    0,
                    &dst.buffer,
                    0,
                    bytes,
                ));
            }
        } else {
            steps.extend(sub.accumulate.iter().cloned());
        }
    }
    Ok(Some(SplitBackward {
        grad_output,
        grad_x,
        program: Program { steps },
        last: subs.into_last().bwd,
    }))
}
