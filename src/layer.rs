//! `DrConv2d` on the GPU: parameters on the device, forward plans cached per input buffer, shape
//! and mode, one submission per forward.

use std::sync::Arc;

use crate::config::DrConvConfig;
use crate::error::{DrConvError, Result};
use crate::gpu::forward::{ForwardPlan, Mode};
use crate::gpu::params::GpuParams;
use crate::gpu::{GpuContext, GpuTensor};
use crate::params::DrConvParams;
use crate::tensor::Tensor;
use crate::trace::ForwardTrace;

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
    plans: Vec<(PlanKey, ForwardPlan)>,
}

impl DrConv2d {
    /// Uploads `params` to the device of `ctx`.
    pub fn new(ctx: Arc<GpuContext>, params: &DrConvParams) -> Result<Self> {
        params.config.validate()?;
        let gp = GpuParams::upload(&ctx, params)?;
        Ok(DrConv2d {
            ctx,
            config: params.config,
            params: gp,
            plans: Vec::new(),
        })
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
        let pos = match self.plans.iter().position(|(k, _)| *k == key) {
            Some(pos) => pos,
            None => {
                self.config.forward_shape(&x.shape)?;
                let (ctx, config, params) = (&self.ctx, &self.config, &self.params);
                let plan = ctx
                    .scoped("building the forward plan", || {
                        ForwardPlan::build(ctx, config, params, x, mode)
                    })
                    .await??;
                if self.plans.len() >= MAX_PLANS {
                    self.plans.remove(0);
                }
                self.plans.push((key, plan));
                self.plans.len() - 1
            }
        };
        Ok(&self.plans[pos].1)
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

    /// Runs the forward and reads back every tensor it produced.
    pub async fn forward_trace(&mut self, x: &GpuTensor, mode: Mode) -> Result<ForwardTrace> {
        self.forward(x, mode).await?;
        let ctx = self.ctx.clone();
        let plan = self.plan(x, mode).await?;
        read_trace(&ctx, plan).await
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
        kernel: plan.kernel.read(ctx).await?,
        corr,
        guide: plan.guide.read(ctx).await?,
        region_index: plan.region.read_i32(ctx).await?,
        output: plan.output.read(ctx).await?,
    })
}
