//! The backward plan of one training forward plan: it reads the forward's saved tensors (corr,
//! guide, region map, sigmoid, pooled, kernel), owns the gradient buffers, and binds every step
//! once, so a backward records one compute pass and allocates nothing.
//!
//! Determinism: every gradient element is written by exactly one invocation that loops over its
//! contributors in a fixed order (no atomics), and dx's three paths are added by three dispatches
//! in a fixed order. The same inputs give bit-identical gradients.

use crate::config::{DrConvConfig, ForwardShape};
use crate::error::{DrConvError, Result};
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::forward::{ForwardPlan, Mode};
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Dims, Program};
use crate::gpu::shaders;
use crate::gpu::variants::{Backward, Variants};
use crate::params::ParamId;
use crate::trace::Gradients;

/// The label of the pool backward's steps (a row split leaves them out of its bands' sub-plans).
pub const POOL_GRAD_STEP: &str = "pool_input_grad";

/// Output positions per partial sum of the guide conv's weight gradient (first reduction stage).
pub const GUIDE_CHUNK: usize = 256;

/// Input channels per invocation of the correlation's kernel and input gradients (`KG_CH` and
/// `IG_CH` in shaders/correlation_bwd.wgsl).
const CORR_CHANNELS: usize = 4;

/// Input channels per invocation of the guide conv's input gradient and weight partial sums
/// (`GC_CH` in shaders/guide_conv_bwd.wgsl).
const GUIDE_CHANNELS: usize = 4;

/// The correlation backward's buffers on CPU adapters (see [`cpu_corr_entry`]).
#[derive(Debug)]
struct CpuCorr {
    /// `kernel_grad_lists8` or `kernel_grad_lists4`.
    entry: &'static str,
    /// Per-region pixel lists (`region_select.wgsl` `lists`), B x H'W' and B x (r+1), u32.
    order: GpuTensor,
    starts: GpuTensor,
    /// x as B x H x W x I, grad_output as B x H' x W' x O, the kernel as B x r x k*k x O x I.
    x_t: GpuTensor,
    gy_t: GpuTensor,
    kernel_t: GpuTensor,
    /// The guide conv's weight as k*k x r x I (its [r*I, k*k] transposed).
    guide_w_t: GpuTensor,
    /// The region selection's G values, B x r x H' x W' (`big_g_t` in region_select_bwd.wgsl).
    big_g: GpuTensor,
    /// `x_t` and `guide_w_t` are the training forward's (`ChannelLast`): it writes them.
    shared: bool,
}

/// The kernel gradient's entry of the region-list backward (`Backward::RegionLists`, CPU
/// adapters: llvmpipe runs a per-lane loop for every load, and keeps a dynamically indexed
/// private array in memory), or `None` for the gather entries. The CPU entries run per-region
/// GEMMs over pixel lists and read channel-last copies of x, grad_output and the kernel as
/// vec4s; 8 output channels per invocation unless that leaves fewer than 8 workgroups. The
/// guide conv and region selection backward take their CPU entries (`*_t`, `guide_grad_g`)
/// with it.
fn cpu_corr_entry(v: &Variants, c: &DrConvConfig, s: &ForwardShape) -> Option<&'static str> {
    if v.backward != Backward::RegionLists {
        return None;
    }
    let kk = c.kernel_size * c.kernel_size;
    let items8 = s.batch * c.out_channels.div_ceil(8) * (c.in_channels / 4) * kk;
    Some(if items8 >= 8 * crate::gpu::program::WG as usize {
        "kernel_grad_lists8"
    } else {
        "kernel_grad_lists4"
    })
}

/// The gradients of one backward, on the device. They alias the plan's buffers: the next
/// backward of the same layer overwrites them (the parameter gradients are shared by all plans).
#[derive(Debug, Clone)]
pub struct GpuGradients {
    /// dL/dx, B x I x H x W.
    pub x: GpuTensor,
    /// dL/dparam in state_dict order (index with `ParamId::index`).
    pub params: [GpuTensor; 6],
    pub pooled: GpuTensor,
    pub kernel_logits: GpuTensor,
    pub sigmoid: GpuTensor,
    pub kernel: GpuTensor,
    pub guide: GpuTensor,
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
    cpu_corr: Option<CpuCorr>,
    /// dcorr = grad_output masked to the selected region, B x r x O x H' x W'; only made (and
    /// written, by `inspect`) once asked for, since nothing else needs it.
    pub corr: Option<GpuTensor>,
    inspect: Program,
    pub program: Program,
    dims: Dims,
    region: GpuTensor,
}

impl BackwardPlan {
    /// Binds the backward of `fwd` (a training plan) to fresh gradient buffers and `param_grads`.
    pub fn build(
        ctx: &GpuContext,
        config: &DrConvConfig,
        params: &GpuParams,
        fwd: &ForwardPlan,
        param_grads: &[GpuTensor; 6],
    ) -> Result<Self> {
        let corr = match (&fwd.corr, fwd.mode) {
            (Some(c), Mode::Training) => c,
            _ => {
                return Err(DrConvError::Config(
                    "the backward needs a training-mode forward (Mode::Training keeps every \
                     region's correlation); this plan is an inference plan"
                        .into(),
                ))
            }
        };
        // Beyond the device's binding limits: sub-plans over batch and output-channel chunks
        // (src/gpu/split/), the full gradients theirs, the other intermediates the last chunk's.
        if let Some(split) = crate::gpu::split::backward(ctx, config, params, fwd, param_grads)? {
            let last = split.last;
            return Ok(BackwardPlan {
                shape: fwd.shape,
                grad_output: split.grad_output,
                grads: GpuGradients {
                    x: split.grad_x,
                    params: param_grads.clone(),
                    ..last.grads.clone()
                },
                program: split.program,
                dims: Dims::new(config, &fwd.shape),
                region: fwd.region.clone(),
                ..last
            });
        }
        let (c, s) = (config, &fwd.shape);
        // Every gradient tensor checked against the device limits before the first allocation.
        crate::gpu::limits::check_backward(&ctx.limits, c, s)?;
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
        let kk = c.kernel_size * c.kernel_size;
        let guide_elems = c.region_num * c.in_channels * kk + c.region_num;
        let chunks = (s.batch * s.out_height * s.out_width).div_ceil(GUIDE_CHUNK);
        let guide_partial = ctx.empty("grad.guide_partial", &[chunks, guide_elems])?;
        // The training forward's channel-last x and guide weights, where it made them (same
        // layouts), are reused rather than transposed again.
        let shared_t = fwd.channel_last.as_ref();
        let cpu_corr = match cpu_corr_entry(&ctx.variants(c), c, s) {
            Some(entry) => Some(CpuCorr {
                entry,
                order: ctx.empty("grad.region_order", &s.region())?,
                starts: ctx.empty("grad.region_starts", &[s.batch, c.region_num + 1])?,
                x_t: match shared_t {
                    Some(cl) => cl.x_t.clone(),
                    None => ctx.empty("grad.x_t", &s.input(c))?,
                },
                gy_t: ctx.empty("grad.gy_t", &s.output(c))?,
                kernel_t: ctx.empty("grad.kernel_t", &s.kernel(c))?,
                guide_w_t: match shared_t {
                    Some(cl) => cl.guide_w_t.clone(),
                    None => ctx.empty("grad.guide_w_t", &[kk, c.region_num, c.in_channels])?,
                },
                big_g: ctx.empty("grad.big_g", &s.guide(c))?,
                shared: shared_t.is_some(),
            }),
            None => None,
        };
        let mut dims = Dims::new(c, s);
        dims.aux0 = GUIDE_CHUNK as u32;
        dims.aux1 = chunks as u32;
        let p = |id: ParamId| &params.get(id).buffer;
        let dp = |id: ParamId| &param_grads[id.index()].buffer;
        let g = &grads;
        let gy = &grad_output.buffer;
        let mut program = Program::default();
        let mut add = |steps: Vec<_>| program.steps.extend(steps);
        use shaders::*;
        // Correlation: generated kernels, then dx's first path (assigns dx).
        if let Some(t) = &cpu_corr {
            add(ctx.group_steps(
                "region_lists",
                &REGION_SELECT,
                "lists",
                dims,
                &[
                    (2, &fwd.region.buffer),
                    (5, &t.order.buffer),
                    (6, &t.starts.buffer),
                ],
                s.batch as u64,
            )?);
            let (hw_in, hw_out) = (s.height * s.width, s.out_height * s.out_width);
            let (i, o) = (c.in_channels, c.out_channels);
            add(ctx.transpose_steps("corr_gy_t", dims, &grad_output, &t.gy_t, (o, hw_out))?);
            if shared_t.is_none() {
                add(ctx.transpose_steps("corr_x_t", dims, &fwd.input, &t.x_t, (i, hw_in))?);
            }
            let ob = if t.entry == "kernel_grad_lists8" {
                8
            } else {
                4
            };
            add(ctx.steps(
                "corr_kernel_grad",
                &CORRELATION_BWD,
                t.entry,
                dims,
                &[
                    (5, &g.kernel.buffer),
                    (7, &t.order.buffer),
                    (8, &t.starts.buffer),
                    (13, &t.x_t.buffer),
                    (14, &t.gy_t.buffer),
                ],
                // One invocation per (b, block of `ob` output and 4 input channels, u, v).
                (s.batch * c.out_channels.div_ceil(ob) * (c.in_channels / 4) * kk) as u64,
            )?);
            // [B*r, O*I, k*k] into [B*r, k*k, O*I]; k = 3 with 9 vec4 loads per 4 channels.
            add(match c.kernel_size {
                3 => ctx.steps(
                    "corr_kernel_t",
                    &CORRELATION_BWD,
                    "kernel_t3",
                    dims,
                    &[(15, &fwd.kernel.buffer), (9, &t.kernel_t.buffer)],
                    // One invocation per (b, g, o, block of 4 input channels): all 9 taps.
                    (fwd.kernel.numel() / (4 * kk)) as u64,
                )?,
                _ => {
                    let io = (c.out_channels * c.in_channels, kk);
                    ctx.transpose_steps("corr_kernel_t", dims, &fwd.kernel, &t.kernel_t, io)?
                }
            });
            add(ctx.steps(
                "corr_input_grad",
                &CORRELATION_BWD,
                "input_grad_t",
                dims,
                &[
                    (4, &fwd.region.buffer),
                    (6, &g.x.buffer),
                    (10, &t.kernel_t.buffer),
                    (14, &t.gy_t.buffer),
                ],
                // One invocation per (b, block of 8 channels, y, x).
                (s.batch * c.in_channels.div_ceil(8) * s.height * s.width) as u64,
            )?);
            // Straight-through softmax gradient of the guide: each G once, then dguide.
            add(ctx.steps(
                "big_g",
                &REGION_SELECT_BWD,
                "big_g_t",
                dims,
                &[(3, &corr.buffer), (7, &t.gy_t.buffer), (8, &t.big_g.buffer)],
                t.big_g.numel() as u64,
            )?);
            add(ctx.steps(
                "guide_grad",
                &REGION_SELECT_BWD,
                "guide_grad_g",
                dims,
                &[
                    (1, &fwd.guide.buffer),
                    (5, &g.guide.buffer),
                    (9, &t.big_g.buffer),
                ],
                g.guide.numel() as u64,
            )?);
        } else {
            // Straight-through softmax gradient of the guide.
            add(ctx.steps(
                "guide_grad",
                &REGION_SELECT_BWD,
                "guide_grad",
                dims,
                &[
                    (1, &fwd.guide.buffer),
                    (3, &corr.buffer),
                    (4, gy),
                    (5, &g.guide.buffer),
                ],
                g.guide.numel() as u64,
            )?);
            add(ctx.steps(
                "corr_kernel_grad",
                &CORRELATION_BWD,
                "kernel_grad",
                dims,
                &[
                    (1, &fwd.input.buffer),
                    (3, gy),
                    (4, &fwd.region.buffer),
                    (5, &g.kernel.buffer),
                ],
                // One invocation per (b, o, block of CORR_CHANNELS input channels, u, v): it
                // fills every region's copy of those taps.
                (s.batch * c.out_channels * c.in_channels.div_ceil(CORR_CHANNELS) * kk) as u64,
            )?);
            add(ctx.steps(
                "corr_input_grad",
                &CORRELATION_BWD,
                "input_grad",
                dims,
                &[
                    (2, &fwd.kernel.buffer),
                    (3, gy),
                    (4, &fwd.region.buffer),
                    (6, &g.x.buffer),
                ],
                // One invocation per (b, block of CORR_CHANNELS channels, y, x).
                (s.batch * c.in_channels.div_ceil(CORR_CHANNELS) * s.height * s.width) as u64,
            )?);
        }
        // Guide conv: dx's second path, then weight and bias in two fixed-order stages. CPU
        // adapters read the weight and x as vec4s along I (same sums, bitwise equal).
        if let Some(t) = &cpu_corr {
            if shared_t.is_none() {
                let w = params.get(ParamId::GuideW);
                let ri = (c.region_num * c.in_channels, kk);
                add(ctx.transpose_steps("guide_weight_t", dims, w, &t.guide_w_t, ri)?);
            }
            add(ctx.steps(
                "guide_input_grad",
                &GUIDE_CONV_BWD,
                "input_grad_t",
                dims,
                &[
                    (3, &g.guide.buffer),
                    (4, &g.x.buffer),
                    (9, &t.guide_w_t.buffer),
                ],
                (s.batch * (c.in_channels / 4) * s.height * s.width) as u64,
            )?);
            add(ctx.steps(
                "guide_weight_partial",
                &GUIDE_CONV_BWD,
                "weight_partial_t",
                dims,
                &[
                    (3, &g.guide.buffer),
                    (5, &guide_partial.buffer),
                    (10, &t.x_t.buffer),
                ],
                (chunks * c.region_num * ((c.in_channels / 4) * kk + 1)) as u64,
            )?);
        } else {
            add(ctx.steps(
                "guide_input_grad",
                &GUIDE_CONV_BWD,
                "input_grad",
                dims,
                &[
                    (2, p(ParamId::GuideW)),
                    (3, &g.guide.buffer),
                    (4, &g.x.buffer),
                ],
                // One invocation per (b, block of GUIDE_CHANNELS channels, y, x).
                (s.batch * c.in_channels.div_ceil(GUIDE_CHANNELS) * s.height * s.width) as u64,
            )?);
            add(ctx.steps(
                "guide_weight_partial",
                &GUIDE_CONV_BWD,
                "weight_partial",
                dims,
                &[
                    (1, &fwd.input.buffer),
                    (3, &g.guide.buffer),
                    (5, &guide_partial.buffer),
                ],
                // Per chunk: one invocation per (g, block of GUIDE_CHANNELS channels, u, v), then
                // one per bias.
                (chunks * c.region_num * (c.in_channels.div_ceil(GUIDE_CHANNELS) * kk + 1)) as u64,
            )?);
        }
        add(ctx.steps(
            "guide_weight_reduce",
            &GUIDE_CONV_BWD,
            "weight_reduce",
            dims,
            &[
                (5, &guide_partial.buffer),
                (6, dp(ParamId::GuideW)),
                (7, dp(ParamId::GuideB)),
            ],
            guide_elems as u64,
        )?);
        // conv_kernel.3 (grouped 1x1).
        add(ctx.steps(
            "kernel_gen_sigmoid_grad",
            &KERNEL_GEN_BWD,
            "sigmoid_grad",
            dims,
            &[
                (2, p(ParamId::KernelW3)),
                (3, &g.kernel.buffer),
                (4, &g.sigmoid.buffer),
            ],
            g.sigmoid.numel() as u64,
        )?);
        add(ctx.steps(
            "kernel_gen_weight_grad",
            &KERNEL_GEN_BWD,
            "weight_grad",
            dims,
            &[
                (1, &fwd.sigmoid.buffer),
                (3, &g.kernel.buffer),
                (5, dp(ParamId::KernelW3)),
                (6, dp(ParamId::KernelB3)),
            ],
            (c.kernel_channels() * (c.region_num + 1)) as u64,
        )?);
        // Sigmoid and conv_kernel.1.
        add(ctx.steps(
            "logits_grad",
            &KERNEL_LOGITS_BWD,
            "logits_grad",
            dims,
            &[
                (3, &fwd.sigmoid.buffer),
                (4, &g.sigmoid.buffer),
                (5, &g.kernel_logits.buffer),
            ],
            g.kernel_logits.numel() as u64,
        )?);
        add(ctx.steps(
            "pooled_grad",
            &KERNEL_LOGITS_BWD,
            "pooled_grad",
            dims,
            &[
                (2, p(ParamId::KernelW1)),
                (5, &g.kernel_logits.buffer),
                (6, &g.pooled.buffer),
            ],
            g.pooled.numel() as u64,
        )?);
        add(ctx.steps(
            "kernel_logits_weight_grad",
            &KERNEL_LOGITS_BWD,
            "weight_grad",
            dims,
            &[
                (1, &fwd.pooled.buffer),
                (5, &g.kernel_logits.buffer),
                (7, dp(ParamId::KernelW1)),
                (8, dp(ParamId::KernelB1)),
            ],
            (c.region_num * c.region_num * (c.in_channels + 1)) as u64,
        )?);
        // Adaptive pool: dx's third path.
        add(ctx.steps(
            POOL_GRAD_STEP,
            &ADAPTIVE_POOL_BWD,
            "main",
            dims,
            &[(1, &g.pooled.buffer), (2, &g.x.buffer)],
            g.x.numel() as u64,
        )?);
        Ok(BackwardPlan {
            shape: fwd.shape,
            grad_output,
            grads,
            guide_partial,
            cpu_corr,
            corr: None,
            inspect: Program::default(),
            program,
            dims,
            region: fwd.region.clone(),
        })
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
                (2, &self.region.buffer),
                (4, &self.grad_output.buffer),
                (6, &dcorr.buffer),
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
