//! Ops as small stage builders: each stage of the forward (`forward`) and of the backward
//! (`backward`) is one function that binds the plan's buffers, by their names in the shader, and
//! returns its steps. The plan builders (`crate::gpu::forward`, `crate::gpu::backward`) allocate
//! the buffers and read as a list of these stages.

pub mod backward;
pub mod forward;

use crate::config::{DrConvConfig, ForwardShape};
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::decide::Decisions;
use crate::gpu::params::GpuParams;
use crate::gpu::program::Dims;
use crate::gpu::variants::Variants;
use crate::gpu::{buffers::GpuTensor, program::Step, shaders};
use crate::params::ParamId;

/// What every stage of one plan reads: the device, the layer, the shape, the plan's decisions
/// (`crate::gpu::decide`) and the variants among them, its parameters and the plan's uniform.
pub struct Stages<'a> {
    pub ctx: &'a GpuContext,
    pub c: &'a DrConvConfig,
    pub s: &'a ForwardShape,
    pub d: &'a Decisions,
    pub v: &'a Variants,
    pub params: &'a GpuParams,
    pub dims: Dims,
}

/// A buffer for `parts` partial results of `elements` floats each (K slices, chunks), where there
/// is more than one part; else a 4-float placeholder for the binding the shader still declares
/// (one part is written to its output directly).
pub fn partials(ctx: &GpuContext, label: &str, parts: u64, elements: usize) -> Result<GpuTensor> {
    match parts {
        0 | 1 => ctx.empty(&format!("{label} unused"), &[4]),
        n => ctx.empty(label, &[n as usize, elements]),
    }
}

impl<'a> Stages<'a> {
    pub fn new(
        ctx: &'a GpuContext,
        c: &'a DrConvConfig,
        s: &'a ForwardShape,
        d: &'a Decisions,
        params: &'a GpuParams,
    ) -> Self {
        Stages {
            ctx,
            c,
            s,
            d,
            v: &d.variants,
            params,
            dims: Dims::new(c, s),
        }
    }

    fn param(&self, id: ParamId) -> &'a wgpu::Buffer {
        &self.params.get(id).buffer
    }

    /// Each sample's pixels grouped by region (`region_select.wgsl` `lists`, a stable counting
    /// sort, one workgroup per sample): the fused path's lists on the CPU family and both
    /// families' backward lists.
    fn pixel_lists(
        &self,
        region: &GpuTensor,
        order: &GpuTensor,
        starts: &GpuTensor,
    ) -> Result<Vec<Step>> {
        self.ctx.group_steps(
            "region_lists",
            &shaders::REGION_SELECT,
            "lists",
            self.dims,
            &[
                ("region", &region.buffer),
                ("order", &order.buffer),
                ("starts", &starts.buffer),
            ],
            self.s.batch as u64,
        )
    }
}
