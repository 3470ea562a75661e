//! SGD (momentum, weight decay) and Adam on the GPU, with PyTorch's update rules (see
//! `crate::optim`): state buffers allocated once, one dispatch per parameter (one per range of
//! a parameter larger than one storage binding: the updates are elementwise), and the per-step
//! scalars (first-step flag, Adam's bias corrections) written into a small buffer before each step.

use crate::error::{DrConvError, Result};
use crate::gpu::buffers::{GpuTensor, TENSOR_USAGE};
use crate::gpu::context::GpuContext;
use crate::gpu::limits;
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Dims, Program};
use crate::gpu::shaders;
use crate::optim::OptimizerConfig;
use crate::params::ParamId;

/// Optimizer state on the device: momentum buffers (SGD) or moments (Adam), and the program that
/// updates the parameters in place from their gradients.
#[derive(Debug)]
pub struct GpuOptimizer {
    pub config: OptimizerConfig,
    /// The step's scalars; see `shaders/sgd.wgsl` and `shaders/adam.wgsl` for the layout.
    hyper: wgpu::Buffer,
    /// SGD: momentum buffers (none without momentum). Adam: first moments.
    pub m: Vec<GpuTensor>,
    /// Adam: second moments.
    pub v: Vec<GpuTensor>,
    pub program: Program,
}

impl GpuOptimizer {
    /// Zeroed state for `params`, bound to their gradient buffers `grads` (state_dict order).
    pub fn new(
        ctx: &GpuContext,
        config: OptimizerConfig,
        params: &GpuParams,
        grads: &[GpuTensor; 6],
    ) -> Result<Self> {
        config.validate()?;
        limits::check_storage_bindings(&ctx.limits)?;
        let hyper = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("optimizer hyper"),
            size: 8 * 4,
            usage: TENSOR_USAGE,
            mapped_at_creation: false,
        });
        // Stored, not bound whole: tensors larger than one storage binding are updated in
        // ranges (the shaders are elementwise).
        let zeros = |label: &str, like: &GpuTensor| -> Result<GpuTensor> {
            let t = ctx.empty_stored(label, &like.shape)?;
            ctx.fill(&t, 0.0);
            Ok(t)
        };
        let (mut m, mut v) = (Vec::new(), Vec::new());
        let mut program = Program::default();
        for id in ParamId::ALL {
            let (p, g) = (params.get(id), &grads[id.index()]);
            if g.shape != p.shape {
                return Err(DrConvError::Shape(format!(
                    "gradient of {} has shape {:?} but the parameter has shape {:?}",
                    id.name(),
                    g.shape,
                    p.shape
                )));
            }
            p.check_holds(id.name())?;
            g.check_holds(id.name())?;
            // The entry point and its state buffers (by their names in the shader).
            let (label, shader, entry, state) = match config {
                OptimizerConfig::Sgd { momentum, .. } if momentum != 0.0 => {
                    m.push(zeros("sgd momentum", p)?);
                    let state = vec![("buf", m[m.len() - 1].clone())];
                    ("sgd", &shaders::SGD, "momentum", state)
                }
                OptimizerConfig::Sgd { .. } => ("sgd", &shaders::SGD, "plain", Vec::new()),
                OptimizerConfig::Adam { .. } => {
                    m.push(zeros("adam m", p)?);
                    v.push(zeros("adam v", p)?);
                    let state = vec![("m", m[m.len() - 1].clone()), ("v", v[v.len() - 1].clone())];
                    ("adam", &shaders::ADAM, "main", state)
                }
            };
            for range in limits::ranges(&ctx.limits, id.name(), p.numel(), 1)? {
                let hyper = wgpu::BufferBinding {
                    buffer: &hyper,
                    offset: 0,
                    size: None,
                };
                let mut bindings = vec![
                    ("hyper", hyper),
                    ("param", p.range(range)),
                    ("grad", g.range(range)),
                ];
                bindings.extend(state.iter().map(|(name, t)| (*name, t.range(range))));
                program.steps.extend(ctx.steps_ranged(
                    label,
                    shader,
                    entry,
                    Dims::default(),
                    &bindings,
                    range.1 as u64,
                )?);
            }
        }
        Ok(GpuOptimizer {
            config,
            hyper,
            m,
            v,
            program,
        })
    }

    /// The scalars of step `t` (1-based), as the host optimizer computes them.
    pub fn hyper(config: &OptimizerConfig, t: u64) -> [f32; 8] {
        match *config {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                weight_decay,
            } => [
                lr,
                momentum,
                weight_decay,
                (t <= 1) as u32 as f32,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
            OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let t = t.min(i32::MAX as u64) as i32;
                let (step_size, bc2_sqrt) = crate::optim::adam_step_scalars(lr, beta1, beta2, t);
                [
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    step_size,
                    bc2_sqrt,
                    0.0,
                    0.0,
                ]
            }
        }
    }

    /// Writes step `t`'s scalars; they reach the GPU with the next submission, before its work.
    pub fn prepare(&self, ctx: &GpuContext, t: u64) {
        let h = Self::hyper(&self.config, t);
        ctx.queue
            .write_buffer(&self.hyper, 0, bytemuck::cast_slice(&h));
    }

    /// Records the update of every parameter.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        self.program.encode(encoder);
    }
}
