//! The forward's stages, one function each: pool, kernel logits, kernel generation, the
//! channel-last copies, guide conv + argmax, and then either every region's correlation and the
//! gather (training) or the region lists, the tiles and the selected region's correlation
//! (inference). Each binds the plan's buffers by their names in the shader and returns its steps.

use super::Stages;
use crate::error::{DrConvError, Result};
use crate::gpu::buffers::{GpuTensor, UNIFORM_BINDING_BYTES};
use crate::gpu::decide::logits_gen_groups;
use crate::gpu::program::Step;
use crate::gpu::shaders::{self, WG};
use crate::gpu::variants::KernelGen;
use crate::params::ParamId;

/// The label of the pool's steps (a row split leaves them out of its bands' sub-plans).
pub const POOL_STEP: &str = "adaptive_pool";

/// Where the kernel generator writes (see [`Stages::kernel_gen`]).
pub struct KernelTargets<'a> {
    /// The kernel as its shape says (or, when `channel_last_only`, its channel-last rows).
    pub kernel: &'a GpuTensor,
    /// The correlation's channel-last copy of the kernel, where it has one.
    pub kernel_t: Option<&'a GpuTensor>,
    /// Inference with the unrolled k = 3 generator on channel-last adapters: only the channel-last
    /// rows are needed, written into `kernel` itself.
    pub channel_last_only: bool,
}

/// What the correlation reads x and the kernel from: every entry declares every source (the
/// variant is a constant argument of shared code), the unused ones get any buffer.
pub struct CorrSources<'a> {
    pub x: &'a GpuTensor,
    pub kernel: &'a GpuTensor,
    /// The kernel as vec4s: as laid out for `_direct4`, its channel-last copy for `_channel_last`.
    pub kernel4: &'a GpuTensor,
    /// x channel-last, for `_channel_last`.
    pub x_t4: &'a GpuTensor,
}

impl CorrSources<'_> {
    fn bindings(&self) -> [(&'static str, &wgpu::Buffer); 4] {
        [
            ("x", &self.x.buffer),
            ("kern", &self.kernel.buffer),
            ("kern4", &self.kernel4.buffer),
            ("xt4", &self.x_t4.buffer),
        ]
    }
}

/// The logits' input and outputs.
pub struct LogitBuffers<'a> {
    pub pooled: &'a GpuTensor,
    pub logits: &'a GpuTensor,
    pub sigmoid: &'a GpuTensor,
}

/// The per-region pixel lists of the fused path and the correlation's tiles over them.
pub struct ListBuffers<'a> {
    pub order: &'a GpuTensor,
    pub starts: &'a GpuTensor,
    pub tiles: &'a GpuTensor,
    pub tile_args: &'a wgpu::Buffer,
}

impl ListBuffers<'_> {
    /// What the fused correlation binds besides its sources: its output, the lists, the tiles.
    fn selected_bindings<'b>(
        &'b self,
        output: &'b GpuTensor,
    ) -> [(&'static str, &'b wgpu::Buffer); 3] {
        [
            ("out", &output.buffer),
            ("order", &self.order.buffer),
            ("tile_list", &self.tiles.buffer),
        ]
    }
}

impl Stages<'_> {
    /// Adaptive average pooling of x to `k x k`: one invocation per pooled value, or on the GPU
    /// family a workgroup per value.
    pub fn pool(&self, input: &GpuTensor, pooled: &GpuTensor) -> Result<Vec<Step>> {
        let buffers = [("x", &input.buffer), ("pooled", &pooled.buffer)];
        let (shader, n) = (&shaders::ADAPTIVE_POOL, pooled.numel() as u64);
        match self.d.pool_split {
            // A workgroup per pooled value.
            true => (self.ctx).group_steps(POOL_STEP, shader, "pool_split", self.dims, &buffers, n),
            false => (self.ctx).steps(POOL_STEP, shader, "main", self.dims, &buffers, n),
        }
    }

    /// The GPU family's pool and guide + argmax in one dispatch: 4 pooled values per workgroup,
    /// then the guide's workgroups (`shaders/pool_guide.wgsl`).
    pub fn pool_guide(
        &self,
        input: &GpuTensor,
        pooled: &GpuTensor,
        guide: &GpuTensor,
        region: &GpuTensor,
    ) -> Result<Vec<Step>> {
        let px = self.d.guide_split.unwrap_or(64);
        let groups = (pooled.numel() as u64).div_ceil(4) + self.d.guide.items / WG as u64;
        let buffers = [
            ("x", &input.buffer),
            ("pooled", &pooled.buffer),
            ("wg", self.param(ParamId::GuideW)),
            ("bg", self.param(ParamId::GuideB)),
            ("guide", &guide.buffer),
            ("region", &region.buffer),
        ];
        let (shader, dims) = (&shaders::POOL_GUIDE, self.dims.guide_px(px));
        (self.ctx).group_steps("pool_guide", shader, "pool_guide", dims, &buffers, groups)
    }

    /// The GPU family's kernel generator (its decided entry) and the fused path's lists and
    /// tile slots in one dispatch (`shaders/gen_lists.wgsl`); where the decisions say
    /// (`gen_with_logits`), with the logits too, from the pooled map.
    pub fn gen_lists(
        &self,
        logits: &LogitBuffers<'_>,
        kernel: &GpuTensor,
        region: &GpuTensor,
        lists: &ListBuffers<'_>,
    ) -> Result<Vec<Step>> {
        let (p, s, g) = (self.d.corr, self.s, self.d.kernel_gen.entry);
        let hw = (s.out_height * s.out_width) as u64;
        let block = self.d.lists_block.unwrap_or(256);
        let list_groups = s.batch as u64 * hw.div_ceil(block);
        let dims = self
            .dims
            .lists_blocks(block, p.tiling.pixels, p.slots as u64);
        let mut buffers = vec![
            ("w3", self.param(ParamId::KernelW3)),
            ("b3", self.param(ParamId::KernelB3)),
            ("kern", &kernel.buffer),
            ("region", &region.buffer),
            ("order", &lists.order.buffer),
            ("starts", &lists.starts.buffer),
            ("tile_list", &lists.tiles.buffer),
        ];
        let (entry, dims, groups) = match self.d.gen_with_logits {
            Some(lanes) => {
                buffers.extend(self.logit_bindings(logits));
                let c = self.c;
                let n = (c.in_channels * c.out_channels * c.kernel_size * c.kernel_size) as u64;
                let gens = logits_gen_groups((s.batch * c.region_num) as u64, n, lanes);
                let dims =
                    (self.dims).logits_gen_lists(block, p.tiling.pixels, p.slots as u64, lanes);
                ("logits_gen_lists", dims, gens + list_groups)
            }
            None => {
                buffers.push(("sig", &logits.sigmoid.buffer));
                let entry = match g.entry {
                    "blocked" => "gen_lists_blocked",
                    "registers" => "gen_lists_registers",
                    _ => "gen_lists_elements",
                };
                (entry, dims, g.items.div_ceil(256) + list_groups)
            }
        };
        let shader = &shaders::GEN_LISTS;
        (self.ctx).group_steps("gen_lists", shader, entry, dims, &buffers, groups)
    }

    /// What the logits' entries bind: the pooled map, conv_kernel.1 and the two outputs.
    fn logit_bindings<'b>(
        &'b self,
        t: &'b LogitBuffers<'_>,
    ) -> [(&'static str, &'b wgpu::Buffer); 5] {
        [
            ("pooled", &t.pooled.buffer),
            ("w1", self.param(ParamId::KernelW1)),
            ("b1", self.param(ParamId::KernelB1)),
            ("logits", &t.logits.buffer),
            ("sigmoid", &t.sigmoid.buffer),
        ]
    }

    /// conv_kernel.1 (1x1 conv of the pooled map) and its sigmoid.
    pub fn logits(&self, t: &LogitBuffers<'_>) -> Result<Vec<Step>> {
        let buffers = self.logit_bindings(t);
        let n = t.logits.numel() as u64;
        // `split`: a workgroup per 8 logits, 8 invocations each.
        let (entry, items) = match self.d.logits_split {
            true => ("split", n.div_ceil(8) * WG as u64),
            false => ("main", n),
        };
        let shader = &shaders::KERNEL_LOGITS;
        (self.ctx).steps("kernel_logits", shader, entry, self.dims, &buffers, items)
    }

    /// conv_kernel.3 (grouped 1x1) of the sigmoid map: the generated kernels. The k = 3 generator
    /// declares both layouts' bindings; the one it does not write gets a small buffer of its own
    /// (WebGPU forbids one buffer at two writable bindings).
    pub fn kernel_gen(&self, sigmoid: &GpuTensor, out: KernelTargets<'_>) -> Result<Vec<Step>> {
        let g = self.d.kernel_gen;
        let (shader, entry, items, blocks) =
            (g.entry.shader, g.entry.entry, g.entry.items, g.blocks);
        if self.v.kernel_gen != KernelGen::UnrolledK3 {
            let buffers = [
                ("sig", &sigmoid.buffer),
                ("w3", self.param(ParamId::KernelW3)),
                ("b3", self.param(ParamId::KernelB3)),
                ("kern", &out.kernel.buffer),
            ];
            let dims = self.dims.kernel_gen(blocks, 1);
            return self
                .ctx
                .steps("kernel_gen", shader, entry, dims, &buffers, items);
        }
        // Bit 0: the kernel as laid out, bit 1: its channel-last rows.
        let layouts = match (out.kernel_t, out.channel_last_only) {
            (None, _) => 1,
            (Some(_), false) => 3,
            (Some(_), true) => 2,
        };
        let unused = match layouts {
            3 => None,
            _ => Some(self.ctx.empty("kernel_gen unwritten layout", &[4])?),
        };
        let (laid_out, rows) = match (&unused, out.kernel_t) {
            (Some(u), _) if out.channel_last_only => (u, out.kernel),
            (Some(u), _) => (out.kernel, u),
            (None, Some(t)) => (out.kernel, t),
            (None, None) => (out.kernel, out.kernel),
        };
        let buffers = [
            ("sig4", &sigmoid.buffer),
            ("w34", self.param(ParamId::KernelW3)),
            ("b34", self.param(ParamId::KernelB3)),
            ("kern4", &laid_out.buffer),
            ("kt4", &rows.buffer),
        ];
        let dims = self.dims.kernel_gen(blocks, layouts);
        self.ctx
            .steps("kernel_gen", shader, entry, dims, &buffers, items)
    }

    /// The channel-last copies the `_channel_last` correlation and the guide read: x, the kernel (unless
    /// the generator wrote them) and the guide weight ([r*I, k*k] as k*k x r*I).
    pub fn channel_last(
        &self,
        input: &GpuTensor,
        kernel: &GpuTensor,
        copies: (&GpuTensor, &GpuTensor, &GpuTensor),
        generator_wrote_rows: bool,
    ) -> Result<Vec<Step>> {
        let (x_t, kernel_t, guide_w_t) = copies;
        let (c, s, d) = (self.c, self.s, self.dims);
        let (i, kk) = (c.in_channels, c.kernel_size * c.kernel_size);
        let mut steps =
            self.ctx
                .transpose_steps("corr_x_t", d, input, x_t, (i, s.height * s.width))?;
        if !generator_wrote_rows {
            steps.extend(self.ctx.transpose_steps(
                "corr_kernel_t",
                d,
                kernel,
                kernel_t,
                (i, kk),
            )?);
        }
        let w = self.params.get(ParamId::GuideW);
        let ri = (c.region_num * i, kk);
        steps.extend(
            self.ctx
                .transpose_steps("guide_weight_t", d, w, guide_w_t, ri)?,
        );
        Ok(steps)
    }

    /// The guide conv and the argmax over regions (first maximal index), with the entry the
    /// decisions picked; from x and the guide weight, or their channel-last copies
    /// `(x_t, guide_w_t)`.
    pub fn guide_argmax(
        &self,
        input: &GpuTensor,
        channel_last: Option<(&GpuTensor, &GpuTensor)>,
        guide: &GpuTensor,
        region: &GpuTensor,
    ) -> Result<Vec<Step>> {
        let e = self.d.guide;
        let mut buffers = vec![
            ("bg", self.param(ParamId::GuideB)),
            ("guide", &guide.buffer),
            ("region", &region.buffer),
        ];
        buffers.extend(match channel_last {
            Some((x_t, w_t)) => [("xt4", &x_t.buffer), ("wt4", &w_t.buffer)],
            None => [("x", &input.buffer), ("wg", self.param(ParamId::GuideW))],
        });
        let dims = match self.d.guide_split {
            Some(px) => self.dims.guide_px(px),
            None => self.dims,
        };
        (self.ctx).steps("guide_argmax", e.shader, e.entry, dims, &buffers, e.items)
    }

    /// Every region's correlation (training): one GEMM of r*O kernel rows by H'W' pixels per
    /// sample, tiled as the decisions say; the GEMM correlation's K slices into `parts`.
    pub fn corr_all_regions(
        &self,
        src: &CorrSources<'_>,
        corr: &GpuTensor,
        parts: Option<&GpuTensor>,
    ) -> Result<Vec<Step>> {
        let p = self.d.corr;
        if self.v.gemm() {
            // `order` is declared (the selected entry reads it) but never read here.
            let lists = [("order", &src.kernel.buffer)];
            return self.gemm_steps("corr_all_regions", (src, &lists), corr, parts, None);
        }
        let buffers = [&[("out", &corr.buffer)], &src.bindings()[..]].concat();
        self.ctx.group_steps(
            "corr_all_regions",
            p.shader,
            p.entry,
            self.dims.row_groups(p.tiling.groups()),
            &buffers,
            p.workgroups,
        )
    }

    /// The GEMM correlation (`shaders/correlation_gemm.wgsl`) of `src` into `output`, its K
    /// slices through `parts` and `slice_sum` where the decisions cut the inner dimension;
    /// `lists`: the region lists it binds; `indirect`: its grid's buffer where the device
    /// writes it.
    fn gemm_steps(
        &self,
        label: &'static str,
        (src, lists): (&CorrSources<'_>, &[(&'static str, &wgpu::Buffer)]),
        output: &GpuTensor,
        parts: Option<&GpuTensor>,
        indirect: Option<&wgpu::Buffer>,
    ) -> Result<Vec<Step>> {
        let p = self.d.corr;
        // One slice writes `out` itself; `part` is still declared, so it gets a buffer of its own.
        let unused;
        let part = match parts {
            Some(t) => &t.buffer,
            None => {
                unused = super::partials(self.ctx, "corr_slices", 1, 0)?;
                &unused.buffer
            }
        };
        let mut buffers = vec![
            ("x", &src.x.buffer),
            ("kern", &src.kernel.buffer),
            ("out", &output.buffer),
            ("part", part),
        ];
        buffers.extend_from_slice(lists);
        let dims = self.dims.corr_tile(p.tiling, p.slices);
        let steps =
            (self.ctx).group_steps(label, p.shader, p.entry, dims, &buffers, p.workgroups)?;
        let mut steps = match indirect {
            Some(args) if steps.len() == 1 => steps.into_iter().map(|s| s.indirect(args)).collect(),
            _ => steps,
        };
        if p.slices > 1 {
            let elements = output.numel() as u64;
            steps.extend(self.ctx.steps(
                "corr_slice_sum",
                p.shader,
                "slice_sum",
                self.dims.slice_sum(p.slices, elements),
                &[("part", part), ("out", &output.buffer)],
                elements,
            )?);
        }
        Ok(steps)
    }

    /// Each pixel's output from its own region's correlation.
    pub fn gather(
        &self,
        region: &GpuTensor,
        corr: &GpuTensor,
        output: &GpuTensor,
    ) -> Result<Vec<Step>> {
        self.ctx.steps(
            "gather",
            &shaders::REGION_SELECT,
            "gather",
            self.dims,
            &[
                ("region", &region.buffer),
                ("corr", &corr.buffer),
                ("out", &output.buffer),
            ],
            output.numel() as u64,
        )
    }

    /// Pixels grouped by region with a deterministic counting sort (`region_select.wgsl`
    /// `lists`), then the tiles that hold pixels and the grid that covers exactly them.
    pub fn region_lists(&self, region: &GpuTensor, lists: &ListBuffers<'_>) -> Result<Vec<Step>> {
        if let Some(block) = self.d.lists_block {
            return self.lists_blocks(region, lists, block);
        }
        let mut steps = self.pixel_lists(region, lists.order, lists.starts)?;
        let p = self.d.corr;
        let dims = (self.dims.corr_tile(p.tiling, p.slices)).grid_limit(self.ctx.max_grid_dim());
        steps.extend(self.ctx.steps(
            "corr_tiles",
            &shaders::REGION_SELECT,
            "tiles",
            dims,
            &[
                ("starts", &lists.starts.buffer),
                ("tile_list", &lists.tiles.buffer),
                ("tile_args", lists.tile_args),
            ],
            64,
        )?);
        Ok(steps)
    }

    /// The GPU family's lists and tile slots in one dispatch of `block` pixels per workgroup.
    fn lists_blocks(
        &self,
        region: &GpuTensor,
        lists: &ListBuffers<'_>,
        block: u64,
    ) -> Result<Vec<Step>> {
        let (p, s) = (self.d.corr, self.s);
        let hw = (s.out_height * s.out_width) as u64;
        let dims = self
            .dims
            .lists_blocks(block, p.tiling.pixels, p.slots as u64);
        self.ctx.group_steps(
            "region_lists",
            &shaders::REGION_SELECT,
            "lists_blocks",
            dims,
            &[
                ("region", &region.buffer),
                ("order", &lists.order.buffer),
                ("starts", &lists.starts.buffer),
                ("tile_list", &lists.tiles.buffer),
            ],
            s.batch as u64 * hw.div_ceil(block),
        )
    }

    /// The selected region's correlation over the listed tiles, its grid read from the device
    /// where the variants say so (one dispatch), else the largest the regions could need (the
    /// extra tiles exit at once; the shader checks the bound either way); the GEMM
    /// correlation's K slices into `parts`.
    pub fn corr_selected(
        &self,
        src: &CorrSources<'_>,
        lists: &ListBuffers<'_>,
        output: &GpuTensor,
        parts: Option<&GpuTensor>,
    ) -> Result<Vec<Step>> {
        let p = self.d.corr;
        let indirect = self.v.device_grid.then_some(lists.tile_args);
        if self.v.gemm() {
            // Over every tile slot (`lists_blocks`): the grid is the host's.
            let indirect = None;
            let bound = [
                ("order", &lists.order.buffer),
                ("tile_list", &lists.tiles.buffer),
            ];
            let label = "corr_selected";
            return self.gemm_steps(label, (src, &bound), output, parts, indirect);
        }
        let buffers = [&lists.selected_bindings(output)[..], &src.bindings()[..]].concat();
        let steps = self.ctx.group_steps(
            "corr_selected",
            p.shader,
            p.entry,
            self.dims.row_groups(p.tiling.groups()),
            &buffers,
            p.workgroups,
        )?;
        Ok(match indirect {
            Some(args) if steps.len() == 1 => steps.into_iter().map(|s| s.indirect(args)).collect(),
            _ => steps,
        })
    }

    /// The fused correlation with each (sample, region)'s `block` bytes of kernel rows bound as
    /// its own uniform binding (per-region uniform): one indirect dispatch per (sample, region) over its tiles.
    pub fn corr_per_region(
        &self,
        src: &CorrSources<'_>,
        lists: &ListBuffers<'_>,
        output: &GpuTensor,
        block: u64,
    ) -> Result<Vec<Step>> {
        let (p, o) = (self.d.corr, self.c.out_channels as u64);
        let t = p.tiling;
        // The most workgroups one region can need: all its sample's pixels.
        let bound = o.div_ceil(t.rows) * self.out_pixels().div_ceil(t.pixels);
        let mut steps = Vec::new();
        for j in 0..self.s.batch * self.c.region_num {
            let region_rows = wgpu::BufferBinding {
                buffer: &src.kernel4.buffer,
                offset: j as u64 * block,
                size: std::num::NonZeroU64::new(UNIFORM_BINDING_BYTES),
            };
            // Every buffer whole, as `corr_selected` binds them, but `kern4`: this region's rows.
            let buffers: Vec<_> = lists
                .selected_bindings(output)
                .into_iter()
                .chain(src.bindings())
                .map(|(name, buffer)| match name {
                    "kern4" => (name, region_rows.clone()),
                    _ => (name, buffer.as_entire_buffer_binding()),
                })
                .collect();
            let built = self.ctx.steps_ranged(
                "corr_selected",
                p.shader,
                p.entry,
                self.dims.row_groups(t.groups()).bound_region(j),
                &buffers,
                bound * WG as u64,
            )?;
            let [step] = <[Step; 1]>::try_from(built).map_err(|s| DrConvError::TooLarge {
                what: "corr_selected: dispatches of the per-region uniform bindings".into(),
                size: s.len() as u64,
                limit: 1,
            })?;
            steps.push(step.indirect_at(lists.tile_args, 16 * (1 + j as u64)));
        }
        Ok(steps)
    }

    fn out_pixels(&self) -> u64 {
        (self.s.out_height * self.s.out_width) as u64
    }
}
