//! Ops as data: a `Step` is a pipeline, its bind group and a dispatch size; a `Program` is the
//! list of steps of one forward (or training step), recorded into a single compute pass.

use crate::config::{DrConvConfig, ForwardShape};
use crate::error::{DrConvError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::limits::{MAX_GRID_DIM, MAX_ITEMS};
use crate::gpu::shaders::{Shader, WG};

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
    /// `correlation.wgsl`, `region_select.wgsl` `tiles`: row groups per correlation tile
    /// ([`crate::gpu::tiles::CorrTiling`]).
    pub fn row_groups(mut self, groups: u64) -> Self {
        self.aux0 = groups as u32;
        self
    }

    /// `region_select.wgsl` `tiles`: the indirect grid's per-dimension limit.
    pub fn grid_limit(mut self, max: u32) -> Self {
        self.aux1 = max;
        self
    }

    /// `kernel_gen_k3.wgsl`: blocks of 8 channels per invocation, and the layouts written
    /// (bit 0: as laid out, bit 1: the correlation's channel-last rows).
    pub fn kernel_gen(mut self, blocks: u32, layouts: u32) -> Self {
        self.aux0 = blocks;
        self.aux1 = layouts;
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
            op: Op::Clear {
                buffer: buffer.clone(),
                offset,
                size,
            },
        }
    }

    /// This dispatch with its grid read from `args` (three u32 at offset 0, written by an earlier
    /// step of the program) instead of the size it was built with. Its uniform keeps that size
    /// as the bound, so the shader must also be right under the built grid (the fallback where
    /// `GpuContext::indirect` is off). Copies and clears are returned unchanged.
    pub fn indirect(self, args: &wgpu::Buffer) -> Self {
        match self.op {
            Op::Dispatch {
                pipeline,
                bind_group,
                ..
            } => Step {
                label: self.label,
                op: Op::DispatchIndirect {
                    pipeline,
                    bind_group,
                    args: args.clone(),
                },
            },
            op => Step {
                label: self.label,
                op,
            },
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
                } => {
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bind_group, &[]);
                    pass.dispatch_workgroups_indirect(args, 0);
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

/// Workgroup grid for `items` invocations of `WG` lanes, folding into y past the per-dimension
/// limit. Returns `None` when even the folded grid would not fit.
pub fn grid(items: u64, max_per_dim: u32) -> Option<[u32; 3]> {
    let groups = items.div_ceil(WG as u64).max(1);
    let x = groups.min(max_per_dim as u64);
    let y = groups.div_ceil(x);
    if y > max_per_dim as u64 {
        return None;
    }
    Some([x as u32, y as u32, 1])
}

impl GpuContext {
    /// Workgroups per grid dimension the dispatches use: the device's limit, capped at
    /// MAX_GRID_DIM (larger grids could wrap `item_index` in u32 arithmetic).
    pub fn max_grid_dim(&self) -> u32 {
        self.limits
            .max_compute_workgroups_per_dimension
            .min(MAX_GRID_DIM)
    }

    /// Builds the steps that run `entry` of `shader` over `items` invocations with `dims` and the
    /// storage `buffers` bound by the names the WGSL declares them with ([`Shader::binding`]). Jobs larger than one dispatch can address are split
    /// into several dispatches over consecutive item ranges (`Dims::base`).
    pub fn steps(
        &self,
        label: &'static str,
        shader: &Shader,
        entry: &'static str,
        dims: Dims,
        buffers: &[(&str, &wgpu::Buffer)],
        items: u64,
    ) -> Result<Vec<Step>> {
        let whole: Vec<_> = buffers
            .iter()
            .map(|&(binding, buffer)| {
                let range = wgpu::BufferBinding {
                    buffer,
                    offset: 0,
                    size: None,
                };
                (binding, range)
            })
            .collect();
        self.steps_ranged(label, shader, entry, dims, &whole, items)
    }

    /// [`GpuContext::steps`] with buffer ranges: each binding may be part of a buffer (offset a
    /// multiple of `min_storage_buffer_offset_alignment`), so that elementwise jobs on tensors
    /// larger than one storage binding run window by window (see `crate::gpu::limits::windows`).
    pub fn steps_ranged(
        &self,
        label: &'static str,
        shader: &Shader,
        entry: &'static str,
        dims: Dims,
        buffers: &[(&str, wgpu::BufferBinding<'_>)],
        items: u64,
    ) -> Result<Vec<Step>> {
        let buffers = resolve(shader, entry, buffers)?;
        let buffers = &buffers[..];
        // Every binding but the uniform is a storage buffer: refused here, not by validation.
        let storage_limit = self.limits.max_storage_buffers_per_shader_stage;
        if buffers.len() as u64 > storage_limit as u64 {
            return Err(DrConvError::TooLarge {
                what: format!(
                    "storage buffers bound by {}::{entry} vs the device's \
                     max_storage_buffers_per_shader_stage",
                    shader.name
                ),
                size: buffers.len() as u64,
                limit: storage_limit as u64,
            });
        }
        // Flat u32 indices in the shaders; MAX_ITEMS leaves room for the grid's padding.
        if items > MAX_ITEMS {
            return Err(DrConvError::TooLarge {
                what: format!("{label}: items indexed by one shader"),
                size: items,
                limit: MAX_ITEMS,
            });
        }
        let max_dim = self.max_grid_dim();
        let per_dispatch = (max_dim as u64) * (max_dim as u64) * WG as u64;
        check_aliasing(label, shader, buffers)?;
        let pipeline = self.pipelines().get(&self.device, shader, entry);
        let layout = pipeline.get_bind_group_layout(0);
        let mut steps = Vec::new();
        let mut base = 0u64;
        loop {
            let count = (items - base).min(per_dispatch);
            let workgroups = grid(count, max_dim).ok_or_else(|| DrConvError::TooLarge {
                what: format!("{label}: workgroups of one dispatch"),
                size: count.div_ceil(WG as u64),
                limit: (max_dim as u64) * (max_dim as u64),
            })?;
            let mut d = dims;
            d.count = count as u32;
            d.base = base as u32;
            let uniform = wgpu::util::DeviceExt::create_buffer_init(
                &self.device,
                &wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::bytes_of(&d),
                    usage: wgpu::BufferUsages::UNIFORM,
                },
            );
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform.as_entire_binding(),
            }];
            for (binding, b) in buffers {
                entries.push(wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: wgpu::BindingResource::Buffer(b.clone()),
                });
            }
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout: &layout,
                entries: &entries,
            });
            steps.push(Step {
                label,
                op: Op::Dispatch {
                    pipeline: pipeline.clone(),
                    bind_group,
                    workgroups,
                },
            });
            base += count;
            if base >= items {
                break;
            }
        }
        Ok(steps)
    }
}

/// The binding numbers of `buffers`' names in `shader`; an unknown name is a bug of the plan
/// builder, reported as an error rather than a validation failure at dispatch.
fn resolve<'a>(
    shader: &Shader,
    entry: &str,
    buffers: &[(&str, wgpu::BufferBinding<'a>)],
) -> Result<Vec<(u32, wgpu::BufferBinding<'a>)>> {
    buffers
        .iter()
        .map(|(name, b)| match shader.binding(name) {
            Some(n) => Ok((n, b.clone())),
            None => Err(DrConvError::Gpu {
                op: format!("binding {}::{entry}", shader.name),
                message: format!("the shader declares no buffer named {name:?}"),
            }),
        })
        .collect()
}

/// Refuses a buffer range bound twice in one bind group where either binding is writable:
/// WebGPU (Dawn, Tint) rejects that at dispatch, native wgpu does not, so tests here catch it.
fn check_aliasing(
    label: &str,
    shader: &Shader,
    buffers: &[(u32, wgpu::BufferBinding<'_>)],
) -> Result<()> {
    let end = |b: &wgpu::BufferBinding<'_>| b.size.map_or(u64::MAX, |s| b.offset + s.get());
    for (i, (na, a)) in buffers.iter().enumerate() {
        for (nb, b) in &buffers[i + 1..] {
            let overlap = a.buffer == b.buffer && a.offset < end(b) && b.offset < end(a);
            if overlap && (shader.writable(*na) || shader.writable(*nb)) {
                return Err(DrConvError::Gpu {
                    op: format!("binding {label} ({})", shader.name),
                    message: format!(
                        "one buffer range at bindings {na} and {nb}, one of them writable: WebGPU \
                         forbids writable aliasing"
                    ),
                });
            }
        }
    }
    Ok(())
}
