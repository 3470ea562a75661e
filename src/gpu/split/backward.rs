//! The split backward: per chunk, the training forward recomputed, the chunk's `grad_output`
//! copied in, its backward run and its gradients summed into the layer's.

use super::band::band;
use super::channels::{kernel3_of, kernel3_rows, shared_grads, SubParams};
use super::chunks::{chunks, last_size, Chunk, PerSize, Size};
use super::copies::{samples, slices, whole, Dir};
use super::forward::{chunk_forward, pool_stage, sub_forward};
use super::plan::{with_out_channels, Split as SplitSizes};
use super::pool::PoolStage;
use super::rows::{add_input_grad, out_rows};
use crate::config::{DrConvConfig, ForwardShape, Mode};
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
/// ranges.
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

/// The full tensors and the per-size sums a split backward adds chunk results into.
struct Sums {
    /// Channel split: grad.x of a batch chunk (or band) summed over its channel chunks, per
    /// `(nb, ny)`.
    x: PerSize<(usize, usize), Option<GpuTensor>>,
    /// Row split: per band size, the scratch the full grad.x's band rows pass through.
    x_bands: PerSize<usize, Option<GpuTensor>>,
    /// Row split: a sample's pooled-map gradient summed over its chunks.
    pooled: Option<GpuTensor>,
}

/// What every part of one split backward reads.
struct Split<'a> {
    ctx: &'a GpuContext,
    c: &'a DrConvConfig,
    s: ForwardShape,
    fwd: &'a ForwardPlan,
    param_grads: &'a [GpuTensor; 6],
    /// Full batch, B x O x H' x W' and B x I x H x W.
    grad_output: GpuTensor,
    grad_x: GpuTensor,
    channel_split: bool,
    rows_split: bool,
}

/// The backward of the training forward `fwd` as sub-plans of `split`'s chunks
/// (`plan::backward_split`). Parameter gradients go to `param_grads`: the first chunk's are
/// copied there, the later ones added in chunk order (conv_kernel.3's per channel chunk, to its
/// rows).
pub fn backward(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    fwd: &ForwardPlan,
    param_grads: &[GpuTensor; 6],
    split: SplitSizes,
) -> Result<BackwardPlan> {
    let (c, s) = (config, fwd.shape);
    let sp = Split {
        ctx,
        c,
        s,
        fwd,
        param_grads,
        grad_output: ctx.empty_stored("grad_output", &s.output(c))?,
        grad_x: ctx.empty_stored("grad.x", &s.input(c))?,
        channel_split: split.channels < c.out_channels,
        rows_split: split.splits_rows(&s),
    };
    let batch_split = split.batch < s.batch;
    let all = chunks(split, &s, c, false);
    let pool = pool_stage(ctx, c, &s, sp.rows_split)?;
    let mut sub_params = SubParams::build(ctx, c, params, &all)?;
    let sums = sp.sums(&all)?;
    let subs = PerSize::build(all.iter().map(Chunk::size), |size| {
        sp.sub_backward(&sub_params, &sums, size)
    })?;
    // Channel split with batch or row split: each channel chunk's conv_kernel.3 gradients summed
    // over the batch chunks and bands (they fit one binding, the layer's may not), copied to
    // their rows at the end.
    let kernel3_sums = PerSize::build(all.iter().map(|ch| ch.o0), |o0| {
        if !(sp.channel_split && (batch_split || sp.rows_split)) {
            return Ok(None);
        }
        Kernel3Sums::build(ctx, c, &all, &subs, o0).map(Some)
    })?;
    let mut steps = Vec::new();
    if let Some(pool) = &pool {
        steps.extend(pool.forward(&fwd.input));
        // Bands add into grad.x (they overlap), the pool last.
        let bytes = sp.grad_x.numel() as u64 * 4;
        steps.push(Step::clear("grad.x zeros", &sp.grad_x.buffer, 0, bytes));
    }
    for (k, ch) in all.iter().enumerate() {
        let sub = subs.get(ch.size());
        steps.extend(chunk_forward(
            &mut sub_params,
            c,
            &s,
            &fwd.input,
            pool.as_ref(),
            &sub.fwd,
            ch,
        ));
        steps.extend(sp.chunk_backward(sub, ch));
        steps.extend(sp.input_grads(&sums, pool.as_ref(), sub, ch));
        steps.extend(sp.param_grads(sub, ch, k == 0, kernel3_sums.get(ch.o0).as_ref()));
    }
    for (o0, k3) in &kernel3_sums.items {
        if let Some(k3) = k3 {
            steps.extend(sp.grad_rows_out(k3.sums.each_ref(), (*o0, k3.no)));
        }
    }
    let last = subs.take(last_size(&all)).bwd;
    Ok(BackwardPlan::from_chunks(
        c,
        fwd,
        param_grads,
        last,
        (sp.grad_output, sp.grad_x),
        Program { steps },
    ))
}

impl Split<'_> {
    /// The sums the chunks add into (see [`Sums`]).
    fn sums(&self, all: &[Chunk]) -> Result<Sums> {
        let (ctx, c, s) = (self.ctx, self.c, &self.s);
        let in_rows = |ny: usize| match ny < s.out_height {
            true => band(c, ny).in_rows,
            false => s.height,
        };
        let x = PerSize::build(all.iter().map(|ch| (ch.nb, ch.ny)), |(nb, ny)| {
            if !self.channel_split {
                return Ok(None);
            }
            let shape = [nb, c.in_channels, in_rows(ny), s.width];
            ctx.empty("grad.x chunk sum", &shape).map(Some)
        })?;
        let x_bands = PerSize::build(all.iter().map(|ch| ch.ny), |ny| {
            if !self.rows_split {
                return Ok(None);
            }
            let shape = [1, c.in_channels, in_rows(ny), s.width];
            ctx.empty("grad.x band", &shape).map(Some)
        })?;
        let pooled = match self.rows_split {
            true => Some(ctx.empty(
                "grad.pooled sum",
                &[1, c.in_channels, c.kernel_size, c.kernel_size],
            )?),
            false => None,
        };
        Ok(Sums { x, x_bands, pooled })
    }

    /// One chunk size's sub-plans and the adds of their gradients into `sums` and the layer's.
    fn sub_backward(&self, sub_params: &SubParams, sums: &Sums, size: Size) -> Result<SubBackward> {
        let (ctx, c, s) = (self.ctx, self.c, &self.s);
        let (nb, no, ny) = size;
        let sc = with_out_channels(c, no);
        let input = &self.fwd.input;
        let fwd = sub_forward(ctx, c, s, sub_params, input, size, Mode::Training)?;
        let grads = param_grad_buffers(ctx, &sc)?;
        let bwd = BackwardPlan::build(ctx, &sc, sub_params.get(no), &fwd, &grads)?;
        let mut acc = Vec::new();
        for id in shared_grads(self.channel_split) {
            let (src, dst) = (&grads[id.index()], &self.param_grads[id.index()]);
            acc.extend(accumulate(ctx, "accumulate param grad", src, dst)?);
        }
        let x_sum = sums.x.get((nb, ny)).as_ref();
        let add_x = match x_sum {
            Some(sum) => accumulate(ctx, "accumulate grad.x", &bwd.grads.x, sum)?,
            None => Vec::new(),
        };
        let (add_band, add_pooled) = match (sums.x_bands.get(ny), &sums.pooled) {
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
    }

    /// The chunk's `grad_output` copied in, then its backward (without the pool backward, for a
    /// band: the pool runs once over the whole image).
    fn chunk_backward(&self, sub: &SubBackward, ch: &Chunk) -> Vec<Step> {
        let (c, gy) = (self.c, &sub.bwd.grad_output);
        let mut steps = Vec::new();
        if !self.rows_split {
            let whole_gy = &self.grad_output;
            steps.extend(slices("grad_output chunk in", whole_gy, gy, ch, Dir::In));
            steps.extend(sub.bwd.program.steps.iter().cloned());
            return steps;
        }
        // The band's discarded rows get a zero upstream gradient: they add nothing.
        let bytes = gy.numel() as u64 * 4;
        steps.push(Step::clear("grad_output band zeros", &gy.buffer, 0, bytes));
        let label = "grad_output band in";
        steps.extend(out_rows(
            label,
            c,
            &self.grad_output,
            gy,
            ch,
            ch.o0,
            Dir::In,
        ));
        let own = sub.bwd.program.steps.iter();
        steps.extend(own.filter(|st| st.label != POOL_GRAD_STEP).cloned());
        steps
    }

    /// The chunk's `grad.x` (once summed over the channel chunks) into the full one, and for a
    /// row split its pooled-map gradient, whose pool backward runs after a sample's last chunk.
    fn input_grads(
        &self,
        sums: &Sums,
        pool: Option<&PoolStage>,
        sub: &SubBackward,
        ch: &Chunk,
    ) -> Vec<Step> {
        let (c, s, grad_x) = (self.c, &self.s, &self.grad_x);
        let mut steps = Vec::new();
        let last_channels = ch.o0 + ch.no == c.out_channels;
        let dx = &sub.bwd.grads.x;
        let summed = match sums.x.get((ch.nb, ch.ny)) {
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
        match (summed, sums.x_bands.get(ch.ny)) {
            (Some(_), Some(scratch)) => {
                steps.extend(add_input_grad(c, grad_x, scratch, &sub.add_band, ch));
            }
            (Some(done), None) => {
                steps.push(samples("grad.x chunk out", grad_x, done, ch, Dir::Out))
            }
            (None, _) => {}
        }
        if let (Some(pool), Some(sum)) = (pool, &sums.pooled) {
            if ch.y0 == 0 && ch.o0 == 0 {
                steps.push(whole("grad.pooled sum", &sub.bwd.grads.pooled, sum));
            } else {
                steps.extend(sub.add_pooled.iter().cloned());
            }
            if ch.y0 + ch.ny == s.out_height && last_channels {
                steps.extend(pool.backward(ch.b0, sum, grad_x));
            }
        }
        steps
    }

    /// The chunk's parameter gradients into the layer's: the first chunk's copied, later ones
    /// added; conv_kernel.3's per channel chunk to its rows (directly, or through `k3`'s sums).
    fn param_grads(
        &self,
        sub: &SubBackward,
        ch: &Chunk,
        first: bool,
        k3: Option<&Kernel3Sums>,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        if first {
            for id in shared_grads(self.channel_split) {
                let (src, dst) = (&sub.grads[id.index()], &self.param_grads[id.index()]);
                steps.push(whole("param grad", src, dst));
            }
        } else {
            steps.extend(sub.accumulate.iter().cloned());
        }
        if self.channel_split {
            match k3 {
                // One chunk per channel chunk: its conv_kernel.3 gradients are final.
                None => steps.extend(self.grad_rows_out(kernel3_of(&sub.grads), (ch.o0, ch.no))),
                Some(k3) => steps.extend(k3.add(ch, sub)),
            }
        }
        steps
    }

    /// A channel chunk's final conv_kernel.3 gradients to their rows of the layer's.
    fn grad_rows_out(&self, part: [&GpuTensor; 2], outs: (usize, usize)) -> Vec<Step> {
        let full = kernel3_of(self.param_grads);
        kernel3_rows(
            "conv_kernel.3 grad rows out",
            self.c,
            full,
            part,
            outs,
            Dir::Out,
        )
    }
}
