//! The forward plan of one (layer, input buffer, shape, mode): buffers allocated and steps bound
//! once, then every call records the same program and submits once.

use crate::config::{DrConvConfig, ForwardShape, Mode};
use crate::error::Result;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::decide::Decisions;
use crate::gpu::decide::Target;
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Program, Step};
use crate::gpu::stages::forward::{CorrSources, KernelTargets, ListBuffers, LogitBuffers};
use crate::gpu::stages::Stages;

pub use crate::gpu::stages::forward::POOL_STEP;

/// Per-region pixel lists of the fused path (see `shaders/region_select.wgsl` `lists`).
#[derive(Debug)]
pub struct RegionLists {
    /// B x H' x W' pixel indices (u32), grouped by region, ascending within a region.
    pub order: GpuTensor,
    /// B x (r+1) offsets (u32) into a sample's `order`: region g is `starts[g]..starts[g+1]`.
    pub starts: GpuTensor,
    /// The correlation's pixel tiles (u32): `[0]` their number n, then per tile `b * r + g`, its
    /// first index into sample b's `order` and its pixel count (`shaders/region_select.wgsl`
    /// `tiles`).
    pub tiles: GpuTensor,
    /// The correlation's indirect dispatch grid (x, y, z), written with `tiles`, then at
    /// 16 (1 + j) bytes the grid of (sample, region) j alone (`selected_channel_last_per_region`); a small tensor
    /// the shader writes but no dispatch reads where the grid is sized on the host
    /// (`GpuContext::indirect` off, or `DRCONV_INDIRECT=0`).
    pub tile_args: wgpu::Buffer,
}

/// Channel-last copies the correlation reads on CPU adapters (`corr_channel_last`).
#[derive(Debug)]
pub struct ChannelLast {
    /// B x H x W x I.
    pub x_t: GpuTensor,
    /// The kernel's rows with the inner index in (u, v, i) order: B*r*O x k*k x I (the plan's
    /// `kernel` buffer itself when `Decisions::kernel_channel_last`).
    pub kernel_t: GpuTensor,
    /// The guide conv's weights as k*k x r x I (bindable as a uniform where
    /// `Decisions::guide_uniform`).
    pub guide_w_t: GpuTensor,
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
    /// Inference mode only.
    pub lists: Option<RegionLists>,
    pub channel_last: Option<ChannelLast>,
    /// The GEMM correlation's partial outputs, one per K slice, where it has more than one.
    pub slice_parts: Option<GpuTensor>,
    pub output: GpuTensor,
    pub program: Program,
    /// Every per-shape decision the plan was built with (`crate::gpu::decide`).
    pub decisions: Decisions,
}

impl RegionLists {
    /// The fused path's lists, sized for the most tiles the regions can need.
    fn allocate(st: &Stages<'_>) -> Result<Self> {
        let (ctx, c, s) = (st.ctx, st.c, st.s);
        let slots = st.d.corr.slots;
        Ok(RegionLists {
            order: ctx.empty("region_order", &s.region())?,
            starts: ctx.empty("region_starts", &[s.batch, c.region_num + 1])?,
            tiles: ctx.empty("corr_tiles", &[1 + 3 * s.batch * slots])?,
            tile_args: match st.v.device_grid {
                true => ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("corr_tile_args"),
                    size: 16 * (1 + (s.batch * c.region_num) as u64),
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::INDIRECT
                        | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                false => {
                    ctx.empty("corr_tile_args", &[4 * (1 + s.batch * c.region_num)])?
                        .buffer
                }
            },
        })
    }
}

impl ForwardPlan {
    /// Allocates and binds the unsplit forward of `input`. `crate::gpu::plan::forward` is the
    /// entry: it checked the shape against the device's limits and decided that no split is
    /// needed (split plans build their parts with [`ForwardPlan::build_part`]).
    pub(crate) fn build(
        ctx: &GpuContext,
        config: &DrConvConfig,
        params: &GpuParams,
        input: &GpuTensor,
        mode: Mode,
    ) -> Result<Self> {
        Self::build_measured(Target::of(ctx), ctx, config, params, (input, mode))
    }

    /// A split plan's part: [`ForwardPlan::build`] with no stages sharing a dispatch (a band's
    /// part runs without its pool, which the split computes over the whole input).
    pub(crate) fn build_part(
        ctx: &GpuContext,
        config: &DrConvConfig,
        params: &GpuParams,
        input: &GpuTensor,
        mode: Mode,
    ) -> Result<Self> {
        let target = Target {
            merge_stages: false,
            ..Target::of(ctx)
        };
        Self::build_measured(target, ctx, config, params, (input, mode))
    }

    /// [`ForwardPlan::build_on`] with the per-region uniform bindings as the context measured
    /// (or allowed, where not measured yet).
    fn build_measured(
        target: Target,
        ctx: &GpuContext,
        config: &DrConvConfig,
        params: &GpuParams,
        (input, mode): (&GpuTensor, Mode),
    ) -> Result<Self> {
        let per_region = ctx.per_region_uniform_choice(config, &input.shape) != Some(false);
        Self::build_on(target, ctx, config, params, input, (mode, per_region))
    }

    /// [`ForwardPlan::build`], with the fused correlation's per-region uniform bindings allowed
    /// (where the shape rule takes them) or not.
    pub(crate) fn build_with(
        ctx: &GpuContext,
        config: &DrConvConfig,
        params: &GpuParams,
        input: &GpuTensor,
        mode: Mode,
        per_region: bool,
    ) -> Result<Self> {
        let target = Target::of(ctx);
        Self::build_on(target, ctx, config, params, input, (mode, per_region))
    }

    fn build_on(
        target: Target,
        ctx: &GpuContext,
        config: &DrConvConfig,
        params: &GpuParams,
        input: &GpuTensor,
        (mode, per_region): (Mode, bool),
    ) -> Result<Self> {
        let shape = config.forward_shape(&input.shape)?;
        let d = crate::gpu::decide::decide(&target, config, &shape, mode, per_region);
        let st = Stages::new(ctx, config, &shape, &d, params);
        let mut plan = Self::allocate(&st, input)?;
        plan.program = Program {
            steps: plan.stages(&st)?,
        };
        Ok(plan)
    }

    /// The plan's stages in order (see `crate::gpu::stages::forward`).
    fn stages(&self, st: &Stages<'_>) -> Result<Vec<Step>> {
        let d = &self.decisions;
        let mut steps = match d.pool_with_guide {
            true => st.pool_guide(&self.input, &self.pooled, &self.guide, &self.region)?,
            false => st.pool(&self.input, &self.pooled)?,
        };
        let logits = LogitBuffers {
            pooled: &self.pooled,
            logits: &self.kernel_logits,
            sigmoid: &self.sigmoid,
        };
        if d.gen_with_logits.is_none() {
            steps.extend(st.logits(&logits)?);
        }
        let cl = self.channel_last.as_ref();
        let lists = self.lists.as_ref().map(|l| ListBuffers {
            order: &l.order,
            starts: &l.starts,
            tiles: &l.tiles,
            tile_args: &l.tile_args,
        });
        if let (true, Some(lists)) = (d.gen_with_lists, &lists) {
            steps.extend(st.gen_lists(&logits, &self.kernel, &self.region, lists)?);
        } else {
            steps.extend(self.kernel_gen(st)?);
        }
        if let Some(cl) = cl {
            let copies = (&cl.x_t, &cl.kernel_t, &cl.guide_w_t);
            let wrote = d.generator_writes_rows;
            steps.extend(st.channel_last(&self.input, &self.kernel, copies, wrote)?);
        }
        if !d.pool_with_guide {
            let cl_guide = cl.map(|cl| (&cl.x_t, &cl.guide_w_t));
            steps.extend(st.guide_argmax(&self.input, cl_guide, &self.guide, &self.region)?);
        }
        let src = CorrSources {
            x: &self.input,
            kernel: &self.kernel,
            kernel4: cl.map_or(&self.kernel, |cl| &cl.kernel_t),
            x_t4: cl.map_or(&self.input, |cl| &cl.x_t),
        };
        if let Some(corr) = &self.corr {
            steps.extend(st.corr_all_regions(&src, corr, self.slice_parts.as_ref())?);
            steps.extend(st.gather(&self.region, corr, &self.output)?);
        } else if let Some(lists) = &lists {
            if !d.gen_with_lists {
                steps.extend(st.region_lists(&self.region, lists)?);
            }
            steps.extend(match d.per_region_uniform {
                Some(block) => st.corr_per_region(&src, lists, &self.output, block)?,
                None => st.corr_selected(&src, lists, &self.output, self.slice_parts.as_ref())?,
            });
        }
        Ok(steps)
    }

    /// The kernel generator's stage, writing what the decisions say.
    fn kernel_gen(&self, st: &Stages<'_>) -> Result<Vec<Step>> {
        let cl = self.channel_last.as_ref();
        st.kernel_gen(
            &self.sigmoid,
            KernelTargets {
                kernel: &self.kernel,
                kernel_t: cl
                    .filter(|_| self.decisions.generator_writes_rows)
                    .map(|cl| &cl.kernel_t),
                channel_last_only: self.decisions.kernel_channel_last,
            },
        )
    }

    /// Every buffer of the plan, as the decisions lay them out; its program still empty.
    fn allocate(st: &Stages<'_>, input: &GpuTensor) -> Result<Self> {
        let (ctx, c, s, d) = (st.ctx, st.c, st.s, st.d);
        let kernel_bytes = 4 * crate::tensor::numel(&s.kernel(c)) as u64;
        // A uniform kernel, or per-region uniform bindings, need buffers bindable as uniforms.
        let kernel_buffer = |label: &str| match (d.uniform_kernel, d.per_region_uniform) {
            (true, _) => ctx.empty_uniform(label, &s.kernel(c)),
            (false, Some(block)) => {
                ctx.empty_uniform_from(label, &s.kernel(c), kernel_bytes - block)
            }
            (false, None) => ctx.empty(label, &s.kernel(c)),
        };
        let kernel = kernel_buffer("kernel")?;
        let guide_w = [c.kernel_size * c.kernel_size, c.region_num, c.in_channels];
        let channel_last = match d.variants.channel_last() {
            true => Some(ChannelLast {
                x_t: ctx.empty("x_t", &s.input(c))?,
                kernel_t: match d.kernel_channel_last {
                    true => kernel.clone(),
                    false => kernel_buffer("kernel_t")?,
                },
                guide_w_t: match d.guide_uniform {
                    true => ctx.empty_uniform("guide_w_t", &guide_w),
                    false => ctx.empty("guide_w_t", &guide_w),
                }?,
            }),
            false => None,
        };
        let mode = d.mode;
        let corr_out = match mode {
            Mode::Training => crate::tensor::numel(&s.corr(c)),
            Mode::Inference => crate::tensor::numel(&s.output(c)),
        };
        let slices = d.corr.slices as usize;
        let slice_parts = match slices > 1 {
            true => Some(ctx.empty("corr_slices", &[slices, corr_out])?),
            false => None,
        };
        let (corr, lists) = match mode {
            Mode::Training => (Some(ctx.empty("corr", &s.corr(c))?), None),
            Mode::Inference => (None, Some(RegionLists::allocate(st)?)),
        };
        Ok(ForwardPlan {
            shape: *s,
            mode,
            input: input.clone(),
            pooled: ctx.empty("pooled", &s.pooled(c))?,
            kernel_logits: ctx.empty("kernel_logits", &s.logits(c))?,
            sigmoid: ctx.empty("sigmoid", &s.logits(c))?,
            kernel,
            corr,
            guide: ctx.empty("guide", &s.guide(c))?,
            region: ctx.empty("region_index", &s.region())?,
            lists,
            channel_last,
            slice_parts,
            output: ctx.empty("output", &s.output(c))?,
            program: Program::default(),
            decisions: *d,
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
        v.extend(self.slice_parts.as_ref());
        if let Some(l) = &self.lists {
            v.extend([&l.order, &l.starts, &l.tiles]);
        }
        if let Some(cl) = &self.channel_last {
            v.extend([&cl.x_t, &cl.kernel_t, &cl.guide_w_t]);
        }
        v
    }

    /// Bytes of every buffer the plan binds except the parameters: input, intermediates, output.
    pub fn buffer_bytes(&self) -> u64 {
        let mut bufs: Vec<&wgpu::Buffer> = Vec::new();
        for t in self.outputs().into_iter().chain([&self.input]) {
            if !bufs.contains(&&t.buffer) {
                bufs.push(&t.buffer);
            }
        }
        bufs.iter().map(|b| b.size()).sum()
    }

    /// Fills every tensor the plan writes with NaN, so a test can tell "not written" from
    /// "written zero".
    pub fn poison(&self, ctx: &GpuContext) {
        for t in self.outputs() {
            ctx.fill(t, f32::NAN);
        }
    }
}
