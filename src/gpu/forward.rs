//! The forward plan of one (layer, input buffer, shape, mode): buffers allocated and steps bound
//! once, then every call records the same program and submits once.

use crate::config::{DrConvConfig, ForwardShape};
use crate::error::Result;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Dims, Program};
use crate::gpu::shaders;
use crate::params::ParamId;

/// Which forward to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Guide and argmax first, then only each pixel's own region's correlation: r times less
    /// correlation work and no B x r x O x H' x W' tensor.
    Inference,
    /// Every region's correlation (kept for the backward's guide gradient and for inspection).
    Training,
}

/// Buffers and program of one forward.
#[derive(Debug)]
pub struct ForwardPlan {
    pub shape: ForwardShape,
    pub mode: Mode,
    pub input: GpuTensor,
    pub pooled: GpuTensor,
    pub kernel_logits: GpuTensor,
    pub sigmoid: GpuTensor,
    pub kernel: GpuTensor,
    /// B x r x O x H' x W', training mode only.
    pub corr: Option<GpuTensor>,
    pub guide: GpuTensor,
    /// B x H' x W' region indices (i32).
    pub region: GpuTensor,
    pub output: GpuTensor,
    pub program: Program,
}

impl ForwardPlan {
    pub fn build(
        ctx: &GpuContext,
        config: &DrConvConfig,
        params: &GpuParams,
        input: &GpuTensor,
        mode: Mode,
    ) -> Result<Self> {
        let shape = config.forward_shape(&input.shape)?;
        let c = config;
        let s = &shape;
        let pooled = ctx.empty("pooled", &s.pooled(c))?;
        let kernel_logits = ctx.empty("kernel_logits", &s.logits(c))?;
        let sigmoid = ctx.empty("sigmoid", &s.logits(c))?;
        let kernel = ctx.empty("kernel", &s.kernel(c))?;
        let corr = match mode {
            Mode::Training => Some(ctx.empty("corr", &s.corr(c))?),
            Mode::Inference => None,
        };
        let guide = ctx.empty("guide", &s.guide(c))?;
        let region = ctx.empty("region_index", &s.region())?;
        let output = ctx.empty("output", &s.output(c))?;

        let dims = Dims::new(c, s);
        let p = |id: ParamId| &params.get(id).buffer;
        let mut program = Program::default();
        let mut add = |steps: Vec<_>| program.steps.extend(steps);
        add(ctx.steps(
            "adaptive_pool",
            &shaders::ADAPTIVE_POOL,
            "main",
            dims,
            &[(1, &input.buffer), (2, &pooled.buffer)],
            pooled.numel() as u64,
        )?);
        add(ctx.steps(
            "kernel_logits",
            &shaders::KERNEL_LOGITS,
            "main",
            dims,
            &[
                (1, &pooled.buffer),
                (2, p(ParamId::KernelW1)),
                (3, p(ParamId::KernelB1)),
                (4, &kernel_logits.buffer),
                (5, &sigmoid.buffer),
            ],
            kernel_logits.numel() as u64,
        )?);
        add(ctx.steps(
            "kernel_gen",
            &shaders::KERNEL_GEN,
            "main",
            dims,
            &[
                (1, &sigmoid.buffer),
                (2, p(ParamId::KernelW3)),
                (3, p(ParamId::KernelB3)),
                (4, &kernel.buffer),
            ],
            kernel.numel() as u64,
        )?);
        add(ctx.steps(
            "guide_conv",
            &shaders::GUIDE_CONV,
            "main",
            dims,
            &[
                (1, &input.buffer),
                (2, p(ParamId::GuideW)),
                (3, p(ParamId::GuideB)),
                (4, &guide.buffer),
            ],
            guide.numel() as u64,
        )?);
        add(ctx.steps(
            "argmax",
            &shaders::REGION_SELECT,
            "argmax",
            dims,
            &[(1, &guide.buffer), (2, &region.buffer)],
            region.numel() as u64,
        )?);
        match &corr {
            Some(corr) => {
                add(ctx.steps(
                    "corr_all_regions",
                    &shaders::CORRELATION,
                    "all_regions",
                    dims,
                    &[(1, &input.buffer), (2, &kernel.buffer), (3, &corr.buffer)],
                    corr.numel() as u64,
                )?);
                add(ctx.steps(
                    "gather",
                    &shaders::REGION_SELECT,
                    "gather",
                    dims,
                    &[(2, &region.buffer), (3, &corr.buffer), (4, &output.buffer)],
                    output.numel() as u64,
                )?);
            }
            None => add(ctx.steps(
                "corr_selected_region",
                &shaders::CORRELATION,
                "selected_region",
                dims,
                &[
                    (1, &input.buffer),
                    (2, &kernel.buffer),
                    (3, &output.buffer),
                    (4, &region.buffer),
                ],
                output.numel() as u64,
            )?),
        }
        Ok(ForwardPlan {
            shape,
            mode,
            input: input.clone(),
            pooled,
            kernel_logits,
            sigmoid,
            kernel,
            corr,
            guide,
            region,
            output,
            program,
        })
    }

    /// Every tensor this plan writes (not the input).
    pub fn outputs(&self) -> Vec<&GpuTensor> {
        let mut v = vec![
            &self.pooled,
            &self.kernel_logits,
            &self.sigmoid,
            &self.kernel,
            &self.guide,
            &self.region,
            &self.output,
        ];
        v.extend(self.corr.as_ref());
        v
    }

    /// Fills every tensor the plan writes with NaN, so a test can tell "not written" from
    /// "written zero".
    pub fn poison(&self, ctx: &GpuContext) {
        for t in self.outputs() {
            ctx.fill(t, f32::NAN);
        }
    }
}
