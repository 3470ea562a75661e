//! Training DRConv2d on the GPU: forward (training mode), MSE loss, backward and optimizer update
//! recorded into one submission per step, with nothing allocated per step and nothing read back
//! unless the loss is asked for.

use std::sync::Arc;

use crate::error::{DrConvError, Result};
use crate::gpu::cache::PlanCache;
use crate::gpu::loss::MsePlan;
use crate::gpu::optim::GpuOptimizer;
use crate::gpu::{GpuContext, GpuTensor};
use crate::layer::{copy_view, DrConv2d};
use crate::optim::OptimizerConfig;
use crate::params::DrConvParams;

/// Loss plans kept; each binds one forward output and its own target buffer.
const MAX_LOSS_PLANS: usize = 8;

/// A loss plan and the target buffer it binds (every step's target view is copied into it).
struct Loss {
    plan: MsePlan,
    target: GpuTensor,
}

/// A layer, its optimizer state on the device, and the MSE loss plans of the inputs it has seen.
///
/// ```
/// use drconv::{DrConvConfig, DrConvParams, GpuContext, OptimizerConfig, Tensor, Trainer};
/// # fn main() -> drconv::Result<()> {
/// pollster::block_on(async {
///     let ctx = GpuContext::new().await?;
///     let params = DrConvParams::init(DrConvConfig::new(2, 2, 3, 2)?.with_padding(1)?, 0)?;
///     let mut trainer = Trainer::new(ctx.clone(), &params, OptimizerConfig::adam(1e-2)).await?;
///     let x = ctx.upload("x", &Tensor::randn(&[1, 2, 8, 8], 1))?;
///     let target = ctx.upload("target", &Tensor::zeros(&[1, 2, 8, 8]))?;
///     let first = trainer.step(&x, &target, true).await?.expect("asked for the loss");
///     for _ in 0..20 {
///         trainer.step(&x, &target, false).await?;
///     }
///     let last = trainer.step(&x, &target, true).await?.expect("asked for the loss");
///     assert!(last < first, "{last} >= {first}");
///     Ok(())
/// })
/// # }
/// ```
pub struct Trainer {
    layer: DrConv2d,
    optimizer: GpuOptimizer,
    /// Keyed by the forward plan's output buffer (one per input shape).
    losses: PlanCache<wgpu::Buffer, Loss>,
    steps: u64,
}

impl Trainer {
    /// Uploads `params` and makes zeroed optimizer state for `opt`.
    pub async fn new(
        ctx: Arc<GpuContext>,
        params: &DrConvParams,
        opt: OptimizerConfig,
    ) -> Result<Self> {
        opt.validate()?;
        let mut layer = DrConv2d::new(ctx.clone(), params)?;
        let grads = layer.param_grads()?;
        let optimizer = ctx
            .scoped("building the optimizer", || {
                GpuOptimizer::new(&ctx, opt, layer.gpu_params(), &grads)
            })
            .await??;
        Ok(Trainer {
            layer,
            optimizer,
            losses: PlanCache::new(MAX_LOSS_PLANS),
            steps: 0,
        })
    }

    /// One step on `x` toward `target` (B x O x H' x W'): forward, loss, backward, update, in one
    /// submission. Returns the loss before the update when `read_loss` (which waits for the GPU),
    /// else `None` without waiting.
    pub async fn step(
        &mut self,
        x: &GpuTensor,
        target: &GpuTensor,
        read_loss: bool,
    ) -> Result<Option<f32>> {
        let config = *self.layer.config();
        let want = config.forward_shape(&x.shape)?.output(&config);
        if target.shape != want {
            return Err(DrConvError::Shape(format!(
                "target has shape {:?} but the output of the input of shape {:?} is {want:?}",
                target.shape, x.shape
            )));
        }
        let ctx = self.layer.context().clone();
        target.check_view(&ctx, "target", wgpu::BufferUsages::COPY_SRC)?;
        let mut encoder = ctx.encoder("drconv train step");
        let (fwd, bwd) = self.layer.training_plans(x, Some(&mut encoder)).await?;
        let key = fwd.output.buffer.clone();
        let pos = match self.losses.position(&key) {
            Some(pos) => pos,
            None => {
                let loss = ctx
                    .scoped("building the loss", || -> Result<Loss> {
                        let target = ctx.empty_stored("target", &fwd.output.shape)?;
                        let plan = MsePlan::build(&ctx, &fwd.output, &target, &bwd.grad_output)?;
                        Ok(Loss { plan, target })
                    })
                    .await??;
                self.losses.insert(key, loss)
            }
        };
        let loss = self.losses.at(pos);
        copy_view(&mut encoder, target, &loss.target);
        self.optimizer.prepare(&ctx, self.steps + 1);
        fwd.program.encode(&mut encoder);
        loss.plan.program.encode(&mut encoder);
        bwd.encode(&mut encoder);
        self.optimizer.encode(&mut encoder);
        ctx.submit(encoder).await?;
        self.steps += 1;
        if !read_loss {
            return Ok(None);
        }
        Ok(Some(loss.plan.loss.read(&ctx).await?.data[0]))
    }

    /// Steps taken so far (Adam's `t`).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    #[doc(hidden)]
    pub fn optimizer(&self) -> &GpuOptimizer {
        &self.optimizer
    }

    /// The layer being trained.
    pub fn layer(&self) -> &DrConv2d {
        &self.layer
    }

    /// The layer, e.g. to run a forward. Replacing its parameters keeps the optimizer state.
    pub fn layer_mut(&mut self) -> &mut DrConv2d {
        &mut self.layer
    }

    /// The current parameters, read back from the device.
    pub async fn params(&self) -> Result<DrConvParams> {
        self.layer.params().await
    }
}
