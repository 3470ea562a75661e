//! Ops as data: a `Step` is a pipeline, its bind group and a dispatch size; a `Program` is the
//! list of steps of one forward (or training step), recorded into a single compute pass.

use crate::config::{DrConvConfig, ForwardShape};

/// The uniform every shader reads (`struct Dims` in `shaders/common.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Dims {
    pub batch: u32,
    pub cin: u32,
    pub cout: u32,
    pub k: u32,
    pub r: u32,
    pub h: u32,
    pub w: u32,
    pub ho: u32,
    pub wo: u32,
    pub stride: u32,
    pub pad: u32,
    pub dil: u32,
    pub count: u32,
    pub base: u32,
    /// Two words each shader reads under its own meaning; set only through the named setters
    /// below, each of which says which shader reads them as what.
    aux0: u32,
    aux1: u32,
}

/// The shader-specific words of `Dims`, one setter per meaning.
impl Dims {
    /// `correlation.wgsl`: row groups per correlation tile
    /// ([`crate::gpu::correlation::CorrTiling`]).
    pub fn row_groups(mut self, groups: u64) -> Self {
        self.aux0 = groups as u32;
        self
    }

    /// `correlation_gemm.wgsl`, `region_select.wgsl` `tiles`: the correlation's tile (`pixels`
    /// and `rows`, 12 bits each) and its K slices (8 bits) in one word.
    /// The GEMM reads both as powers of two (shifts and masks in its staging indices).
    pub fn corr_tile(mut self, t: crate::gpu::correlation::CorrTiling, slices: u64) -> Self {
        debug_assert!(t.pixels < 4096 && t.rows < 4096 && slices < 256);
        debug_assert!(t.pixels.is_power_of_two() && t.rows.is_power_of_two());
        self.aux0 = (t.pixels | t.rows << 12 | slices << 24) as u32;
        self
    }

    /// `correlation_gemm.wgsl` `slice_sum`, `kernel_grad_gemm.wgsl`: the K slices (as
    /// [`Dims::corr_tile`] packs them) and the output's elements.
    pub fn slice_sum(mut self, slices: u64, elements: u64) -> Self {
        self.aux0 = (slices << 24) as u32;
        self.aux1 = elements as u32;
        self
    }

    /// `correlation.wgsl` `selected_channel_last_per_region`: the (sample, region) `b * r + g` whose kernel
    /// rows the dispatch's per-region uniform binding holds.
    pub fn bound_region(mut self, bg: usize) -> Self {
        self.aux1 = bg as u32;
        self
    }

    /// `region_select.wgsl` `tiles`: the indirect grid's per-dimension limit.
    pub fn grid_limit(mut self, max: u32) -> Self {
        self.aux1 = max;
        self
    }

    /// `kernel_gen_k3.wgsl`: blocks of 4 channels per invocation, and the layouts written
    /// (bit 0: as laid out, bit 1: the correlation's channel-last rows).
    pub fn kernel_gen(mut self, blocks: u32, layouts: u32) -> Self {
        self.aux0 = blocks;
        self.aux1 = layouts;
        self
    }

    /// `kernel_gen_bwd.wgsl` `sigmoid_grad_split`, `sigmoid_grad_sum`: chunks of the channels.
    pub fn sigmoid_chunks(mut self, chunks: u64) -> Self {
        self.aux0 = chunks as u32;
        self
    }

    /// `region_select.wgsl` `lists_blocks`: pixels per workgroup, the tiles' pixels (9 bits)
    /// and tile slots per sample (23 bits) in one word.
    pub fn lists_blocks(mut self, block: u64, tile_px: u64, slots: u64) -> Self {
        debug_assert!(block < 1 << 25 && tile_px < 512 && slots < 1 << 23);
        self.aux0 = block as u32;
        self.aux1 = (tile_px | slots << 9) as u32;
        self
    }

    /// `gen_lists.wgsl` `logits_gen_lists`: [`Dims::lists_blocks`] and the kernel elements per
    /// generator invocation (7 bits above the block's 25).
    pub fn logits_gen_lists(self, block: u64, tile_px: u64, slots: u64, lanes: u64) -> Self {
        debug_assert!(lanes < 128);
        let mut d = self.lists_blocks(block, tile_px, slots);
        d.aux0 |= (lanes as u32) << 25;
        d
    }

    /// `correlation_bwd.wgsl` and `guide_conv_bwd.wgsl` `input_grad`: input channels per
    /// invocation.
    pub fn input_channels(mut self, channels: usize) -> Self {
        self.aux0 = channels as u32;
        self
    }

    /// `region_select_bwd.wgsl` `big_g_split`: invocations per G value;
    /// `kernel_logits_bwd.wgsl` `weight_grad_split`: invocations per weight.
    pub fn g_lanes(mut self, lanes: u64) -> Self {
        self.aux0 = lanes as u32;
        self
    }

    /// `guide_conv.wgsl` `guide_argmax_split_k`: pixels per workgroup.
    pub fn guide_px(mut self, pixels: u64) -> Self {
        self.aux0 = pixels as u32;
        self
    }

    /// `transpose.wgsl`: `n x channels x positions` into `n x positions x channels`.
    pub fn transpose(mut self, channels: usize, positions: usize) -> Self {
        self.aux0 = channels as u32;
        self.aux1 = positions as u32;
        self
    }

    /// `guide_conv_bwd.wgsl`: output positions per weight partial sum, and their number.
    pub fn guide_chunks(mut self, chunk: usize, chunks: usize) -> Self {
        self.aux0 = chunk as u32;
        self.aux1 = chunks as u32;
        self
    }

    /// `adaptive_pool.wgsl` `pool_rows`, `adaptive_pool_bwd.wgsl` `rows`: the first input row
    /// of the chunk and its row count.
    pub fn pool_rows(mut self, y0: usize, rows: usize) -> Self {
        self.aux0 = y0 as u32;
        self.aux1 = rows as u32;
        self
    }

    /// `mse.wgsl`: elements, and elements per partial sum.
    pub fn loss(mut self, n: usize, chunk: usize) -> Self {
        self.aux0 = n as u32;
        self.aux1 = chunk as u32;
        self
    }

    /// `matmul.wgsl`: an `n x n x n` product.
    pub fn matmul(mut self, n: usize) -> Self {
        self.cin = n as u32;
        self.aux0 = n as u32;
        self.aux1 = n as u32;
        self
    }
}

impl Dims {
    pub fn new(c: &DrConvConfig, s: &ForwardShape) -> Self {
        Dims {
            batch: s.batch as u32,
            cin: c.in_channels as u32,
            cout: c.out_channels as u32,
            k: c.kernel_size as u32,
            r: c.region_num as u32,
            h: s.height as u32,
            w: s.width as u32,
            ho: s.out_height as u32,
            wo: s.out_width as u32,
            stride: c.stride as u32,
            pad: c.padding as u32,
            dil: c.dilation as u32,
            ..Default::default()
        }
    }
}

/// One recorded operation: a bound dispatch (nothing left to decide at run time) or, in plans
/// split to fit the device's limits (`crate::gpu::split`), a copy between two buffers or a clear
/// of a buffer range to zeros.
#[derive(Debug, Clone)]
pub struct Step {
    pub label: &'static str,
    /// The shader entry point of a dispatch ("" for a copy or a clear).
    pub entry: &'static str,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        workgroups: [u32; 3],
    },
    /// A dispatch whose grid an earlier step of the program writes into `args` (x, y, z).
    DispatchIndirect {
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        args: wgpu::Buffer,
        /// Byte offset of the three u32 in `args`.
        offset: u64,
        /// The grid it was built with: the most the device may write.
        bound: [u32; 3],
    },
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    },
    Clear {
        buffer: wgpu::Buffer,
        offset: u64,
        size: u64,
    },
}

impl Step {
    /// A copy of `size` bytes (all multiples of 4) between buffers, recorded between passes.
    pub fn copy(
        label: &'static str,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) -> Self {
        Step {
            label,
            entry: "",
            op: Op::Copy {
                src: src.clone(),
                src_offset,
                dst: dst.clone(),
                dst_offset,
                size,
            },
        }
    }

    /// Zeros over `size` bytes of `buffer` from `offset` (multiples of 4), recorded between
    /// passes.
    pub fn clear(label: &'static str, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Self {
        Step {
            label,
            entry: "",
            op: Op::Clear {
                buffer: buffer.clone(),
                offset,
                size,
            },
        }
    }

    /// A dispatch of `pipeline` with `bind_group` over `workgroups` (built by
    /// `GpuContext::steps`).
    pub(crate) fn dispatch(
        (label, entry): (&'static str, &'static str),
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        workgroups: [u32; 3],
    ) -> Self {
        Step {
            label,
            entry,
            op: Op::Dispatch {
                pipeline,
                bind_group,
                workgroups,
            },
        }
    }

    /// This dispatch with its grid read from `args` (three u32 at offset 0, written by an earlier
    /// step of the program) instead of the size it was built with. Its uniform keeps that size
    /// as the bound, so the shader must also be right under the built grid (the fallback where
    /// `GpuContext::indirect` is off). Copies and clears are returned unchanged.
    pub fn indirect(self, args: &wgpu::Buffer) -> Self {
        self.indirect_at(args, 0)
    }

    /// [`Step::indirect`] with the three u32 at byte `offset` (a multiple of 4) of `args`.
    pub fn indirect_at(self, args: &wgpu::Buffer, offset: u64) -> Self {
        match self.op {
            Op::Dispatch {
                pipeline,
                bind_group,
                workgroups,
            } => Step {
                op: Op::DispatchIndirect {
                    pipeline,
                    bind_group,
                    args: args.clone(),
                    offset,
                    bound: workgroups,
                },
                ..self
            },
            op => Step { op, ..self },
        }
    }

    /// A dispatch's workgroups (an indirect one's bound) and whether its grid comes from the
    /// device; `None` for a copy or a clear.
    pub fn workgroups(&self) -> Option<(u64, bool)> {
        let n = |g: &[u32; 3]| g.iter().map(|&v| v as u64).product();
        match &self.op {
            Op::Dispatch { workgroups, .. } => Some((n(workgroups), false)),
            Op::DispatchIndirect { bound, .. } => Some((n(bound), true)),
            Op::Copy { .. } | Op::Clear { .. } => None,
        }
    }

    /// Whether the step is recorded outside compute passes (a copy or a clear).
    pub fn is_transfer(&self) -> bool {
        matches!(self.op, Op::Copy { .. } | Op::Clear { .. })
    }
}

/// An ordered list of steps. Dispatches in one compute pass see each other's writes in order.
#[derive(Debug, Default)]
pub struct Program {
    pub steps: Vec<Step>,
}

impl Program {
    /// Records every step into `encoder`: runs of dispatches each in one compute pass, copies and
    /// clears (split plans only) between them. A program without them is exactly one pass.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut rest = &self.steps[..];
        while !rest.is_empty() {
            let n = rest
                .iter()
                .position(Step::is_transfer)
                .unwrap_or(rest.len());
            if n > 0 {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("drconv"),
                    timestamp_writes: None,
                });
                Self::dispatch(&rest[..n], &mut pass);
            }
            rest = &rest[n..];
            let m = rest
                .iter()
                .position(|s| !s.is_transfer())
                .unwrap_or(rest.len());
            for s in &rest[..m] {
                match &s.op {
                    Op::Copy {
                        src,
                        src_offset,
                        dst,
                        dst_offset,
                        size,
                    } => encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size),
                    Op::Clear {
                        buffer,
                        offset,
                        size,
                    } => encoder.clear_buffer(buffer, *offset, Some(*size)),
                    Op::Dispatch { .. } | Op::DispatchIndirect { .. } => {}
                }
            }
            rest = &rest[m..];
        }
    }

    /// Records every dispatch into an existing pass (to chain programs in one pass). A pass
    /// cannot hold copies: a split plan's program (see [`Program::has_copies`]) must be
    /// recorded with [`Program::encode`]; its copies are skipped here, with an error logged.
    pub fn encode_into(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.has_copies() {
            log::error!("Program::encode_into skips the copies of a split plan; use encode");
        }
        Self::dispatch(&self.steps, pass);
    }

    fn dispatch(steps: &[Step], pass: &mut wgpu::ComputePass<'_>) {
        for s in steps {
            match &s.op {
                Op::Dispatch {
                    pipeline,
                    bind_group,
                    workgroups,
                } => {
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind_group, &[]);
                    pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
                }
                Op::DispatchIndirect {
                    pipeline,
                    bind_group,
                    args,
                    offset,
                    ..
                } => {
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind_group, &[]);
                    pass.dispatch_workgroups_indirect(args, *offset);
                }
                Op::Copy { .. } | Op::Clear { .. } => {}
            }
        }
    }

    /// Whether the program holds buffer copies or clears (a plan split over the device's limits).
    pub fn has_copies(&self) -> bool {
        self.steps.iter().any(Step::is_transfer)
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}
