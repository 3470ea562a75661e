//! The split backward: per chunk, the training forward recomputed, the chunk's `grad_output`
//! copied in, its backward run and its gradients summed into the layer's.

use super::band::band;
use super::channels::{kernel3_of, kernel3_rows, shared_grads, SubParams};
use super::chunks::{chunks, last_size, Chunk, PerSize, Size};
use super::copies::{samples, slices, whole, Dir};
use super::forward::{chunk_forward, pool_stage, sub_forward};
use super::plan::{with_out_channels, Split};
use super::rows::{add_input_grad, out_rows};
use crate::config::{DrConvConfig, Mode};
use crate::error::Result;
use crate::gpu::backward::{param_grad_buffers, BackwardPlan, POOL_GRAD_STEP};
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::forward::ForwardPlan;
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Dims, Program, Step};
use crate::gpu::shaders;
use crate::params::ParamId;

/// The parameter gradients of a layer, one buffer each. Only `max_buffer_size` limits them: an
/// unsplit backward binds them whole (its limits check covers them), a plan split over output
/// channels copies conv_kernel.3's gradient in row slices, and the optimizer binds them in
/// windows.
pub fn layer_param_grad_buffers(ctx: &GpuContext, config: &DrConvConfig) -> Result<[GpuTensor; 6]> {
    crate::gpu::backward::grad_buffers_with(config, |name, shape| ctx.empty_stored(name, shape))
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
    /// Row split: adds the band's `grad.x` (summed over channel chunks) into the scratch that the
    /// full `grad.x`'s band rows pass through.
    add_band: Vec<Step>,
    /// Row split: adds the chunk's pooled-map gradient into its sample's sum.
    add_pooled: Vec<Step>,
}

/// Channel and batch split: one channel chunk's conv_kernel.3 gradients summed over the batch
/// chunks.
struct Kernel3Sums {
    no: usize,
    /// Weight and bias gradient sums.
    sums: [GpuTensor; 2],
    /// Per batch-chunk and band size `(nb, ny)`, the adds of its sub-plan's gradients into `sums`.
    adds: Vec<((usize, usize), Vec<Step>)>,
}

impl Kernel3Sums {
    /// The sums of the channel chunk at `o0`, and the adds into them of every batch-chunk size's
    /// sub-plan with those channels.
    fn build(
        ctx: &GpuContext,
        c: &DrConvConfig,
        all: &[Chunk],
        subs: &PerSize<Size, SubBackward>,
        o0: usize,
    ) -> Result<Self> {
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
        let mut adds = Vec::new();
        for (nb, no, ny) in all.iter().map(Chunk::size) {
            if no != ch.no || adds.iter().any(|(have, _)| *have == (nb, ny)) {
                continue;
            }
            let sub = subs.get((nb, no, ny));
            let mut steps = Vec::new();
            for (part, sum) in kernel3_of(&sub.grads).into_iter().zip(&sums) {
                steps.extend(accumulate(ctx, "accumulate conv_kernel.3 grad", part, sum)?);
            }
            adds.push(((nb, ny), steps));
        }
        Ok(Kernel3Sums {
            no: ch.no,
            sums,
            adds,
        })
    }

    /// Chunk `ch`'s conv_kernel.3 gradients (of its sub-plans `sub`) into the sums: the first
    /// batch chunk's (and band's) copied, the later ones added.
    fn add(&self, ch: &Chunk, sub: &SubBackward) -> Vec<Step> {
        if ch.b0 == 0 && ch.y0 == 0 {
            return kernel3_of(&sub.grads)
                .into_iter()
                .zip(&self.sums)
                .map(|(part, sum)| whole("conv_kernel.3 grad sum", part, sum))
                .collect();
        }
        let (_, add) = self
            .adds
            .iter()
            .find(|(size, _)| *size == (ch.nb, ch.ny))
            .expect("adds per batch and band size");
        add.clone()
    }
}

/// The steps adding all of `src` into `dst`.
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
        &[("src", &src.buffer), ("dst", &dst.buffer)],
        src.numel() as u64,
    )
}

/// The backward of the training forward `fwd` as sub-plans of `split`'s chunks
/// (`plan::backward_split`). Parameter gradients go to
/// `param_grads`: the first chunk's are copied there, the later ones added in chunk order
/// (conv_kernel.3's per channel chunk, to its rows).
pub fn backward(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    fwd: &ForwardPlan,
    param_grads: &[GpuTensor; 6],
    split: Split,
) -> Result<BackwardPlan> {
    let (c, s) = (config, fwd.shape);
    let rows_split = split.splits_rows(&s);
    let (batch_split, channel_split) = (split.batch < s.batch, split.channels < c.out_channels);
    let grad_output = ctx.empty_stored("grad_output", &s.output(c))?;
    let grad_x = ctx.empty_stored("grad.x", &s.input(c))?;
    let all = chunks(split, &s, c, false);
    let pool = pool_stage(ctx, c, &s, rows_split)?;
    let mut sub_params = SubParams::build(ctx, c, params, &all)?;
    let in_rows = |ny: usize| match ny < s.out_height {
        true => band(c, ny).in_rows,
        false => s.height,
    };
    // Channel split: grad.x of a batch chunk (or band) summed over its channel chunks.
    let x_sums = PerSize::build(all.iter().map(|ch| (ch.nb, ch.ny)), |(nb, ny)| {
        if !channel_split {
            return Ok(None);
        }
        let shape = [nb, c.in_channels, in_rows(ny), s.width];
        ctx.empty("grad.x chunk sum", &shape).map(Some)
    })?;
    // Row split: per band size, the scratch the full grad.x's band rows pass through.
    let x_bands = PerSize::build(all.iter().map(|ch| ch.ny), |ny| {
        if !rows_split {
            return Ok(None);
        }
        let shape = [1, c.in_channels, in_rows(ny), s.width];
        ctx.empty("grad.x band", &shape).map(Some)
    })?;
    // Row split: a sample's pooled-map gradient summed over its chunks.
    let pooled_sum = match rows_split {
        true => Some(ctx.empty(
            "grad.pooled sum",
            &[1, c.in_channels, c.kernel_size, c.kernel_size],
        )?),
        false => None,
    };
    let subs = PerSize::build(all.iter().map(Chunk::size), |size| {
        let (nb, no, ny) = size;
        let sc = with_out_channels(c, no);
        let fwd = sub_forward(ctx, c, &s, &sub_params, &fwd.input, size, Mode::Training)?;
        let grads = param_grad_buffers(ctx, &sc)?;
        let bwd = BackwardPlan::build(ctx, &sc, sub_params.get(no), &fwd, &grads)?;
        let mut acc = Vec::new();
        for id in shared_grads(channel_split) {
            let (src, dst) = (&grads[id.index()], &param_grads[id.index()]);
            acc.extend(accumulate(ctx, "accumulate param grad", src, dst)?);
        }
        let x_sum = x_sums.get((nb, ny)).as_ref();
        let add_x = match x_sum {
            Some(sum) => accumulate(ctx, "accumulate grad.x", &bwd.grads.x, sum)?,
            None => Vec::new(),
        };
        let (add_band, add_pooled) = match (x_bands.get(ny), &pooled_sum) {
            (Some(scratch), Some(sum)) => (
                accumulate(
                    ctx,
                    "accumulate grad.x band",
                    x_sum.unwrap_or(&bwd.grads.x),
                    scratch,
                )?,
                accumulate(ctx, "accumulate grad.pooled", &bwd.grads.pooled, sum)?,
            ),
            _ => (Vec::new(), Vec::new()),
        };
        Ok(SubBackward {
            fwd,
            bwd,
            grads,
            accumulate: acc,
            add_x,
            add_band,
            add_pooled,
        })
    })?;
    // Channel split with batch or row split: each channel chunk's conv_kernel.3 gradients summed
    // over the batch chunks and bands (they fit one binding, the layer's may not), copied to
    // their rows at the end.
    let kernel3_sums = PerSize::build(all.iter().map(|ch| ch.o0), |o0| {
        if !(channel_split && (batch_split || rows_split)) {
            return Ok(None);
        }
        Kernel3Sums::build(ctx, c, &all, &subs, o0).map(Some)
    })?;

    // A channel chunk's final conv_kernel.3 gradients to their rows of the layer's.
    let grad_rows_out = |part, outs| {
        let full = kernel3_of(param_grads);
        kernel3_rows("conv_kernel.3 grad rows out", c, full, part, outs, Dir::Out)
    };
    let mut steps = Vec::new();
    if let Some(pool) = &pool {
        steps.extend(pool.forward(&fwd.input));
        // Bands add into grad.x (they overlap), the pool last.
        let bytes = grad_x.numel() as u64 * 4;
        steps.push(Step::clear("grad.x zeros", &grad_x.buffer, 0, bytes));
    }
    for (k, ch) in all.iter().enumerate() {
        let sub = subs.get(ch.size());
        let (fwd_plan, gy) = (&sub.fwd, &sub.bwd.grad_output);
        steps.extend(chunk_forward(
            &mut sub_params,
            c,
            &s,
            &fwd.input,
            pool.as_ref(),
            fwd_plan,
            ch,
        ));
        if rows_split {
            // The band's discarded rows get a zero upstream gradient: they add nothing.
            steps.push(Step::clear(
                "grad_output band zeros",
                &gy.buffer,
                0,
                gy.numel() as u64 * 4,
            ));
            steps.extend(out_rows(
                "grad_output band in",
                c,
                &grad_output,
                gy,
                ch,
                ch.o0,
                Dir::In,
            ));
            let own_steps = sub
                .bwd
                .program
                .steps
                .iter()
                .filter(|st| st.label != POOL_GRAD_STEP);
            steps.extend(own_steps.cloned());
        } else {
            steps.extend(slices(
                "grad_output chunk in",
                &grad_output,
                gy,
                ch,
                Dir::In,
            ));
            steps.extend(sub.bwd.program.steps.iter().cloned());
        }
        let last_channels = ch.o0 + ch.no == c.out_channels;
        let dx = &sub.bwd.grads.x;
        // The chunk's grad.x once summed over the channel chunks.
        let summed = match x_sums.get((ch.nb, ch.ny)) {
            None => Some(dx),
            Some(sum) => {
                if ch.o0 == 0 {
                    steps.push(whole("grad.x sum", dx, sum));
                } else {
                    steps.extend(sub.add_x.iter().cloned());
                }
                last_channels.then_some(sum)
            }
        };
        match (summed, x_bands.get(ch.ny)) {
            (Some(_), Some(scratch)) => {
                steps.extend(add_input_grad(c, &grad_x, scratch, &sub.add_band, ch));
            }
            (Some(done), None) => {
                steps.push(samples("grad.x chunk out", &grad_x, done, ch, Dir::Out))
            }
            (None, _) => {}
        }
        if let (Some(pool), Some(sum)) = (&pool, &pooled_sum) {
            if ch.y0 == 0 && ch.o0 == 0 {
                steps.push(whole("grad.pooled sum", &sub.bwd.grads.pooled, sum));
            } else {
                steps.extend(sub.add_pooled.iter().cloned());
            }
            if ch.y0 + ch.ny == s.out_height && last_channels {
                steps.extend(pool.backward(ch.b0, sum, &grad_x));
            }
        }
        if k == 0 {
            for id in shared_grads(channel_split) {
                let (src, dst) = (&sub.grads[id.index()], &param_grads[id.index()]);
                steps.push(whole("param grad", src, dst));
            }
        } else {
            steps.extend(sub.accumulate.iter().cloned());
        }
        if !channel_split {
            continue;
        }
        match kernel3_sums.get(ch.o0) {
            // One chunk per channel chunk: its conv_kernel.3 gradients are final.
            None => steps.extend(grad_rows_out(kernel3_of(&sub.grads), (ch.o0, ch.no))),
            Some(k3) => steps.extend(k3.add(ch, sub)),
        }
    }
    for (o0, k3) in &kernel3_sums.items {
        if let Some(k3) = k3 {
            steps.extend(grad_rows_out(k3.sums.each_ref(), (*o0, k3.no)));
        }
    }
    let last = subs.take(last_size(&all)).bwd;
    Ok(BackwardPlan::from_chunks(
        c,
        fwd,
        param_grads,
        last,
        (grad_output, grad_x),
        Program { steps },
    ))
}
