//! The split forward, and the per-chunk forward the split backward recomputes.

use super::band::band;
use super::channels::SubParams;
use super::chunks::{chunks, last_size, Chunk, PerSize, Size};
use super::copies::{samples, slices, Dir};
use super::plan::{with_out_channels, Split};
use super::pool::PoolStage;
use super::rows::{input_in, out_rows};
use crate::config::{DrConvConfig, ForwardShape, Mode};
use crate::error::Result;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::forward::{ForwardPlan, POOL_STEP};
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Program, Step};

/// The forward of `input` as sub-plans of `split`'s chunks (`plan::forward_split`, which
/// checked every sub-plan's tensors and the full ones this plan keeps against the device).
pub fn forward(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    input: &GpuTensor,
    mode: Mode,
    split: Split,
) -> Result<ForwardPlan> {
    let (c, s) = (config, config.forward_shape(&input.shape)?);
    let output = ctx.empty_stored("output", &s.output(c))?;
    let region = ctx.empty_stored("region_index", &s.region())?;
    let guide = ctx.empty_stored("guide", &s.guide(c))?;
    let all = chunks(split, &s, c, true);
    let pool = pool_stage(ctx, c, &s, split.splits_rows(&s))?;
    let mut sub_params = SubParams::build(ctx, c, params, &all)?;
    let subs = PerSize::build(all.iter().map(Chunk::size), |size| {
        sub_forward(ctx, c, &s, &sub_params, input, size, mode)
    })?;
    let mut steps = Vec::new();
    if let Some(pool) = &pool {
        steps.extend(pool.forward(input));
    }
    for ch in &all {
        let sub = subs.get(ch.size());
        steps.extend(chunk_forward(
            &mut sub_params,
            c,
            &s,
            input,
            pool.as_ref(),
            sub,
            ch,
        ));
        if ch.ny < s.out_height {
            steps.extend(out_rows(
                "output band out",
                c,
                &output,
                &sub.output,
                ch,
                ch.o0,
                Dir::Out,
            ));
            if ch.o0 == 0 {
                steps.extend(out_rows(
                    "region band out",
                    c,
                    &region,
                    &sub.region,
                    ch,
                    0,
                    Dir::Out,
                ));
                steps.extend(out_rows(
                    "guide band out",
                    c,
                    &guide,
                    &sub.guide,
                    ch,
                    0,
                    Dir::Out,
                ));
            }
            continue;
        }
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
    Ok(ForwardPlan {
        shape: s,
        mode,
        input: input.clone(),
        guide,
        region,
        output,
        program: Program { steps },
        ..subs.take(last_size(&all))
    })
}

/// The pool stage of a row split (`rows`), else `None`.
pub(super) fn pool_stage(
    ctx: &GpuContext,
    c: &DrConvConfig,
    s: &ForwardShape,
    rows: bool,
) -> Result<Option<PoolStage>> {
    rows.then(|| PoolStage::build(ctx, c, s)).transpose()
}

/// The forward sub-plan of chunks of `nb` samples, `no` output channels and `ny` output rows of
/// `input`.
pub(super) fn sub_forward(
    ctx: &GpuContext,
    c: &DrConvConfig,
    s: &ForwardShape,
    sub_params: &SubParams,
    input: &GpuTensor,
    (nb, no, ny): Size,
    mode: Mode,
) -> Result<ForwardPlan> {
    let x = chunk_input(ctx, c, s, input, nb, ny)?;
    ForwardPlan::build_part(ctx, &with_out_channels(c, no), sub_params.get(no), &x, mode)
}

/// The steps that run chunk `ch` of the forward of `input` with its sub-plan `sub`: the chunk's
/// conv_kernel.3 rows (unless its sub-layer holds them) and samples (or input band and pooled
/// map, from `pool`) copied in, then the sub-plan (without its pool, for a band).
pub(super) fn chunk_forward(
    sub_params: &mut SubParams,
    c: &DrConvConfig,
    s: &ForwardShape,
    input: &GpuTensor,
    pool: Option<&PoolStage>,
    sub: &ForwardPlan,
    ch: &Chunk,
) -> Vec<Step> {
    let mut steps = sub_params.load(ch);
    if let (true, Some(pool)) = (ch.ny < s.out_height, pool) {
        steps.extend(input_in(c, input, &sub.input, ch));
        let bytes = sub.pooled.numel() as u64 * 4;
        let (src, dst) = (&pool.pooled.buffer, &sub.pooled.buffer);
        steps.push(Step::copy(
            "pooled in",
            src,
            ch.b0 as u64 * bytes,
            dst,
            0,
            bytes,
        ));
        let own_steps = sub.program.steps.iter().filter(|st| st.label != POOL_STEP);
        steps.extend(own_steps.cloned());
        return steps;
    }
    if ch.nb < s.batch {
        steps.push(samples("input chunk in", input, &sub.input, ch, Dir::In));
    }
    steps.extend(sub.program.steps.iter().cloned());
    steps
}

/// The input of a chunk's sub-plan: the full input when the chunk has every sample and row
/// (bound directly: it fits, the split checked), else a buffer the program copies the samples
/// (or the band's rows) into.
fn chunk_input(
    ctx: &GpuContext,
    c: &DrConvConfig,
    s: &ForwardShape,
    input: &GpuTensor,
    nb: usize,
    ny: usize,
) -> Result<GpuTensor> {
    if ny < s.out_height {
        let rows = band(c, ny).in_rows;
        return ctx.empty("input band", &[nb, c.in_channels, rows, s.width]);
    }
    if nb == s.batch {
        return Ok(input.clone());
    }
    ctx.empty("input chunk", &[nb, c.in_channels, s.height, s.width])
}
