//! `DrConv2d` on the GPU: parameters on the device, forward plans cached per input shape and
//! mode (each with its own input buffer, into which every call's input view is copied), one
//! submission per forward; backward plans built once per training forward plan.

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
    shape: Vec<usize>,
    mode: Mode,
}

/// A forward plan and the view its last recorded forward read: a backward must be of that same
/// input, and with plans keyed by shape another input of the shape could have come since.
struct Entry {
    plan: ForwardPlan,
    fed: Option<(wgpu::Buffer, u64)>,
}

/// Records the copy of `src` (a checked view) into `dst` unless they are the same bytes.
pub(crate) fn copy_view(encoder: &mut wgpu::CommandEncoder, src: &GpuTensor, dst: &GpuTensor) {
    if !src.same_view(dst) {
        encoder.copy_buffer_to_buffer(
            &src.buffer,
            src.offset,
            &dst.buffer,
            dst.offset,
            src.bytes(),
        );
    }
}

/// A DRConv2d layer on a GPU device: the PyTorch reference's `DRConv2d`, its parameters on the
/// device, and one plan (buffers and bound dispatches) per input shape and mode, built on first
/// use and reused for any input buffer of that shape.
///
/// ```
/// use drconv::{DrConv2d, DrConvConfig, DrConvParams, GpuContext, Mode, Tensor};
/// # fn main() -> drconv::Result<()> {
/// pollster::block_on(async {
///     let ctx = GpuContext::new().await?;
///     let config = DrConvConfig::new(4, 6, 3, 2)?.with_padding(1)?;
///     let params = DrConvParams::init(config, 0)?;
///     let mut layer = DrConv2d::new(ctx.clone(), &params)?;
///     let x = Tensor::randn(&[1, 4, 8, 8], 1);
///     // Inference: the fused path (each pixel's region only); training: every region, saved
///     // for the backward.
///     let y = layer.forward(&layer.upload(&x)?, Mode::Inference).await?;
///     let y = y.read(&ctx).await?;
///     let cpu = drconv::cpu::forward(&params, &x)?.output;
///     assert_eq!(y.shape, cpu.shape);
///     assert!(y.data.iter().zip(&cpu.data).all(|(a, b)| (a - b).abs() <= 1e-5 + 1e-4 * b.abs()));
///     Ok(())
/// })
/// # }
/// ```
pub struct DrConv2d {
    ctx: Arc<GpuContext>,
    config: DrConvConfig,
    params: GpuParams,
    plans: PlanCache<PlanKey, Entry>,
    /// Forward and backward plans built so far (tests check that fresh buffers reuse them).
    built: usize,
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
            built: 0,
            backward_plans: PlanCache::new(MAX_PLANS),
            param_grads: None,
        })
    }

    /// The shader variants this layer's plans run (`GpuContext::variants` for its
    /// configuration: the adapter's choice with `ContextOptions::variants` applied). A plan's
    /// decisions may refine them for its shape (the GPU family's kernel generator by how many
    /// invocations fill the device, the staged correlation where a device cannot run the
    /// GEMM's workgroups): `ForwardPlan::decisions` has what a plan runs.
    pub fn variants(&self) -> crate::gpu::variants::Variants {
        self.ctx.variants(&self.config)
    }

    /// The layer's configuration.
    pub fn config(&self) -> &DrConvConfig {
        &self.config
    }

    /// The context the layer runs on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    #[doc(hidden)]
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

    /// Forward and backward plans this layer has built: one per input shape and mode (and one
    /// backward per training shape), whatever buffers the inputs arrive in.
    pub fn plans_built(&self) -> usize {
        self.built
    }

    /// The index of the plan of inputs of `shape` in `mode`, built (and error-checked) on first
    /// use.
    async fn plan_index(&mut self, shape: &[usize], mode: Mode) -> Result<usize> {
        let key = PlanKey {
            shape: shape.to_vec(),
            mode,
        };
        if let Some(pos) = self.plans.position(&key) {
            return Ok(pos);
        }
        self.config.forward_shape(shape)?;
        let (ctx, config, params) = (&self.ctx, &self.config, &self.params);
        let plan = ctx
            .scoped("building the forward plan", || {
                crate::gpu::plan::forward(ctx, config, params, shape, mode)
            })
            .await??;
        let plan = crate::gpu::autotune::per_region_uniform(ctx, config, params, plan).await?;
        self.built += 1;
        Ok(self.plans.insert(key, Entry { plan, fed: None }))
    }

    /// Builds the plan of inputs of `shape` in `mode` now (the burn module: so that its errors,
    /// limits and shapes, reach the caller before burn runs the call; the benchmark: so that
    /// its plans follow the layer's measured choices).
    #[cfg_attr(
        any(target_family = "wasm", not(any(feature = "burn", feature = "cli"))),
        allow(dead_code)
    )]
    pub(crate) async fn prepare(&mut self, shape: &[usize], mode: Mode) -> Result<()> {
        self.plan_index(shape, mode).await.map(|_| ())
    }

    /// The plan of inputs of `x`'s shape in `mode` (tests read its buffers).
    #[doc(hidden)]
    pub async fn plan(&mut self, x: &GpuTensor, mode: Mode) -> Result<&ForwardPlan> {
        let pos = self.plan_index(&x.shape, mode).await?;
        Ok(&self.plans.at(pos).plan)
    }

    /// Records the forward of `x` into `encoder` (to chain layers, or beside the caller's own
    /// passes, in one submission) and returns the output tensor, valid once the encoder is
    /// submitted. The output belongs to the layer's plan for this shape and mode: the next
    /// forward of the same shape overwrites it (copy it out, or use
    /// [`DrConv2d::encode_forward_into`]). `x` may be any view of this device
    /// ([`GpuTensor::from_buffer`]) with `COPY_SRC` usage; it is copied into the plan's input,
    /// so it may change once the copy has run.
    pub async fn encode_forward(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        mode: Mode,
    ) -> Result<GpuTensor> {
        self.config.forward_shape(&x.shape)?;
        x.check_view(&self.ctx, "input", wgpu::BufferUsages::COPY_SRC)?;
        let pos = self.plan_index(&x.shape, mode).await?;
        let entry = self.plans.at_mut(pos);
        copy_view(encoder, x, &entry.plan.input);
        entry.fed = Some((x.buffer.clone(), x.offset));
        entry.plan.program.encode(encoder);
        Ok(entry.plan.output.clone())
    }

    /// [`DrConv2d::encode_forward`], then a copy of the output into the caller's view `y`
    /// (B x O x H' x W', `COPY_DST` usage).
    pub async fn encode_forward_into(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        y: &GpuTensor,
        mode: Mode,
    ) -> Result<()> {
        let want = self.config.forward_shape(&x.shape)?.output(&self.config);
        check_shape("output view", y, &want, &x.shape)?;
        y.check_view(&self.ctx, "output view", wgpu::BufferUsages::COPY_DST)?;
        let out = self.encode_forward(encoder, x, mode).await?;
        copy_view(encoder, &out, y);
        Ok(())
    }

    /// Runs the forward with one submission; the output stays on the GPU.
    pub async fn forward(&mut self, x: &GpuTensor, mode: Mode) -> Result<GpuTensor> {
        // With deferred errors, an error of earlier work comes back here.
        self.ctx.check("forward")?;
        let mut encoder = self.ctx.encoder("drconv forward");
        let out = self.encode_forward(&mut encoder, x, mode).await?;
        self.ctx.submit(encoder).await?;
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
/// uses the *last* training forward of the input's shape, which must have read the same view:
/// encode `encode_forward(x, Mode::Training)` and `encode_backward(x, ..)` into one encoder for a
/// single submission, or run `forward(x, Mode::Training)` first.
impl DrConv2d {
    /// The parameter-gradient buffers (state_dict order), made on first use and shared by every
    /// backward of this layer.
    pub fn param_grads(&mut self) -> Result<[GpuTensor; 6]> {
        if self.param_grads.is_none() {
            // Stored, not bound whole: conv_kernel.3's may exceed one binding (split plans copy
            // it in row slices, the optimizer binds it in ranges).
            self.param_grads = Some(crate::gpu::split::layer_param_grad_buffers(
                &self.ctx,
                &self.config,
            )?);
        }
        Ok(self.param_grads.clone().expect("just made"))
    }

    /// Index of the training forward plan of `x`'s shape, if its last forward read `x`.
    fn training_plan_index(&self, x: &GpuTensor) -> Result<usize> {
        let key = PlanKey {
            shape: x.shape.clone(),
            mode: Mode::Training,
        };
        let pos = self.plans.position(&key).ok_or_else(|| {
            DrConvError::Config(format!(
                "backward of the input of shape {:?} needs its training forward first: run \
                 forward(x, Mode::Training) or encode_forward(.., x, Mode::Training) before the \
                 backward (the backward reads the tensors that forward saved)",
                x.shape
            ))
        })?;
        match &self.plans.at(pos).fed {
            Some((buffer, offset)) if *buffer == x.buffer && *offset == x.offset => Ok(pos),
            _ => Err(DrConvError::Config(format!(
                "backward of an input of shape {:?} whose last training forward read another \
                 buffer or offset: the backward uses the tensors of that last forward, so run \
                 the training forward of this input again first",
                x.shape
            ))),
        }
    }

    /// The forward and backward plans of `x`. When `feed` is given (the trainer encodes the
    /// forward itself) the training forward plan is built, `x` recorded as its input and copied
    /// into it in `feed`; otherwise the last training forward must have read `x`.
    pub(crate) async fn training_plans(
        &mut self,
        x: &GpuTensor,
        feed: Option<&mut wgpu::CommandEncoder>,
    ) -> Result<(&ForwardPlan, &mut BackwardPlan)> {
        self.config.forward_shape(&x.shape)?;
        x.check_view(&self.ctx, "input", wgpu::BufferUsages::COPY_SRC)?;
        if let Some(encoder) = feed {
            let pos = self.plan_index(&x.shape, Mode::Training).await?;
            let entry = self.plans.at_mut(pos);
            copy_view(encoder, x, &entry.plan.input);
            entry.fed = Some((x.buffer.clone(), x.offset));
        }
        let fpos = self.training_plan_index(x)?;
        // Drop backward plans whose forward plan was evicted (they hold its buffers alive).
        let plans = &self.plans;
        self.backward_plans
            .retain(|out, _| plans.values().any(|e| e.plan.output.buffer == *out));
        let out = self.plans.at(fpos).plan.output.buffer.clone();
        let bpos = match self.backward_plans.position(&out) {
            Some(pos) => pos,
            None => {
                let grads = self.param_grads()?;
                let (ctx, config, params) = (&self.ctx, &self.config, &self.params);
                let fwd = &self.plans.at(fpos).plan;
                let plan = ctx
                    .scoped("building the backward plan", || {
                        crate::gpu::plan::backward(ctx, config, params, fwd, &grads)
                    })
                    .await??;
                self.built += 1;
                self.backward_plans.insert(out, plan)
            }
        };
        Ok((&self.plans.at(fpos).plan, self.backward_plans.at_mut(bpos)))
    }

    /// The backward plan of `x` (built on first use; its training forward plan must exist), e.g.
    /// to poison its buffers in a test.
    #[doc(hidden)]
    pub async fn backward_plan(&mut self, x: &GpuTensor) -> Result<&mut BackwardPlan> {
        Ok(self.training_plans(x, None).await?.1)
    }

    /// Records the backward of the last training forward of `x` into `encoder`: copies
    /// `grad_output` (B x O x H' x W', any view with `COPY_SRC`) into the plan, then the
    /// backward pass. The gradients are the layer's buffers, valid once the encoder is
    /// submitted and overwritten by the next backward.
    pub async fn encode_backward(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        grad_output: &GpuTensor,
    ) -> Result<GpuGradients> {
        let want = self.config.forward_shape(&x.shape)?.output(&self.config);
        check_shape("grad_output", grad_output, &want, &x.shape)?;
        grad_output.check_view(&self.ctx, "grad_output", wgpu::BufferUsages::COPY_SRC)?;
        let (_, plan) = self.training_plans(x, None).await?;
        copy_view(encoder, grad_output, &plan.grad_output);
        plan.encode(encoder);
        Ok(plan.grads.clone())
    }

    /// [`DrConv2d::encode_backward`], then a copy of dL/dx into the caller's view `grad_input`
    /// (x's shape, `COPY_DST` usage). The parameter gradients stay in the layer's buffers.
    pub async fn encode_backward_into(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        grad_output: &GpuTensor,
        grad_input: &GpuTensor,
    ) -> Result<GpuGradients> {
        check_shape("grad_input view", grad_input, &x.shape, &x.shape)?;
        grad_input.check_view(&self.ctx, "grad_input view", wgpu::BufferUsages::COPY_DST)?;
        let grads = self.encode_backward(encoder, x, grad_output).await?;
        copy_view(encoder, &grads.x, grad_input);
        Ok(grads)
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
        self.ctx.submit(encoder).await?;
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
        self.training_plans(x, None)
            .await?
            .1
            .materialise_corr(&ctx, &config)?;
        let mut encoder = ctx.encoder("drconv backward trace");
        self.encode_backward(&mut encoder, x, grad_output).await?;
        let (_, plan) = self.training_plans(x, None).await?;
        plan.encode_inspect(&mut encoder);
        ctx.submit(encoder).await?;
        plan.read(&ctx).await
    }
}

/// `t` must have shape `want` (the shape that the input of shape `input` gives).
fn check_shape(what: &str, t: &GpuTensor, want: &[usize], input: &[usize]) -> Result<()> {
    if t.shape != want {
        return Err(DrConvError::Shape(format!(
            "{what} has shape {:?} but the input of shape {input:?} needs {want:?}",
            t.shape
        )));
    }
    Ok(())
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
        kernel: match plan.decisions.kernel_channel_last {
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

/// What the burn module (`crate::burn`) needs of a layer besides the public API.
#[cfg(feature = "burn")]
impl DrConv2d {
    /// Records copies of `views` (the module's parameters, state_dict order) into the layer's
    /// parameter buffers, so that the plans recorded after them read these values.
    pub(crate) fn encode_load_params(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        views: &[GpuTensor; 6],
    ) -> Result<()> {
        for (view, own) in views.iter().zip(&self.params.tensors) {
            if view.shape != own.shape {
                return Err(DrConvError::Weights(format!(
                    "a parameter has shape {:?} but the layer's is {:?}",
                    view.shape, own.shape
                )));
            }
            view.check_view(&self.ctx, "parameter", wgpu::BufferUsages::COPY_SRC)?;
            copy_view(encoder, view, own);
        }
        Ok(())
    }

    /// Whether the last training forward of `x`'s shape read `x` (so a backward may follow).
    pub(crate) fn trained_on(&self, x: &GpuTensor) -> bool {
        self.training_plan_index(x).is_ok()
    }
}
