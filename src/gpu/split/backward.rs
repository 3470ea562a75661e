//! The split backward: per chunk, the training forward recomputed, the chunk's `grad_output`
//! copied in, its backward run and its gradients summed into the layer's.

use super::channels::{kernel3_of, kernel3_rows, shared_grads, SubParams};
use super::copies::{samples, slices, whole, Dir};
use super::forward::{chunk_forward, sub_forward};
use super::{chunks, last_size, Chunk, PerSize};
use crate::config::DrConvConfig;
use crate::error::Result;
use crate::gpu::backward::{param_grad_buffers, BackwardPlan};
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::forward::{ForwardPlan, Mode};
use crate::gpu::limits::{self, with_out_channels};
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

/// Channel and batch split: one channel chunk's conv_kernel.3 gradients summed over the batch
/// chunks.
struct Kernel3Sums {
    no: usize,
    /// Weight and bias gradient sums.
    sums: [GpuTensor; 2],
    /// Per batch-chunk size `nb`, the adds of its sub-plan's gradients into `sums`.
    adds: Vec<(usize, Vec<Step>)>,
}

impl Kernel3Sums {
    /// The sums of the channel chunk at `o0`, and the adds into them of every batch-chunk size's
    /// sub-plan with those channels.
    fn build(
        ctx: &GpuContext,
        c: &DrConvConfig,
        all: &[Chunk],
        subs: &PerSize<(usize, usize), SubBackward>,
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
        for (nb, no) in all.iter().map(Chunk::size) {
            if no != ch.no || adds.iter().any(|(have, _)| *have == nb) {
                continue;
            }
            let sub = subs.get((nb, no));
            let mut steps = Vec::new();
            for (part, sum) in kernel3_of(&sub.grads).into_iter().zip(&sums) {
                steps.extend(accumulate(ctx, "accumulate conv_kernel.3 grad", part, sum)?);
            }
            adds.push((nb, steps));
        }
        Ok(Kernel3Sums {
            no: ch.no,
            sums,
            adds,
        })
    }

    /// Chunk `ch`'s conv_kernel.3 gradients (of its sub-plans `sub`) into the sums: the first
    /// batch chunk's copied, the later ones added.
    fn add(&self, ch: &Chunk, sub: &SubBackward) -> Vec<Step> {
        if ch.b0 == 0 {
            return kernel3_of(&sub.grads)
                .into_iter()
                .zip(&self.sums)
                .map(|(part, sum)| whole("conv_kernel.3 grad sum", part, sum))
                .collect();
        }
        let (_, add) = self
            .adds
            .iter()
            .find(|(nb, _)| *nb == ch.nb)
            .expect("adds per batch size");
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
    let mut sub_params = SubParams::build(ctx, c, params, &all)?;
    // Channel split: grad.x of a batch chunk summed over its channel chunks.
    let x_sums = PerSize::build(all.iter().map(|ch| ch.nb), |nb| {
        if !channel_split {
            return Ok(None);
        }
        let shape = [nb, c.in_channels, s.height, s.width];
        ctx.empty("grad.x chunk sum", &shape).map(Some)
    })?;
    let subs = PerSize::build(all.iter().map(Chunk::size), |size| {
        let (nb, no) = size;
        let sc = with_out_channels(c, no);
        let fwd = sub_forward(ctx, c, &s, &sub_params, &fwd.input, size, Mode::Training)?;
        let grads = param_grad_buffers(ctx, &sc)?;
        let bwd = BackwardPlan::build(ctx, &sc, sub_params.get(no), &fwd, &grads)?;
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
        Kernel3Sums::build(ctx, c, &all, &subs, o0).map(Some)
    })?;

    // A channel chunk's final conv_kernel.3 gradients to their rows of the layer's.
    let grad_rows_out = |part, outs| {
        let full = kernel3_of(param_grads);
        kernel3_rows("conv_kernel.3 grad rows out", c, full, part, outs, Dir::Out)
    };
    let mut steps = Vec::new();
    for (k, ch) in all.iter().enumerate() {
        let sub = subs.get(ch.size());
        steps.extend(chunk_forward(&mut sub_params, &s, &fwd.input, &sub.fwd, ch));
        steps.extend(slices(
            "grad_output chunk in",
            &grad_output,
            &sub.bwd.grad_output,
            ch,
            Dir::In,
        ));
        steps.extend(sub.bwd.program.steps.iter().cloned());
        let dx = &sub.bwd.grads.x;
        match x_sums.get(ch.nb) {
            None => steps.push(samples("grad.x chunk out", &grad_x, dx, ch, Dir::Out)),
            Some(sum) => {
                if ch.o0 == 0 {
                    steps.push(whole("grad.x sum", dx, sum));
                } else {
                    steps.extend(sub.add_x.iter().cloned());
                }
                if ch.o0 + ch.no == c.out_channels {
                    steps.push(samples("grad.x chunk out", &grad_x, sum, ch, Dir::Out));
                }
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
            // One batch chunk: the chunk's conv_kernel.3 gradients are final.
            None => steps.extend(grad_rows_out(kernel3_of(&sub.grads), (ch.o0, ch.no))),
            Some(k3) => steps.extend(k3.add(ch, sub)),
        }
    }
    for (o0, k3) in &kernel3_sums.items {
        if let Some(k3) = k3 {
            steps.extend(grad_rows_out(k3.sums.each_ref(), (*o0, k3.no)));
        }
    }
    Ok(Some(SplitBackward {
        grad_output,
        grad_x,
        program: Program { steps },
        last: subs.take(last_size(&all)).bwd,
    }))
}
