//! The split forward, and the per-chunk forward the split backward recomputes.

use super::channels::SubParams;
use super::copies::{samples, slices, Dir};
use super::{chunks, last_size, Chunk, PerSize};
use crate::config::{DrConvConfig, ForwardShape};
use crate::error::Result;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::forward::{ForwardPlan, Mode};
use crate::gpu::limits::{self, with_out_channels};
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Program, Step};

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
    let mut sub_params = SubParams::build(ctx, c, params, &all)?;
    let subs = PerSize::build(all.iter().map(Chunk::size), |size| {
        sub_forward(ctx, c, &s, &sub_params, input, size, mode)
    })?;
    let mut steps = Vec::new();
    for ch in &all {
        let sub = subs.get(ch.size());
        steps.extend(chunk_forward(&mut sub_params, &s, input, sub, ch));
        steps.extend(slices(
            "output chunk out",
            &output,
            &sub.output,
            ch,
            Dir::Out,
        ));
        // The same in every channel chunk.
        if ch.o0 == 0 {
            steps.push(samples(
                "region chunk out",
                &region,
                &sub.region,
                ch,
                Dir::Out,
            ));
            steps.push(samples("guide chunk out", &guide, &sub.guide, ch, Dir::Out));
        }
    }
    Ok(Some(ForwardPlan {
        shape: s,
        mode,
        input: input.clone(),
        guide,
        region,
        output,
        program: Program { steps },
        ..subs.take(last_size(&all))
    }))
}

/// The forward sub-plan of chunks of `nb` samples and `no` output channels of `input`.
pub(super) fn sub_forward(
    ctx: &GpuContext,
    c: &DrConvConfig,
    s: &ForwardShape,
    sub_params: &SubParams,
    input: &GpuTensor,
    (nb, no): (usize, usize),
    mode: Mode,
) -> Result<ForwardPlan> {
    let x = chunk_input(ctx, c, s, input, nb)?;
    ForwardPlan::build(ctx, &with_out_channels(c, no), sub_params.get(no), &x, mode)
}

/// The steps that run chunk `ch` of the forward of `input` with its sub-plan `sub`: the chunk's
/// conv_kernel.3 rows (unless its sub-layer holds them) and samples copied in, then the sub-plan.
pub(super) fn chunk_forward(
    sub_params: &mut SubParams,
    s: &ForwardShape,
    input: &GpuTensor,
    sub: &ForwardPlan,
    ch: &Chunk,
) -> Vec<Step> {
    let mut steps = sub_params.load(ch);
    if ch.nb < s.batch {
        steps.push(samples("input chunk in", input, &sub.input, ch, Dir::In));
    }
    steps.extend(sub.program.steps.iter().cloned());
    steps
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
