//! Planning above building: every forward and backward plan starts here. The shape is checked
//! against the device's limits once, the split decision (`split::forward_split`,
//! `split::backward_split`) is made once, and then either the unsplit builder
//! (`ForwardPlan::build`, `BackwardPlan::build`) or the split one (`split::forward`,
//! `split::backward`, which run unsplit builders per chunk size) allocates and binds. No builder
//! calls back up here.

use crate::config::{DrConvConfig, Mode};
use crate::error::Result;
use crate::gpu::backward::{training_corr, BackwardPlan};
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::forward::ForwardPlan;
use crate::gpu::params::GpuParams;
use crate::gpu::split;

/// The forward plan of inputs of `input_shape` in `mode`: its own input tensor (every call's
/// input is copied into it, so one plan serves any buffer of the shape), its shape's buffers
/// allocated and bound. Refuses, before allocating, a shape no split fits, naming the tensor
/// and the limit.
pub fn forward(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    input_shape: &[usize],
    mode: Mode,
) -> Result<ForwardPlan> {
    let shape = config.forward_shape(input_shape)?;
    let split = split::forward_split(&ctx.limits, config, &shape, mode)?;
    match split.splits(config, &shape) {
        true => {
            // A split plan only copies chunks out of its input, so the input is never bound whole.
            let input = ctx.empty_stored("input", input_shape)?;
            split::forward(ctx, config, params, &input, mode, split)
        }
        false => {
            let input = ctx.empty("input", input_shape)?;
            ForwardPlan::build(ctx, config, params, &input, mode)
        }
    }
}

/// The backward plan of the training forward `fwd`, writing the parameter gradients into
/// `param_grads`.
pub fn backward(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    fwd: &ForwardPlan,
    param_grads: &[GpuTensor; 6],
) -> Result<BackwardPlan> {
    training_corr(fwd)?;
    let split = split::backward_split(&ctx.limits, config, &fwd.shape)?;
    match split.splits(config, &fwd.shape) {
        true => split::backward(ctx, config, params, fwd, param_grads, split),
        false => BackwardPlan::build(ctx, config, params, fwd, param_grads),
    }
}

/// The unsplit inference plan of `input_shape` with the fused correlation's per-(sample, region)
/// per-region uniform bindings off: the alternative `crate::gpu::autotune` times against a plan with them (which
/// is unsplit: only unsplit plans take them).
#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub(crate) fn forward_without_per_region_uniform(
    ctx: &GpuContext,
    config: &DrConvConfig,
    params: &GpuParams,
    input_shape: &[usize],
) -> Result<ForwardPlan> {
    let input = ctx.empty("input", input_shape)?;
    ForwardPlan::build_with(ctx, config, params, &input, Mode::Inference, false)
}
