//! `DrConv2d` on the GPU: parameters on the device, forward plans cached per input buffer, shape
//! and mode, one submission per forward; backward plans built once per training forward plan.

use std::sync::Arc;

use crate::config::DrConvConfig;
use crate::config::Mode;
use crate::error::{DrConvError, Result};
use crate::gpu::backward::{BackwardPlan, GpuGradients};
use crate::gpu::cache::PlanCache;
use crate::gpu::forward::ForwardPlan;
use crate::gpu::params::GpuParams;
use crate::gpu::{GpuContext, GpuTensor};
use crate::params::DrConvParams;
use crate::tensor::Tensor;
use crate::trace::{ForwardTrace, Gradients};

/// Plans kept per layer; older ones are dropped (each holds its buffers).
const MAX_PLANS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanKey {
    input: wgpu::Buffer,
    shape: Vec<usize>,
    mode: Mode,
}

/// A DRConv2d layer on a GPU device.
pub struct DrConv2d {
    ctx: Arc<GpuContext>,
    config: DrConvConfig,
    params: GpuParams,
    plans: PlanCache<PlanKey, ForwardPlan>,
    /// Backward plans, keyed by their forward plan's output buffer (a rebuilt forward plan has
    /// new buffers, so a stale backward plan can never be picked up).
    backward_plans: PlanCache<wgpu::Buffer, BackwardPlan>,
    /// Parameter gradients, shared by every backward plan; made on the first backward.
    param_grads: Option<[GpuTensor; 6]>,
}

impl DrConv2d {
    /// Uploads `params` to the device of `ctx`.
    pub fn new(ctx: Arc<GpuContext>, params: &DrConvParams) -> Result<Self> {
        params.config.validate()?;
        ctx.check("creating the layer")?; // a lost device, reported before any allocation
        let gp = GpuParams::upload(&ctx, params)?;
        Ok(DrConv2d {
            ctx,
            config: params.config,
            params: gp,
            plans: PlanCache::new(MAX_PLANS),
            backward_plans: PlanCache::new(MAX_PLANS),
            param_grads: None,
        })
    }

    /// The shader variants this layer's plans run (`GpuContext::variants` for its
    /// configuration: the adapter's choice with `ContextOptions::variants` applied).
    pub fn variants(&self) -> crate::gpu::variants::Variants {
        self.ctx.variants(&self.config)
    }

    pub fn config(&self) -> &DrConvConfig {
        &self.config
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    pub fn gpu_params(&self) -> &GpuParams {
        &self.params
    }

    /// Reads the parameters back from the device.
    pub async fn params(&self) -> Result<DrConvParams> {
        self.params.read(&self.ctx, self.config).await
    }

    /// Replaces the parameters (same config).
    pub fn set_params(&mut self, params: &DrConvParams) -> Result<()> {
        if params.config != self.config {
            return Err(DrConvError::Weights(format!(
                "parameters are for {:?} but the layer is {:?}",
                params.config, self.config
            )));
        }
        self.params.write(&self.ctx, params)
    }

    /// Uploads a host tensor to this layer's device.
    pub fn upload(&self, x: &Tensor) -> Result<GpuTensor> {
        self.config.forward_shape(&x.shape)?;
        self.ctx.upload("input", x)
    }

    /// The plan for this input buffer, shape and mode, built (and error-checked) on first use.
    pub async fn plan(&mut self, x: &GpuTensor, mode: Mode) -> Result<&ForwardPlan> {
        let key = PlanKey {
            input: x.buffer.clone(),
            shape: x.shape.clone(),
            mode,
        };
        let pos = match self.plans.position(&key) {
            Some(pos) => pos,
            None => {
                self.config.forward_shape(&x.shape)?;
                let (ctx, config, params) = (&self.ctx, &self.config, &self.params);
                let plan = ctx
                    .scoped("building the forward plan", || {
                        crate::gpu::plan::forward(ctx, config, params, x, mode)
                    })
                    .await??;
                self.plans.insert(key, plan)
            }
        };
        Ok(self.plans.at(pos))
    }

    /// Records the forward of `x` into `encoder` (to chain layers in one submission) and returns
    /// the output tensor, valid once the encoder is submitted.
    pub async fn encode_forward(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        mode: Mode,
    ) -> Result<GpuTensor> {
        let plan = self.plan(x, mode).await?;
        plan.program.encode(encoder);
        Ok(plan.output.clone())
    }

    /// Runs the forward with one submission; the output stays on the GPU.
    pub async fn forward(&mut self, x: &GpuTensor, mode: Mode) -> Result<GpuTensor> {
        let mut encoder = self.ctx.encoder("drconv forward");
        let out = self.encode_forward(&mut encoder, x, mode).await?;
        self.ctx.submit(encoder)?;
        Ok(out)
    }

    /// Runs the forward and reads back every tensor it produced. On a plan split to fit the
    /// device (`crate::gpu::split`) the output, guide and region map are whole, but the other
    /// intermediates (pooled, kernel logits, sigmoid, kernel, corr) are the last chunk's, with
    /// that chunk's shape (fewer samples or output channels than `shape` says; for a split over
    /// rows, the last band's, with its discarded edge rows).
    pub async fn forward_trace(&mut self, x: &GpuTensor, mode: Mode) -> Result<ForwardTrace> {
        self.forward(x, mode).await?;
        let ctx = self.ctx.clone();
        let plan = self.plan(x, mode).await?;
        read_trace(&ctx, plan).await
    }
}

/// Backward and training support. A backward reads the tensors its training forward saved, so it
/// uses the *last* training forward of the same input buffer: encode `encode_forward(x,
/// Mode::Training)` and `encode_backward(x, ..)` into one encoder for a single submission, or run
/// `forward(x, Mode::Training)` first.
impl DrConv2d {
    /// The parameter-gradient buffers (state_dict order), made on first use and shared by every
    /// backward of this layer.
    pub fn param_grads(&mut self) -> Result<[GpuTensor; 6]> {
        if self.param_grads.is_none() {
            // Stored, not bound whole: conv_kernel.3's may exceed one binding (split plans copy
            // it in row slices, the optimizer binds it in windows).
            self.param_grads = Some(crate::gpu::split::layer_param_grad_buffers(
                &self.ctx,
                &self.config,
            )?);
        }
        Ok(self.param_grads.clone().expect("just made"))
    }

    /// Index of the training forward plan of `x`, if one was built.
    fn training_plan_index(&self, x: &GpuTensor) -> Option<usize> {
        let key = PlanKey {
            input: x.buffer.clone(),
            shape: x.shape.clone(),
            mode: Mode::Training,
        };
        self.plans.position(&key)
    }

    /// The forward and backward plans of `x`. The training forward plan is built when
    /// `build_forward` (the trainer encodes it itself); otherwise it must exist already.
    pub(crate) async fn training_plans(
        &mut self,
        x: &GpuTensor,
        build_forward: bool,
    ) -> Result<(&ForwardPlan, &mut BackwardPlan)> {
        if build_forward {
            self.plan(x, Mode::Training).await?;
        }
        let fpos = self.training_plan_index(x).ok_or_else(|| {
            DrConvError::Config(format!(
                "backward of the input of shape {:?} needs its training forward first: run \
                 forward(x, Mode::Training) or encode_forward(.., x, Mode::Training) before the \
                 backward (the backward reads the tensors that forward saved)",
                x.shape
            ))
        })?;
        // Drop backward plans whose forward plan was evicted (they hold its buffers alive).
        let plans = &self.plans;
        self.backward_plans
            .retain(|out, _| plans.values().any(|p| p.output.buffer == *out));
        let out = self.plans.at(fpos).output.buffer.clone();
        let bpos = match self.backward_plans.position(&out) {
            Some(pos) => pos,
            None => {
                let grads = self.param_grads()?;
                let (ctx, config, params) = (&self.ctx, &self.config, &self.params);
                let fwd = self.plans.at(fpos);
                let plan = ctx
                    .scoped("building the backward plan", || {
                        crate::gpu::plan::backward(ctx, config, params, fwd, &grads)
                    })
                    .await??;
                self.backward_plans.insert(out, plan)
            }
        };
        Ok((self.plans.at(fpos), self.backward_plans.at_mut(bpos)))
    }

    /// The backward plan of `x` (built on first use; its training forward plan must exist), e.g.
    /// to poison its buffers in a test or to write `grad_output` directly.
    pub async fn backward_plan(&mut self, x: &GpuTensor) -> Result<&mut BackwardPlan> {
        Ok(self.training_plans(x, false).await?.1)
    }

    /// Records the backward of the last training forward of `x` into `encoder`: copies
    /// `grad_output` (B x O x H' x W') into the plan, then the backward pass. The gradients are
    /// valid once the encoder is submitted.
    pub async fn encode_backward(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        grad_output: &GpuTensor,
    ) -> Result<GpuGradients> {
        let s = self.config.forward_shape(&x.shape)?;
        let want = s.output(&self.config);
        if grad_output.shape != want {
            return Err(DrConvError::Shape(format!(
                "grad_output has shape {:?} but the output of the input of shape {:?} is {want:?}",
                grad_output.shape, x.shape
            )));
        }
        let (_, plan) = self.training_plans(x, false).await?;
        if plan.grad_output.buffer != grad_output.buffer {
            let bytes = plan.grad_output.numel() as u64 * 4;
            encoder.copy_buffer_to_buffer(
                &grad_output.buffer,
                0,
                &plan.grad_output.buffer,
                0,
                bytes,
            );
        }
        plan.encode(encoder);
        Ok(plan.grads.clone())
    }

    /// Runs the backward of the last training forward of `x` with one submission; the gradients
    /// stay on the GPU.
    pub async fn backward(
        &mut self,
        x: &GpuTensor,
        grad_output: &GpuTensor,
    ) -> Result<GpuGradients> {
        let mut encoder = self.ctx.encoder("drconv backward");
        let grads = self.encode_backward(&mut encoder, x, grad_output).await?;
        self.ctx.submit(encoder)?;
        Ok(grads)
    }

    /// Runs the backward (plus dcorr, made for inspection) and reads every gradient back.
    pub async fn backward_trace(
        &mut self,
        x: &GpuTensor,
        grad_output: &GpuTensor,
    ) -> Result<Gradients> {
        let ctx = self.ctx.clone();
        let config = self.config;
        self.training_plans(x, false)
            .await?
            .1
            .materialise_corr(&ctx, &config)?;
        let mut encoder = ctx.encoder("drconv backward trace");
        self.encode_backward(&mut encoder, x, grad_output).await?;
        let (_, plan) = self.training_plans(x, false).await?;
        plan.encode_inspect(&mut encoder);
        ctx.submit(encoder)?;
        plan.read(&ctx).await
    }
}

/// Reads every tensor of an executed plan back to the host.
pub async fn read_trace(ctx: &GpuContext, plan: &ForwardPlan) -> Result<ForwardTrace> {
    let corr = match &plan.corr {
        Some(c) => Some(c.read(ctx).await?),
        None => None,
    };
    Ok(ForwardTrace {
        shape: plan.shape,
        pooled: plan.pooled.read(ctx).await?,
        kernel_logits: plan.kernel_logits.read(ctx).await?,
        sigmoid: plan.sigmoid.read(ctx).await?,
        kernel: match plan.kernel_channel_last {
            true => kernel_from_channel_last(plan.kernel.read(ctx).await?, plan.input.shape[1]),
            false => plan.kernel.read(ctx).await?,
        },
        corr,
        guide: plan.guide.read(ctx).await?,
        region_index: plan.region.read_i32(ctx).await?,
        output: plan.output.read(ctx).await?,
    })
}

/// The generated kernel as laid out (B x r*I*O x k x k: per row (b, g, o), `i` input channels
/// of k*k taps) from the correlation's channel-last rows (per row, k*k taps of `i` channels).
fn kernel_from_channel_last(t: Tensor, i: usize) -> Tensor {
    let kk = t.shape[2] * t.shape[3];
    let mut data = vec![0.0; t.data.len()];
    for (dst, src) in data.chunks_mut(i * kk).zip(t.data.chunks(i * kk)) {
        for (uv, taps) in src.chunks(i).enumerate() {
            for (ii, &v) in taps.iter().enumerate() {
                dst[ii * kk + uv] = v;
            }
        }
    }
    Tensor { data, ..t }
}
