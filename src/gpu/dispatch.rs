//! The dispatch builders: (shader, entry point, uniform, buffers by name, item count) into
//! bound steps, with every check that a dispatch could otherwise fail at run time (storage
//! bindings per stage, writable aliasing, u32 item indices, grid limits).

use crate::error::{DrConvError, Result};
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::limits::{MAX_GRID_DIM, MAX_ITEMS};
use crate::gpu::program::{Dims, Step};
use crate::gpu::shaders::{self, Shader, WG};

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
    /// larger than one storage binding run range by range (see `crate::gpu::limits::ranges`).
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
            steps.push(Step::dispatch(
                (label, entry),
                pipeline.clone(),
                bind_group,
                workgroups,
            ));
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

impl GpuContext {
    /// The steps that run `entry` of `shader` on `groups` workgroups.
    pub fn group_steps(
        &self,
        label: &'static str,
        shader: &Shader,
        entry: &'static str,
        dims: Dims,
        buffers: &[(&str, &wgpu::Buffer)],
        groups: u64,
    ) -> Result<Vec<Step>> {
        let items = groups
            .checked_mul(WG as u64)
            .filter(|&n| n <= u32::MAX as u64);
        let items = items.ok_or_else(|| DrConvError::TooLarge {
            what: format!("{label}: workgroups of one tiled job"),
            size: groups,
            limit: u32::MAX as u64 / WG as u64,
        })?;
        self.steps(label, shader, entry, dims, buffers, items.max(WG as u64))
    }
}

impl GpuContext {
    /// The steps that transpose `src` (`n x ch x sp`, ch % 4 == 0) into `dst` (`n x sp x ch`):
    /// the channel-last copies of x, grad_output, kernels and guide weights that CPU adapters read
    /// as vec4s (`shaders/transpose.wgsl`).
    pub fn transpose_steps(
        &self,
        label: &'static str,
        dims: Dims,
        src: &GpuTensor,
        dst: &GpuTensor,
        (ch, sp): (usize, usize),
    ) -> Result<Vec<Step>> {
        let tdims = dims.transpose(ch, sp);
        // 4 x 4 blocks, vec4 loads and stores, where the positions come in fours.
        let (entry, src_binding, per_item) = match sp % 4 {
            0 => ("transpose4", "src4", 16),
            _ => ("transpose", "src", 4),
        };
        let buffers = [(src_binding, &src.buffer), ("dst", &dst.buffer)];
        let items = (src.numel() / per_item) as u64;
        self.steps(label, &shaders::TRANSPOSE, entry, tdims, &buffers, items)
    }
}
