//! The backward plan of one training forward plan: it reads the forward's saved tensors (corr,
//! guide, region map, sigmoid, pooled, kernel), owns the gradient buffers, and binds every step
//! once, so a backward records one compute pass and allocates nothing.
//!
//! Determinism: every gradient element is written by exactly one invocation that loops over its
//! contributors in a fixed order (no atomics), and dx's three paths are added by three dispatches
//! in a fixed order. The same inputs give bit-identical gradients.

use crate::config::{DrConvConfig, ForwardShape, Mode};
use crate::error::{DrConvError, Result};
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::decide::Target;
use crate::gpu::forward::ForwardPlan;
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Dims, Program};
use crate::gpu::shaders;
use crate::gpu::stages::backward::{GemmGrad, GradBuffers, ListBackward, Saved};
use crate::gpu::stages::{partials, Stages};
use crate::params::ParamId;
use crate::tensor::numel;
use crate::trace::Gradients;

pub use crate::gpu::stages::backward::POOL_GRAD_STEP;

/// The gradients of one backward, on the device. They alias the plan's buffers: the next
/// backward of the same layer overwrites them (the parameter gradients are shared by all plans).
#[derive(Debug, Clone)]
pub struct GpuGradients {
    /// dL/dx, B x I x H x W.
    pub x: GpuTensor,
    /// dL/dparam in state_dict order (index with `ParamId::index`).
    pub params: [GpuTensor; 6],
    /// dL/d(pooled input) (a split plan's: its last chunk's).
    pub pooled: GpuTensor,
    /// dL/d(kernel logits) (a split plan's: its last chunk's).
    pub kernel_logits: GpuTensor,
    /// dL/d(sigmoid of the logits) (a split plan's: its last chunk's).
    pub sigmoid: GpuTensor,
    /// dL/d(generated kernels) (a split plan's: its last chunk's).
    pub kernel: GpuTensor,
    /// dL/d(guide logits) (a split plan's: its last chunk's).
    pub guide: GpuTensor,
}

/// The region-list backward's buffers; the training forward's channel-last x and guide weights,
/// where it made them (same layouts), are reused rather than transposed again.
fn list_buffers(
    ctx: &GpuContext,
    c: &DrConvConfig,
    s: &ForwardShape,
    fwd: &ForwardPlan,
    entry: &'static str,
) -> Result<ListBackward> {
    let kk = c.kernel_size * c.kernel_size;
    let shared = fwd.channel_last.as_ref();
    Ok(ListBackward {
        entry,
        order: ctx.empty("grad.region_order", &s.region())?,
        starts: ctx.empty("grad.region_starts", &[s.batch, c.region_num + 1])?,
        x_t: match shared {
            Some(cl) => cl.x_t.clone(),
            None => ctx.empty("grad.x_t", &s.input(c))?,
        },
        gy_t: ctx.empty("grad.gy_t", &s.output(c))?,
        kernel_t: ctx.empty("grad.kernel_t", &s.kernel(c))?,
        guide_w_t: match shared {
            Some(cl) => cl.guide_w_t.clone(),
            None => ctx.empty("grad.guide_w_t", &[kk, c.region_num, c.in_channels])?,
        },
        big_g: ctx.empty("grad.big_g", &s.guide(c))?,
        shared: shared.is_some(),
    })
}

/// One buffer per parameter for its gradient, shared by every backward plan of a layer (they do
/// not depend on the input shape), so an optimizer binds them once.
pub fn param_grad_buffers(ctx: &GpuContext, config: &DrConvConfig) -> Result<[GpuTensor; 6]> {
    grad_buffers_with(config, |name, shape| ctx.empty(name, shape))
}

/// One gradient buffer per parameter, in `ParamId::ALL` order, made by `alloc(name, shape)`.
pub fn grad_buffers_with(
    config: &DrConvConfig,
    mut alloc: impl FnMut(&'static str, &[usize]) -> Result<GpuTensor>,
) -> Result<[GpuTensor; 6]> {
    let mut out = Vec::with_capacity(6);
    for id in ParamId::ALL {
        out.push(alloc(id.name(), &config.param_shape(id))?);
    }
    Ok(out.try_into().expect("six parameters"))
}

/// Buffers and program of one backward.
#[derive(Debug)]
pub struct BackwardPlan {
    pub shape: ForwardShape,
    /// dL/doutput, B x O x H' x W'. Callers copy the upstream gradient here or write it directly
    /// (the trainer's loss does).
    pub grad_output: GpuTensor,
    pub grads: GpuGradients,
    /// Guide weight/bias partial sums, chunks x (r*I*k*k + r).
    guide_partial: GpuTensor,
    /// CPU adapters: the correlation backward's pixel lists and channel-last copies.
    cpu_corr: Option<ListBackward>,
    /// The GPU family: the kernel gradient's pixel lists and K slices.
    gemm_grad: Option<GemmGrad>,
    /// dcorr = grad_output masked to the selected region, B x r x O x H' x W'; only made (and
    /// written, by `inspect`) once asked for, since nothing else needs it.
    pub corr: Option<GpuTensor>,
    inspect: Program,
    pub program: Program,
    dims: Dims,
    region: GpuTensor,
}

/// The every-region correlation of a training forward, which the backward needs; an inference
/// plan is refused.
pub(crate) fn training_corr(fwd: &ForwardPlan) -> Result<&GpuTensor> {
    match (&fwd.corr, fwd.mode) {
        (Some(c), Mode::Training) => Ok(c),
        _ => Err(DrConvError::Config(
            "the backward needs a training-mode forward (Mode::Training keeps every \
             region's correlation); this plan is an inference plan"
                .into(),
        )),
    }
}

impl BackwardPlan {
    /// Binds the unsplit backward of `fwd` (a training plan) to fresh gradient buffers and
    /// `param_grads`. `crate::gpu::plan::backward` is the entry: it checked the shape against
    /// the device's limits and decided that no split is needed.
    pub(crate) fn build(
        ctx: &GpuContext,
        config: &DrConvConfig,
        params: &GpuParams,
        fwd: &ForwardPlan,
        param_grads: &[GpuTensor; 6],
    ) -> Result<Self> {
        let corr = training_corr(fwd)?;
        let (c, s) = (config, &fwd.shape);
        let grad_output = ctx.empty("grad_output", &s.output(c))?;
        let grads = GpuGradients {
            x: ctx.empty("grad.x", &s.input(c))?,
            params: param_grads.clone(),
            pooled: ctx.empty("grad.pooled", &s.pooled(c))?,
            kernel_logits: ctx.empty("grad.kernel_logits", &s.logits(c))?,
            sigmoid: ctx.empty("grad.sigmoid", &s.logits(c))?,
            kernel: ctx.empty("grad.kernel", &s.kernel(c))?,
            guide: ctx.empty("grad.guide", &s.guide(c))?,
        };
        let d = crate::gpu::decide::decide(&Target::of(ctx), c, s, Mode::Training, false);
        let mut st = Stages::new(ctx, c, s, &d, params);
        let chunks = st.guide_chunks();
        st.dims = st.dims.guide_chunks(d.guide_chunk, chunks);
        let kk = c.kernel_size * c.kernel_size;
        let guide_elems = c.region_num * c.in_channels * kk + c.region_num;
        let guide_partial = ctx.empty("grad.guide_partial", &[chunks, guide_elems])?;
        let gemm_grad = match d.kernel_grad_slices {
            Some(slices) => Some(GemmGrad {
                order: ctx.empty("grad.region_order", &s.region())?,
                starts: ctx.empty("grad.region_starts", &[s.batch, c.region_num + 1])?,
                parts: partials(ctx, "grad.kernel_slices", slices, numel(&s.kernel(c)))?,
                big_g: ctx.empty("grad.big_g", &s.guide(c))?,
            }),
            None => None,
        };
        let cpu_corr = match d.backward_lists {
            Some(entry) => Some(list_buffers(ctx, c, s, fwd, entry)?),
            None => None,
        };
        let saved = Saved {
            input: &fwd.input,
            pooled: &fwd.pooled,
            sigmoid: &fwd.sigmoid,
            kernel: &fwd.kernel,
            corr,
            guide: &fwd.guide,
            region: &fwd.region,
        };
        let g = GradBuffers {
            output: &grad_output,
            x: &grads.x,
            pooled: &grads.pooled,
            kernel_logits: &grads.kernel_logits,
            sigmoid: &grads.sigmoid,
            kernel: &grads.kernel,
            guide: &grads.guide,
            guide_partial: &guide_partial,
            params: param_grads,
        };
        // dx is assigned by the correlation's input gradient, then the guide conv's and the
        // pool's add to it, in this fixed order.
        let mut steps = match &cpu_corr {
            Some(t) => {
                let mut steps = st.corr_grads_lists(&saved, &g, t)?;
                steps.extend(st.guide_grad_lists(&saved, &g, t)?);
                steps.extend(st.guide_conv_lists(&g, t)?);
                steps
            }
            None => {
                let mut steps = st.corr_grads_gather(&saved, &g, gemm_grad.as_ref())?;
                steps.extend(st.guide_conv_gather(&saved, &g)?);
                steps
            }
        };
        steps.extend(st.guide_reduce(&g)?);
        steps.extend(st.kernel_gen_grads(&saved, &g)?);
        steps.extend(st.logits_grads(&saved, &g)?);
        steps.extend(st.pool_grad(&g)?);
        Ok(BackwardPlan {
            shape: fwd.shape,
            grad_output,
            grads,
            guide_partial,
            cpu_corr,
            gemm_grad,
            corr: None,
            inspect: Program::default(),
            program: Program { steps },
            dims: st.dims,
            region: fwd.region.clone(),
        })
    }

    /// A backward split over chunks: the full `grad_output` and `grad.x` and the parameter
    /// gradients its own, every other intermediate gradient the `last` chunk's plan's.
    pub(crate) fn from_chunks(
        config: &DrConvConfig,
        fwd: &ForwardPlan,
        param_grads: &[GpuTensor; 6],
        last: BackwardPlan,
        (grad_output, grad_x): (GpuTensor, GpuTensor),
        program: Program,
    ) -> Self {
        BackwardPlan {
            shape: fwd.shape,
            grad_output,
            grads: GpuGradients {
                x: grad_x,
                params: param_grads.clone(),
                ..last.grads.clone()
            },
            program,
            dims: Dims::new(config, &fwd.shape),
            region: fwd.region.clone(),
            ..last
        }
    }

    /// Makes the dcorr buffer and the step that writes it (run by `encode_inspect`).
    pub fn materialise_corr(&mut self, ctx: &GpuContext, config: &DrConvConfig) -> Result<()> {
        if self.corr.is_some() {
            return Ok(());
        }
        let dcorr = ctx.empty("grad.corr", &self.shape.corr(config))?;
        self.inspect.steps = ctx.steps(
            "corr_mask",
            &shaders::REGION_SELECT_BWD,
            "corr_mask",
            self.dims,
            &[
                ("region", &self.region.buffer),
                ("gy", &self.grad_output.buffer),
                ("dcorr", &dcorr.buffer),
            ],
            dcorr.numel() as u64,
        )?;
        self.corr = Some(dcorr);
        Ok(())
    }

    /// Records the backward (one compute pass), reading `grad_output` and the forward's tensors.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        self.program.encode(encoder);
    }

    /// Records the inspection-only steps (dcorr), if `materialise_corr` made them.
    pub fn encode_inspect(&self, encoder: &mut wgpu::CommandEncoder) {
        if !self.inspect.is_empty() {
            self.inspect.encode(encoder);
        }
    }

    /// Every buffer the backward writes, parameter gradients included.
    pub fn outputs(&self) -> Vec<&GpuTensor> {
        let g = &self.grads;
        let mut v = vec![
            &g.x,
            &g.pooled,
            &g.kernel_logits,
            &g.sigmoid,
            &g.kernel,
            &g.guide,
            &self.guide_partial,
        ];
        if let Some(t) = &self.gemm_grad {
            v.extend([&t.order, &t.starts, &t.parts, &t.big_g]);
        }
        if let Some(t) = &self.cpu_corr {
            v.extend([&t.order, &t.starts, &t.gy_t, &t.kernel_t, &t.big_g]);
            if !t.shared {
                v.extend([&t.x_t, &t.guide_w_t]);
            }
        }
        v.extend(g.params.iter());
        v.extend(self.corr.as_ref());
        v
    }

    /// Fills every buffer the backward writes with NaN (tests: "not written" shows as NaN).
    pub fn poison(&self, ctx: &GpuContext) {
        for t in self.outputs() {
            ctx.fill(t, f32::NAN);
        }
    }

    /// Reads every gradient back (dcorr only if materialised).
    pub async fn read(&self, ctx: &GpuContext) -> Result<Gradients> {
        let g = &self.grads;
        let mut params: [Vec<f32>; 6] = Default::default();
        for id in ParamId::ALL {
            params[id.index()] = g.params[id.index()].read(ctx).await?.data;
        }
        let corr = match &self.corr {
            Some(c) => Some(c.read(ctx).await?),
            None => None,
        };
        Ok(Gradients {
            x: g.x.read(ctx).await?,
            params,
            pooled: g.pooled.read(ctx).await?,
            kernel_logits: g.kernel_logits.read(ctx).await?,
            sigmoid: g.sigmoid.read(ctx).await?,
            kernel: g.kernel.read(ctx).await?,
            corr,
            guide: g.guide.read(ctx).await?,
        })
    }
}
