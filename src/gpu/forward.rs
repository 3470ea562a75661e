//! The forward plan of one (layer, input buffer, shape, mode): buffers allocated and steps bound
//! once, then every call records the same program and submits once.

use crate::config::{DrConvConfig, ForwardShape};
use crate::error::{DrConvError, Result};
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::params::GpuParams;
use crate::gpu::program::{Dims, Program};
use crate::gpu::shaders;
use crate::gpu::tiles::{corr_entries, corr_kernel_uniform, CorrTiling, CORR_WORKGROUP_BYTES};
use crate::gpu::variants::{KernelGen, Variants};
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

/// The label of the pool's steps (a row split leaves them out of its bands' sub-plans).
pub const POOL_STEP: &str = "adaptive_pool";

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
    /// The correlation's indirect dispatch grid (x, y, z), written with `tiles`; a small tensor
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
        // Beyond the device's binding limits: sub-plans over batch and output-channel chunks
        // (src/gpu/split/).
        if let Some(plan) = crate::gpu::split::forward(ctx, config, params, input, mode)? {
            return Ok(plan);
        }
        // Every tensor checked against the device limits before the first allocation.
        crate::gpu::limits::check_forward(&ctx.limits, config, &shape, mode)?;
        crate::gpu::limits::check_holds("input", input)?;
        let wg_bytes = ctx.limits.max_compute_workgroup_storage_size;
        if wg_bytes < CORR_WORKGROUP_BYTES {
            return Err(DrConvError::TooLarge {
                what: "workgroup memory of the correlation's weight tile vs the device's \
                       max_compute_workgroup_storage_size"
                    .into(),
                size: CORR_WORKGROUP_BYTES as u64,
                limit: wg_bytes as u64,
            });
        }
        let c = config;
        let s = &shape;
        let v = &ctx.variants(c);
        let pooled = ctx.empty("pooled", &s.pooled(c))?;
        let kernel_logits = ctx.empty("kernel_logits", &s.logits(c))?;
        let sigmoid = ctx.empty("sigmoid", &s.logits(c))?;
        // Small kernels go to the correlation through a uniform window (CPU adapters): then the
        // buffers it may read them from (`kernel`, `kernel_t`) can be bound that way.
        let kernel_bytes = 4 * crate::tensor::numel(&s.kernel(c)) as u64;
        let kernel_ubo = corr_kernel_uniform(v, &ctx.limits, kernel_bytes);
        let kernel_buffer = |label: &str| match kernel_ubo {
            true => ctx.empty_uniform(label, &s.kernel(c)),
            false => ctx.empty(label, &s.kernel(c)),
        };
        let kernel = kernel_buffer("kernel")?;
        let corr = match mode {
            Mode::Training => Some(ctx.empty("corr", &s.corr(c))?),
            Mode::Inference => None,
        };
        let guide = ctx.empty("guide", &s.guide(c))?;
        let region = ctx.empty("region_index", &s.region())?;
        let (kg_shader, kg_entry, kg_items, kg_aux) = kernel_gen_entry(v, c, s.batch as u64);
        // The k = 3 kernel generator writes the correlation's channel-last kernel rows itself
        // (then no transpose); in inference only those, into `kernel` (`kernel_channel_last`).
        let k3 = *kg_shader == shaders::KERNEL_GEN_K3;
        let cl = v.channel_last();
        let writes_t = k3 && cl;
        let kernel_channel_last = writes_t && mode == Mode::Inference;
        let channel_last = match cl {
            true => Some(ChannelLast {
                x_t: ctx.empty("x_t", &s.input(c))?,
                kernel_t: match kernel_channel_last {
                    true => kernel.clone(),
                    false => kernel_buffer("kernel_t")?,
                },
                guide_w_t: ctx.empty(
                    "guide_w_t",
                    &[c.kernel_size * c.kernel_size, c.region_num, c.in_channels],
                )?,
            }),
            false => None,
        };
        // The fused correlation's tiling, and the most pixel tiles its regions can need.
        let sel_tiling = CorrTiling::per_region(
            c.out_channels as u64,
            (s.out_height * s.out_width) as u64,
            c.region_num as u64,
            v.staged(),
        );
        let sel_slots =
            (s.out_height * s.out_width).div_ceil(sel_tiling.pixels() as usize) + c.region_num - 1;
        let indirect = v.device_grid;
        let lists = match mode {
            Mode::Inference => Some(RegionLists {
                order: ctx.empty("region_order", &s.region())?,
                starts: ctx.empty("region_starts", &[s.batch, c.region_num + 1])?,
                tiles: ctx.empty("corr_tiles", &[1 + 3 * s.batch * sel_slots])?,
                tile_args: match indirect {
                    true => ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("corr_tile_args"),
                        size: 16,
                        usage: wgpu::BufferUsages::STORAGE
                            | wgpu::BufferUsages::INDIRECT
                            | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    }),
                    false => ctx.empty("corr_tile_args", &[4])?.buffer,
                },
            }),
            Mode::Training => None,
        };
        let output = ctx.empty("output", &s.output(c))?;

        let dims = Dims::new(c, s);
        let p = |id: ParamId| &params.get(id).buffer;
        let (batch, hw) = (s.batch as u64, (s.out_height * s.out_width) as u64);
        let (r, o) = (c.region_num as u64, c.out_channels as u64);
        let mut program = Program::default();
        let mut add = |steps: Vec<_>| program.steps.extend(steps);
        add(ctx.steps(
            POOL_STEP,
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
        // The k = 3 generator declares both layouts' bindings; the one it does not write gets a
        // small buffer of its own (WebGPU forbids one buffer at two writable bindings).
        let bits = match (writes_t, kernel_channel_last) {
            (false, _) => 1,
            (true, false) => 3,
            (true, true) => 2,
        };
        let unused = match k3 && bits != 3 {
            true => Some(ctx.empty("kernel_gen unwritten layout", &[4])?),
            false => None,
        };
        let (laid_out, kernel_t) = match (&unused, &channel_last) {
            (Some(u), _) if kernel_channel_last => (u, &kernel),
            (Some(u), _) => (&kernel, u),
            (None, Some(cl)) => (&kernel, &cl.kernel_t),
            (None, None) => (&kernel, &kernel),
        };
        let mut buffers = vec![
            (1, &sigmoid.buffer),
            (2, p(ParamId::KernelW3)),
            (3, p(ParamId::KernelB3)),
            (4, &laid_out.buffer),
        ];
        if k3 {
            buffers.push((5, &kernel_t.buffer));
        }
        let kdims = Dims {
            aux0: kg_aux,
            aux1: bits,
            ..dims
        };
        add(ctx.steps("kernel_gen", kg_shader, kg_entry, kdims, &buffers, kg_items)?);
        if let Some(cl) = &channel_last {
            let (i, hw_in, kk) = (
                c.in_channels,
                s.height * s.width,
                c.kernel_size * c.kernel_size,
            );
            add(ctx.transpose_steps("corr_x_t", dims, input, &cl.x_t, (i, hw_in))?);
            if !writes_t {
                add(ctx.transpose_steps("corr_kernel_t", dims, &kernel, &cl.kernel_t, (i, kk))?);
            }
            // The guide weight [r*I, k*k] as k*k x r*I.
            let (w, ri) = (params.get(ParamId::GuideW), (c.region_num * i, kk));
            add(ctx.transpose_steps("guide_weight_t", dims, w, &cl.guide_w_t, ri)?);
        }
        // 8 pixels x 4 regions per invocation up to r = 4, else 4 pixels x 8 regions.
        let (guide_entry, guide_px) = match (r <= 4, channel_last.is_some()) {
            (true, false) => ("guide_argmax4", 8),
            (false, false) => ("guide_argmax8", 4),
            (true, true) => ("guide_argmax4_cl", 8),
            (false, true) => ("guide_argmax8_cl", 4),
        };
        let mut guide_buffers = vec![
            (3, p(ParamId::GuideB)),
            (4, &guide.buffer),
            (5, &region.buffer),
        ];
        match &channel_last {
            Some(cl) => guide_buffers.extend([(6, &cl.x_t.buffer), (7, &cl.guide_w_t.buffer)]),
            None => guide_buffers.extend([(1, &input.buffer), (2, p(ParamId::GuideW))]),
        }
        add(ctx.steps(
            "guide_argmax",
            &shaders::GUIDE_CONV,
            guide_entry,
            dims,
            &guide_buffers,
            (region.numel() as u64).div_ceil(64 * guide_px) * 64,
        )?);
        // What the correlation reads x and the kernel from: every entry declares every source
        // (the variant is a constant argument of shared code), the unused ones get any buffer.
        // Binding 6 (vec4s) is the kernel as laid out for `_direct4`, its channel-last copy for
        // `_cl4`.
        let (x_t, kernel_t) = match &channel_last {
            Some(cl) => (&cl.x_t, &cl.kernel_t),
            None => (input, &kernel),
        };
        let xk: Vec<(u32, &wgpu::Buffer)> = vec![
            (1, &input.buffer),
            (2, &kernel.buffer),
            (6, &kernel_t.buffer),
            (7, &x_t.buffer),
        ];
        let corr_shader = match kernel_ubo {
            true => &shaders::CORRELATION_UBO,
            false => &shaders::CORRELATION,
        };
        if let Some(corr) = &corr {
            let t = CorrTiling::dense(r * o, hw, v.staged());
            let tiled = Dims {
                aux0: t.groups as u32,
                ..dims
            };
            add(ctx.group_steps(
                "corr_all_regions",
                corr_shader,
                corr_entries(v).0,
                tiled,
                &[&[(3, &corr.buffer)], &xk[..]].concat(),
                batch * (r * o).div_ceil(t.rows()) * hw.div_ceil(t.pixels()),
            )?);
            add(ctx.steps(
                "gather",
                &shaders::REGION_SELECT,
                "gather",
                dims,
                &[(2, &region.buffer), (3, &corr.buffer), (4, &output.buffer)],
                output.numel() as u64,
            )?);
        } else if let Some(lists) = &lists {
            add(ctx.group_steps(
                "region_lists",
                &shaders::REGION_SELECT,
                "lists",
                dims,
                &[
                    (2, &region.buffer),
                    (5, &lists.order.buffer),
                    (6, &lists.starts.buffer),
                ],
                batch,
            )?);
            let t = sel_tiling;
            let tiled = Dims {
                aux0: t.groups as u32,
                ..dims
            };
            // The pixel tiles that hold pixels, and the dispatch grid that covers exactly them.
            add(ctx.steps(
                "corr_tiles",
                &shaders::REGION_SELECT,
                "tiles",
                Dims {
                    aux1: ctx.max_grid_dim(),
                    ..tiled
                },
                &[
                    (6, &lists.starts.buffer),
                    (7, &lists.tiles.buffer),
                    (8, &lists.tile_args),
                ],
                64,
            )?);
            // Region g needs ceil(n_g / tile) pixel tiles; over all regions that is at most
            // ceil(H'W' / tile) + r - 1 per sample: the grid where it cannot be sized on the
            // device (no indirect dispatch), and the bound the shader checks either way.
            let mut corr_steps = ctx.group_steps(
                "corr_selected",
                corr_shader,
                corr_entries(v).1,
                tiled,
                &[
                    &[
                        (3, &output.buffer),
                        (4, &lists.order.buffer),
                        (5, &lists.tiles.buffer),
                    ],
                    &xk[..],
                ]
                .concat(),
                batch * o.div_ceil(t.rows()) * sel_slots as u64,
            )?;
            if indirect && corr_steps.len() == 1 {
                corr_steps = corr_steps
                    .into_iter()
                    .map(|s| s.indirect(&lists.tile_args))
                    .collect();
            }
            add(corr_steps);
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
            lists,
            channel_last,
            output,
            program,
            kernel_channel_last,
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

/// The kernel generator's shader, entry point and invocation count for `v.kernel_gen`
/// (`Variants::choose` picks it), and `d.aux0` of the step: for the k = 3 kernels, the blocks of
/// 8 channels per invocation (4 or 2 where they divide I*O / 8 and leave 256 invocations or
/// more: the sigmoid map is then read once for them all).
pub fn kernel_gen_entry(
    v: &Variants,
    c: &DrConvConfig,
    batch: u64,
) -> (&'static shaders::Shader, &'static str, u64, u32) {
    let (r, io) = (c.region_num as u64, (c.in_channels * c.out_channels) as u64);
    let kk = (c.kernel_size * c.kernel_size) as u64;
    match v.kernel_gen {
        KernelGen::UnrolledK3 => {
            let entry = if r == 8 { "main_r8" } else { "main_r4" };
            let blocks = batch * r * io / 8;
            let nb = [4, 2]
                .into_iter()
                .find(|&nb| (io / 8).is_multiple_of(nb) && blocks / nb >= 256)
                .unwrap_or(1);
            (&shaders::KERNEL_GEN_K3, entry, blocks / nb, nb as u32)
        }
        KernelGen::Registers => (
            &shaders::KERNEL_GEN,
            "main_r8",
            batch * r * io.div_ceil(8),
            0,
        ),
        KernelGen::Blocked => (
            &shaders::KERNEL_GEN,
            "main",
            batch * r * io.div_ceil(8) * kk.div_ceil(4),
            0,
        ),
    }
}
