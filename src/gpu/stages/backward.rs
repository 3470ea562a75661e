//! The backward's stages, in the order the plan runs them: the correlation's kernel and input
//! gradients with the region selection's guide gradient, the guide conv's input gradient and
//! weight partial sums, their reduction, conv_kernel.3, the sigmoid and conv_kernel.1, and the
//! adaptive pool. Each has a gather entry family (every gradient element gathers its
//! contributors; GPUs) and, where it matters, a region-list family (`Backward::RegionLists`: CPU
//! adapters, per-region GEMMs over pixel lists on channel-last copies). Both sum every element
//! in the same order, so both give bitwise the same gradients.

use super::Stages;
use crate::error::Result;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::program::Step;
use crate::gpu::shaders::WG;
use crate::gpu::shaders::{
    ADAPTIVE_POOL_BWD, CORRELATION_BWD, GUIDE_CONV_BWD, KERNEL_GEN_BWD, KERNEL_GRAD_GEMM,
    KERNEL_LOGITS_BWD, REGION_SELECT_BWD,
};
use crate::params::ParamId;

/// The label of the pool backward's steps (a row split leaves them out of its bands' sub-plans).
pub const POOL_GRAD_STEP: &str = "pool_input_grad";

/// Input channels per invocation of the correlation's gather kernel gradient (`KG_CH` in
/// shaders/correlation_bwd.wgsl); the input gradients take `Decisions::input_grad_channels`.
const CORR_CHANNELS: usize = 4;

/// Input channels per invocation of the guide conv's weight partial sums (`GC_CH` in
/// shaders/guide_conv_bwd.wgsl).
const GUIDE_CHANNELS: usize = 4;

/// The training forward's tensors the backward reads.
pub struct Saved<'a> {
    pub input: &'a GpuTensor,
    pub pooled: &'a GpuTensor,
    pub sigmoid: &'a GpuTensor,
    pub kernel: &'a GpuTensor,
    pub corr: &'a GpuTensor,
    pub guide: &'a GpuTensor,
    pub region: &'a GpuTensor,
}

/// The gradients the backward writes (and the upstream one it reads).
pub struct GradBuffers<'a> {
    pub output: &'a GpuTensor,
    pub x: &'a GpuTensor,
    pub pooled: &'a GpuTensor,
    pub kernel_logits: &'a GpuTensor,
    pub sigmoid: &'a GpuTensor,
    pub kernel: &'a GpuTensor,
    pub guide: &'a GpuTensor,
    /// Guide weight/bias partial sums, chunks x (r*I*k*k + r).
    pub guide_partial: &'a GpuTensor,
    pub params: &'a [GpuTensor; 6],
}

/// The GPU family's backward buffers: the kernel-gradient GEMM's (`shaders/kernel_grad_gemm.wgsl`)
/// and the guide gradient's G values.
#[derive(Debug)]
pub struct GemmGrad {
    /// Per-region pixel lists (`region_select.wgsl` `lists`), B x H'W' and B x (r+1), u32.
    pub order: GpuTensor,
    pub starts: GpuTensor,
    /// The K slices' partial gradients, slices x dkern's elements (a small unused tensor with
    /// one slice: the shader declares it).
    pub parts: GpuTensor,
    /// The region selection's G values, B x r x H' x W' (`big_g_split`).
    pub big_g: GpuTensor,
}

/// The region-list backward's own buffers (CPU adapters).
#[derive(Debug)]
pub struct ListBackward {
    /// `kernel_grad_lists8` or `kernel_grad_lists4`.
    pub entry: &'static str,
    /// Per-region pixel lists (`region_select.wgsl` `lists`), B x H'W' and B x (r+1), u32.
    pub order: GpuTensor,
    pub starts: GpuTensor,
    /// x as B x H x W x I, grad_output as B x H' x W' x O, the kernel as B x r x k*k x O x I.
    pub x_t: GpuTensor,
    pub gy_t: GpuTensor,
    pub kernel_t: GpuTensor,
    /// The guide conv's weight as k*k x r x I (its [r*I, k*k] transposed).
    pub guide_w_t: GpuTensor,
    /// The region selection's G values, B x r x H' x W' (`big_g_t` in region_select_bwd.wgsl).
    pub big_g: GpuTensor,
    /// `x_t` and `guide_w_t` are the training forward's (its `ChannelLast`): it writes them.
    pub shared: bool,
}

impl Stages<'_> {
    /// Gather family: the straight-through softmax gradient of the guide, then the correlation's
    /// kernel gradient and dx's first path (assigns dx).
    pub fn corr_grads_gather(
        &self,
        f: &Saved<'_>,
        g: &GradBuffers<'_>,
        gemm: Option<&GemmGrad>,
    ) -> Result<Vec<Step>> {
        let (c, s, d) = (self.c, self.s, self.dims);
        let kk = c.kernel_size * c.kernel_size;
        let gy = &g.output.buffer;
        let mut steps = match gemm {
            Some(t) => self.guide_grad_once(f, g, t)?,
            None => self.ctx.steps(
                "guide_grad",
                &REGION_SELECT_BWD,
                "guide_grad",
                d,
                &[
                    ("guide", &f.guide.buffer),
                    ("corr", &f.corr.buffer),
                    ("gy", gy),
                    ("dguide", &g.guide.buffer),
                ],
                g.guide.numel() as u64,
            )?,
        };
        let blocks = c.in_channels.div_ceil(CORR_CHANNELS);
        match gemm {
            Some(t) => steps.extend(self.kernel_grad_gemm(f, g, t)?),
            // One invocation per (b, o, block of CORR_CHANNELS input channels, u, v): it fills
            // every region's copy of those taps.
            None => steps.extend(self.ctx.steps(
                "corr_kernel_grad",
                &CORRELATION_BWD,
                "kernel_grad",
                d,
                &[
                    ("x", &f.input.buffer),
                    ("gy", gy),
                    ("region", &f.region.buffer),
                    ("dkern", &g.kernel.buffer),
                ],
                (s.batch * c.out_channels * blocks * kk) as u64,
            )?),
        }
        // One invocation per (b, block of the decisions' input channels, y, x).
        let ch = self.d.input_grad_channels;
        steps.extend(self.ctx.steps(
            "corr_input_grad",
            &CORRELATION_BWD,
            "input_grad",
            d.input_channels(ch),
            &[
                ("kern", &f.kernel.buffer),
                ("gy", gy),
                ("region", &f.region.buffer),
                ("dx", &g.x.buffer),
            ],
            (s.batch * c.in_channels.div_ceil(ch) * s.height * s.width) as u64,
        )?);
        Ok(steps)
    }

    /// The GPU family's guide gradient: each G value once, by the decisions' lanes, then the
    /// softmax's straight-through gradient from them.
    fn guide_grad_once(
        &self,
        f: &Saved<'_>,
        g: &GradBuffers<'_>,
        t: &GemmGrad,
    ) -> Result<Vec<Step>> {
        let lanes = self.d.big_g_lanes.unwrap_or(1);
        let n = t.big_g.numel() as u64;
        let mut steps = self.ctx.group_steps(
            "big_g",
            &REGION_SELECT_BWD,
            "big_g_split",
            self.dims.g_lanes(lanes),
            &[
                ("corr", &f.corr.buffer),
                ("gy", &g.output.buffer),
                ("g_out", &t.big_g.buffer),
            ],
            (n * lanes).div_ceil(WG as u64),
        )?;
        steps.extend(self.guide_grad_from(f, g, &t.big_g)?);
        Ok(steps)
    }

    /// The straight-through softmax gradient of the guide from the G values `big_g` (B x r x
    /// H' x W', each computed once by `big_g_t` or `big_g_split`).
    fn guide_grad_from(
        &self,
        f: &Saved<'_>,
        g: &GradBuffers<'_>,
        big_g: &GpuTensor,
    ) -> Result<Vec<Step>> {
        self.ctx.steps(
            "guide_grad",
            &REGION_SELECT_BWD,
            "guide_grad_g",
            self.dims,
            &[
                ("guide", &f.guide.buffer),
                ("dguide", &g.guide.buffer),
                ("g_in", &big_g.buffer),
            ],
            g.guide.numel() as u64,
        )
    }

    /// The GPU family's kernel gradient: the pixel lists, then per (sample, region) the GEMM
    /// over its list in the decisions' K slices, and their sum.
    fn kernel_grad_gemm(
        &self,
        f: &Saved<'_>,
        g: &GradBuffers<'_>,
        t: &GemmGrad,
    ) -> Result<Vec<Step>> {
        let (c, s, d) = (self.c, self.s, self.dims);
        let slices = self.d.kernel_grad_slices.unwrap_or(1);
        let mut steps = self.pixel_lists(f.region, &t.order, &t.starts)?;
        let kd = (c.in_channels * c.kernel_size * c.kernel_size) as u64;
        let tiles = (s.batch * c.region_num) as u64
            * (c.out_channels as u64).div_ceil(64)
            * kd.div_ceil(64);
        let elements = g.kernel.numel() as u64;
        let dims = d.slice_sum(slices, elements);
        let buffers = [
            ("x", &f.input.buffer),
            ("gy", &g.output.buffer),
            ("order", &t.order.buffer),
            ("starts", &t.starts.buffer),
            ("dkern", &g.kernel.buffer),
            ("dpart", &t.parts.buffer),
        ];
        let label = "corr_kernel_grad";
        let entry = "kernel_grad_gemm";
        steps.extend((self.ctx).group_steps(
            label,
            &KERNEL_GRAD_GEMM,
            entry,
            dims,
            &buffers,
            tiles * slices,
        )?);
        if slices > 1 {
            let sum = [("dpart", &t.parts.buffer), ("dkern", &g.kernel.buffer)];
            let label = "corr_kernel_grad_sum";
            steps.extend((self.ctx).steps(
                label,
                &KERNEL_GRAD_GEMM,
                "slice_sum",
                dims,
                &sum,
                elements,
            )?);
        }
        Ok(steps)
    }

    /// Region-list family: pixel lists and channel-last copies, then the correlation's kernel
    /// gradient as per-region GEMMs, the kernel's transpose and dx's first path (assigns dx).
    pub fn corr_grads_lists(
        &self,
        f: &Saved<'_>,
        g: &GradBuffers<'_>,
        t: &ListBackward,
    ) -> Result<Vec<Step>> {
        let (c, s, d) = (self.c, self.s, self.dims);
        let (i, o, kk) = (c.in_channels, c.out_channels, c.kernel_size * c.kernel_size);
        let mut steps = self.pixel_lists(f.region, &t.order, &t.starts)?;
        let (hw_in, hw_out) = (s.height * s.width, s.out_height * s.out_width);
        steps.extend(
            self.ctx
                .transpose_steps("corr_gy_t", d, g.output, &t.gy_t, (o, hw_out))?,
        );
        if !t.shared {
            steps.extend(
                self.ctx
                    .transpose_steps("corr_x_t", d, f.input, &t.x_t, (i, hw_in))?,
            );
        }
        let ob = if t.entry == "kernel_grad_lists8" {
            8
        } else {
            4
        };
        steps.extend(self.ctx.steps(
            "corr_kernel_grad",
            &CORRELATION_BWD,
            t.entry,
            d,
            &[
                ("dkern", &g.kernel.buffer),
                ("order", &t.order.buffer),
                ("starts", &t.starts.buffer),
                ("x_t", &t.x_t.buffer),
                ("gy_t", &t.gy_t.buffer),
            ],
            // One invocation per (b, block of `ob` output and 4 input channels, u, v).
            (s.batch * o.div_ceil(ob) * (i / 4) * kk) as u64,
        )?);
        steps.extend(self.kernel_transpose(f.kernel, &t.kernel_t)?);
        steps.extend(self.ctx.steps(
            "corr_input_grad",
            &CORRELATION_BWD,
            "input_grad_t",
            d,
            &[
                ("region", &f.region.buffer),
                ("dx", &g.x.buffer),
                ("kern_t", &t.kernel_t.buffer),
                ("gy_t", &t.gy_t.buffer),
            ],
            // One invocation per (b, block of 8 channels, y, x).
            (s.batch * i.div_ceil(8) * hw_in) as u64,
        )?);
        Ok(steps)
    }

    /// The kernel [B*r, O*I, k*k] as [B*r, k*k, O*I]; k = 3 with 9 vec4 loads per 4 channels.
    fn kernel_transpose(&self, kernel: &GpuTensor, kernel_t: &GpuTensor) -> Result<Vec<Step>> {
        let c = self.c;
        let kk = c.kernel_size * c.kernel_size;
        if c.kernel_size != 3 {
            let io = (c.out_channels * c.in_channels, kk);
            return self
                .ctx
                .transpose_steps("corr_kernel_t", self.dims, kernel, kernel_t, io);
        }
        self.ctx.steps(
            "corr_kernel_t",
            &CORRELATION_BWD,
            "kernel_t3",
            self.dims,
            &[("src4", &kernel.buffer), ("kern_t_out", &kernel_t.buffer)],
            // One invocation per (b, g, o, block of 4 input channels): all 9 taps.
            (kernel.numel() / (4 * kk)) as u64,
        )
    }

    /// Region-list family: the straight-through softmax gradient of the guide, each G once.
    pub fn guide_grad_lists(
        &self,
        f: &Saved<'_>,
        g: &GradBuffers<'_>,
        t: &ListBackward,
    ) -> Result<Vec<Step>> {
        let mut steps = self.ctx.steps(
            "big_g",
            &REGION_SELECT_BWD,
            "big_g_t",
            self.dims,
            &[
                ("corr", &f.corr.buffer),
                ("gy_t", &t.gy_t.buffer),
                ("g_out", &t.big_g.buffer),
            ],
            t.big_g.numel() as u64,
        )?;
        steps.extend(self.guide_grad_from(f, g, &t.big_g)?);
        Ok(steps)
    }

    /// Gather family: the guide conv's input gradient (dx's second path) and its weight's
    /// partial sums (per chunk of positions: one invocation per (g, block of GUIDE_CHANNELS
    /// channels, u, v), then one per bias).
    pub fn guide_conv_gather(&self, f: &Saved<'_>, g: &GradBuffers<'_>) -> Result<Vec<Step>> {
        let (c, s) = (self.c, self.s);
        let kk = c.kernel_size * c.kernel_size;
        let blocks = c.in_channels.div_ceil(GUIDE_CHANNELS);
        let ch = self.d.input_grad_channels;
        let mut steps = self.ctx.steps(
            "guide_input_grad",
            &GUIDE_CONV_BWD,
            "input_grad",
            self.dims.input_channels(ch),
            &[
                ("wg", self.param(ParamId::GuideW)),
                ("dguide", &g.guide.buffer),
                ("dx", &g.x.buffer),
            ],
            (s.batch * c.in_channels.div_ceil(ch) * s.height * s.width) as u64,
        )?;
        steps.extend(self.ctx.steps(
            "guide_weight_partial",
            &GUIDE_CONV_BWD,
            "weight_partial",
            self.dims,
            &[
                ("x", &f.input.buffer),
                ("dguide", &g.guide.buffer),
                ("partial", &g.guide_partial.buffer),
            ],
            (self.guide_chunks() * c.region_num * (blocks * kk + 1)) as u64,
        )?);
        Ok(steps)
    }

    /// Region-list family: the same two stages reading the weight and x as vec4s along I (same
    /// sums, bitwise equal), the weight transposed first unless the forward did it.
    pub fn guide_conv_lists(&self, g: &GradBuffers<'_>, t: &ListBackward) -> Result<Vec<Step>> {
        let (c, s) = (self.c, self.s);
        let kk = c.kernel_size * c.kernel_size;
        let mut steps = Vec::new();
        if !t.shared {
            let w = self.params.get(ParamId::GuideW);
            let ri = (c.region_num * c.in_channels, kk);
            steps.extend(self.ctx.transpose_steps(
                "guide_weight_t",
                self.dims,
                w,
                &t.guide_w_t,
                ri,
            )?);
        }
        steps.extend(self.ctx.steps(
            "guide_input_grad",
            &GUIDE_CONV_BWD,
            "input_grad_t",
            self.dims,
            &[
                ("dguide", &g.guide.buffer),
                ("dx", &g.x.buffer),
                ("wg_t", &t.guide_w_t.buffer),
            ],
            (s.batch * (c.in_channels / 4) * s.height * s.width) as u64,
        )?);
        steps.extend(self.ctx.steps(
            "guide_weight_partial",
            &GUIDE_CONV_BWD,
            "weight_partial_t",
            self.dims,
            &[
                ("dguide", &g.guide.buffer),
                ("partial", &g.guide_partial.buffer),
                ("x_t", &t.x_t.buffer),
            ],
            (self.guide_chunks() * c.region_num * ((c.in_channels / 4) * kk + 1)) as u64,
        )?);
        Ok(steps)
    }

    /// The guide weight's and bias's gradients: the partial sums added in chunk order.
    pub fn guide_reduce(&self, g: &GradBuffers<'_>) -> Result<Vec<Step>> {
        let c = self.c;
        let elems = c.region_num * c.in_channels * c.kernel_size * c.kernel_size + c.region_num;
        self.ctx.steps(
            "guide_weight_reduce",
            &GUIDE_CONV_BWD,
            "weight_reduce",
            self.dims,
            &[
                ("partial", &g.guide_partial.buffer),
                ("dwg", &g.params[ParamId::GuideW.index()].buffer),
                ("dbg", &g.params[ParamId::GuideB.index()].buffer),
            ],
            elems as u64,
        )
    }

    /// The sigmoid map's gradient: one invocation per element, or on the GPU family one
    /// workgroup per (sample, group, tap) and chunk of channels, the chunks then added in order.
    fn sigmoid_grad(&self, g: &GradBuffers<'_>) -> Result<Vec<Step>> {
        let (w3, n) = (self.param(ParamId::KernelW3), g.sigmoid.numel() as u64);
        let Some(chunks) = self.d.sigmoid_chunks else {
            let buffers = [
                ("w3", w3),
                ("dkern", &g.kernel.buffer),
                ("dsig", &g.sigmoid.buffer),
            ];
            let (label, d) = ("kernel_gen_sigmoid_grad", self.dims);
            return (self.ctx).steps(label, &KERNEL_GEN_BWD, "sigmoid_grad", d, &buffers, n);
        };
        // One chunk writes dsig itself; `dsig_part` is still declared: a buffer of its own.
        let part = super::partials(self.ctx, "grad.sigmoid_chunks", chunks, n as usize)?;
        let buffers = [
            ("w3", w3),
            ("dkern", &g.kernel.buffer),
            ("dsig", &g.sigmoid.buffer),
            ("dsig_part", &part.buffer),
        ];
        let d = self.dims.sigmoid_chunks(chunks);
        let (c, s) = (self.c, self.s);
        let groups = (s.batch * c.region_num * c.kernel_size * c.kernel_size) as u64 * chunks;
        let label = "kernel_gen_sigmoid_grad";
        let entry = "sigmoid_grad_split";
        let mut steps =
            (self.ctx).group_steps(label, &KERNEL_GEN_BWD, entry, d, &buffers, groups)?;
        if chunks > 1 {
            let sum = [("dsig", &g.sigmoid.buffer), ("dsig_part", &part.buffer)];
            let label = "kernel_gen_sigmoid_sum";
            steps.extend((self.ctx).steps(
                label,
                &KERNEL_GEN_BWD,
                "sigmoid_grad_sum",
                d,
                &sum,
                n,
            )?);
        }
        Ok(steps)
    }

    /// conv_kernel.3 (grouped 1x1): the sigmoid map's gradient, then the weight's and bias's.
    pub fn kernel_gen_grads(&self, f: &Saved<'_>, g: &GradBuffers<'_>) -> Result<Vec<Step>> {
        let mut steps = self.sigmoid_grad(g)?;
        steps.extend(self.ctx.steps(
            "kernel_gen_weight_grad",
            &KERNEL_GEN_BWD,
            "weight_grad",
            self.dims,
            &[
                ("sig", &f.sigmoid.buffer),
                ("dkern", &g.kernel.buffer),
                ("dw3", &g.params[ParamId::KernelW3.index()].buffer),
                ("db3", &g.params[ParamId::KernelB3.index()].buffer),
            ],
            (self.c.kernel_channels() * (self.c.region_num + 1)) as u64,
        )?);
        Ok(steps)
    }

    /// The sigmoid and conv_kernel.1: the logits', the pooled map's and the weight's and
    /// bias's gradients.
    pub fn logits_grads(&self, f: &Saved<'_>, g: &GradBuffers<'_>) -> Result<Vec<Step>> {
        let (c, d) = (self.c, self.dims);
        let mut steps = self.ctx.steps(
            "logits_grad",
            &KERNEL_LOGITS_BWD,
            "logits_grad",
            d,
            &[
                ("sig", &f.sigmoid.buffer),
                ("dsig", &g.sigmoid.buffer),
                ("dlogits", &g.kernel_logits.buffer),
            ],
            g.kernel_logits.numel() as u64,
        )?;
        steps.extend(self.ctx.steps(
            "pooled_grad",
            &KERNEL_LOGITS_BWD,
            "pooled_grad",
            d,
            &[
                ("w1", self.param(ParamId::KernelW1)),
                ("dlogits", &g.kernel_logits.buffer),
                ("dpooled", &g.pooled.buffer),
            ],
            g.pooled.numel() as u64,
        )?);
        let buffers = [
            ("pooled", &f.pooled.buffer),
            ("dlogits", &g.kernel_logits.buffer),
            ("dw1", &g.params[ParamId::KernelW1.index()].buffer),
            ("db1", &g.params[ParamId::KernelB1.index()].buffer),
        ];
        let n = (c.region_num * c.region_num * (c.in_channels + 1)) as u64;
        let label = "kernel_logits_weight_grad";
        steps.extend(match self.d.logits_weight_lanes {
            Some(l) => {
                let (entry, groups) = ("weight_grad_split", (n * l).div_ceil(WG as u64));
                (self.ctx).group_steps(
                    label,
                    &KERNEL_LOGITS_BWD,
                    entry,
                    d.g_lanes(l),
                    &buffers,
                    groups,
                )?
            }
            None => (self.ctx).steps(label, &KERNEL_LOGITS_BWD, "weight_grad", d, &buffers, n)?,
        });
        Ok(steps)
    }

    /// The adaptive pool: dx's third path.
    pub fn pool_grad(&self, g: &GradBuffers<'_>) -> Result<Vec<Step>> {
        self.ctx.steps(
            POOL_GRAD_STEP,
            &ADAPTIVE_POOL_BWD,
            "main",
            self.dims,
            &[("dpooled", &g.pooled.buffer), ("dx", &g.x.buffer)],
            g.x.numel() as u64,
        )
    }

    /// Partial sums of the guide weight's gradient: one per `Decisions::guide_chunk` output
    /// positions.
    pub fn guide_chunks(&self) -> usize {
        let s = self.s;
        (s.batch * s.out_height * s.out_width).div_ceil(self.d.guide_chunk)
    }
}
