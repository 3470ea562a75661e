//! The forward plan of one (layer, input buffer, shape, mode): buffers allocated and steps bound
//! once, then every call records the same program and submits once.

use crate::config::{DrConvConfig, ForwardShape, Mode};
use crate::error::Result;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::correlation::{corr_region_windows, fits_uniform_window};
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Program, Step};
use crate::gpu::shaders;
use crate::gpu::stages::forward::{CorrSources, KernelTargets, ListBuffers};
use crate::gpu::stages::Stages;
use crate::gpu::variants::KernelGen;

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
    /// 16 (1 + j) bytes the grid of (sample, region) j alone (`selected_cl4_window`); a small tensor
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
    /// `kernel` buffer itself when `ForwardPlan::kernel_channel_last`).
    pub kernel_t: GpuTensor,
    /// The guide conv's weights as k*k x r x I.
    pub guide_w_t: GpuTensor,
    /// Whether the guide reads `guide_w_t` as a uniform window (`shaders::GUIDE_CONV_UBO`).
    pub guide_w_uniform: bool,
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
    pub output: GpuTensor,
    pub program: Program,
    /// `kernel` holds the correlation's channel-last rows (B*r*O x k*k x I; inference on CPU
    /// adapters, see `ChannelLast`) rather than the layout its shape says: `read_trace` permutes
    /// it back.
    pub kernel_channel_last: bool,
    /// The unrolled k = 3 generator writes the correlation's channel-last kernel rows itself.
    pub(crate) generator_writes_rows: bool,
    /// The correlation reads its kernel rows through the uniform window.
    pub(crate) kernel_window: bool,
    /// The fused correlation reads each (sample, region)'s kernel rows, this many bytes, through
    /// a uniform window of its own (`corr_region_windows`).
    pub region_windows: Option<u64>,
}

impl RegionLists {
    /// The fused path's lists, sized for the most tiles the regions can need.
    fn allocate(st: &Stages<'_>) -> Result<Self> {
        let (ctx, c, s) = (st.ctx, st.c, st.s);
        let slots = st.fused_tiling().1;
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
    /// needed (split plans build their sub-plans with this too, on shapes it checked).
    pub(crate) fn build(
        ctx: &GpuContext,
        config: &DrConvConfig,
        params: &GpuParams,
        input: &GpuTensor,
        mode: Mode,
    ) -> Result<Self> {
        let windows = ctx.region_windows_choice(config, &input.shape) != Some(false);
        Self::build_with(ctx, config, params, input, mode, windows)
    }

    /// [`ForwardPlan::build`], with the fused correlation's per-(sample, region) windows allowed
    /// (where the shape rule takes them) or not.
    pub(crate) fn build_with(
        ctx: &GpuContext,
        config: &DrConvConfig,
        params: &GpuParams,
        input: &GpuTensor,
        mode: Mode,
        windows: bool,
    ) -> Result<Self> {
        let shape = config.forward_shape(&input.shape)?;
        let v = ctx.variants(config);
        let st = Stages::new(ctx, config, &shape, &v, params);
        let mut plan = Self::allocate(&st, input, mode, windows)?;
        plan.program = Program {
            steps: plan.stages(&st)?,
        };
        Ok(plan)
    }

    /// The plan's stages in order (see `crate::gpu::stages::forward`).
    fn stages(&self, st: &Stages<'_>) -> Result<Vec<Step>> {
        let mut steps = st.pool(&self.input, &self.pooled)?;
        steps.extend(st.logits(&self.pooled, &self.kernel_logits, &self.sigmoid)?);
        let cl = self.channel_last.as_ref();
        steps.extend(
            st.kernel_gen(
                &self.sigmoid,
                KernelTargets {
                    kernel: &self.kernel,
                    kernel_t: cl
                        .filter(|_| self.generator_writes_rows)
                        .map(|cl| &cl.kernel_t),
                    channel_last_only: self.kernel_channel_last,
                },
            )?,
        );
        if let Some(cl) = cl {
            let copies = (&cl.x_t, &cl.kernel_t, &cl.guide_w_t);
            let wrote = self.generator_writes_rows;
            steps.extend(st.channel_last(&self.input, &self.kernel, copies, wrote)?);
        }
        let cl_guide = cl.map(|cl| (&cl.x_t, &cl.guide_w_t, cl.guide_w_uniform));
        steps.extend(st.guide_argmax(&self.input, cl_guide, &self.guide, &self.region)?);
        let src = CorrSources {
            x: &self.input,
            kernel: &self.kernel,
            kernel4: cl.map_or(&self.kernel, |cl| &cl.kernel_t),
            x_t4: cl.map_or(&self.input, |cl| &cl.x_t),
            shader: match self.kernel_window || self.region_windows.is_some() {
                true => &shaders::CORRELATION_UBO,
                false => &shaders::CORRELATION,
            },
        };
        if let Some(corr) = &self.corr {
            steps.extend(st.corr_all_regions(&src, corr)?);
            steps.extend(st.gather(&self.region, corr, &self.output)?);
        } else if let Some(l) = &self.lists {
            let lists = ListBuffers {
                order: &l.order,
                starts: &l.starts,
                tiles: &l.tiles,
                tile_args: &l.tile_args,
            };
            steps.extend(st.region_lists(&self.region, &lists)?);
            steps.extend(match self.region_windows {
                Some(block) => st.corr_windows(&src, &lists, &self.output, block)?,
                None => st.corr_selected(&src, &lists, &self.output)?,
            });
        }
        Ok(steps)
    }

    /// Every buffer of the plan, its program still empty.
    fn allocate(
        st: &Stages<'_>,
        input: &GpuTensor,
        mode: Mode,
        allow_windows: bool,
    ) -> Result<Self> {
        let (ctx, c, s, v) = (st.ctx, st.c, st.s, st.v);
        // Small kernels go to the correlation through a uniform window (CPU adapters): then the
        // buffers it may read them from (`kernel`, `kernel_t`) can be bound that way.
        let kernel_bytes = 4 * crate::tensor::numel(&s.kernel(c)) as u64;
        let kernel_window = fits_uniform_window(v, &ctx.limits, kernel_bytes);
        // Else, in inference, a window per (sample, region) where one region's rows fit.
        let windows = (s.batch * c.region_num) as u64;
        let block = kernel_bytes / windows.max(1);
        let region_windows = (mode == Mode::Inference
            && allow_windows
            && !kernel_window
            && corr_region_windows(v, &ctx.limits, block, windows))
        .then_some(block);
        let kernel_buffer = |label: &str| match (kernel_window, region_windows) {
            (true, _) => ctx.empty_uniform(label, &s.kernel(c)),
            (false, Some(block)) => ctx.empty_windowed(label, &s.kernel(c), kernel_bytes - block),
            (false, None) => ctx.empty(label, &s.kernel(c)),
        };
        let kernel = kernel_buffer("kernel")?;
        // The k = 3 generator writes the correlation's channel-last kernel rows itself (then no
        // transpose); in inference only those, into `kernel` (`kernel_channel_last`).
        let generator_writes_rows = v.kernel_gen == KernelGen::UnrolledK3 && v.channel_last();
        let kernel_channel_last = generator_writes_rows && mode == Mode::Inference;
        // The guide's weights, small, through a uniform window too where they fit.
        let guide_w = [c.kernel_size * c.kernel_size, c.region_num, c.in_channels];
        let guide_uniform =
            fits_uniform_window(v, &ctx.limits, 4 * crate::tensor::numel(&guide_w) as u64);
        let channel_last = match v.channel_last() {
            true => Some(ChannelLast {
                x_t: ctx.empty("x_t", &s.input(c))?,
                kernel_t: match kernel_channel_last {
                    true => kernel.clone(),
                    false => kernel_buffer("kernel_t")?,
                },
                guide_w_t: match guide_uniform {
                    true => ctx.empty_uniform("guide_w_t", &guide_w),
                    false => ctx.empty("guide_w_t", &guide_w),
                }?,
                guide_w_uniform: guide_uniform,
            }),
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
            output: ctx.empty("output", &s.output(c))?,
            program: Program::default(),
            kernel_channel_last,
            generator_writes_rows,
            kernel_window,
            region_windows,
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
