//! Device limits against the tensors of a plan, checked before anything is allocated, so that a
//! shape too large for the device is a [`DrConvError::TooLarge`] naming the tensor, its size and
//! the limit, never a failed allocation, a validation error or an overflowed u32 index.
//!
//! Sizes are computed in u128 so absurd shapes cannot overflow here either.

use crate::config::{DrConvConfig, ForwardShape, Mode};
use crate::error::{DrConvError, Result};
use crate::gpu::shaders::{CORR_WORKGROUP_BYTES, WG};
use crate::params::ParamId;

/// Output positions per partial sum of the guide conv's weight gradient (first reduction stage;
/// the backward's `grad.guide_partial` holds one row per chunk).
pub const GUIDE_CHUNK: usize = 256;

/// One tensor of a plan: its name and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, shape: &[usize]) -> Self {
        TensorSpec {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    /// Element count in u128, saturating (absurd shapes stay absurd instead of wrapping).
    pub fn numel(&self) -> u128 {
        self.shape
            .iter()
            .fold(1u128, |n, &d| n.saturating_mul(d as u128))
    }

    /// Size in bytes of the f32 (or i32) tensor, saturated to u64.
    pub fn bytes(&self) -> u64 {
        sat(self.numel().saturating_mul(4))
    }
}

fn sat(v: u128) -> u64 {
    v.min(u64::MAX as u128) as u64
}

/// Every tensor a forward of `shape` allocates or binds: the input, the intermediates, the
/// output and the six parameters.
pub fn forward_tensors(c: &DrConvConfig, s: &ForwardShape, mode: Mode) -> Vec<TensorSpec> {
    let mut v = vec![
        TensorSpec::new("input", &s.input(c)),
        TensorSpec::new("pooled", &s.pooled(c)),
        TensorSpec::new("kernel_logits", &s.logits(c)),
        TensorSpec::new("sigmoid", &s.logits(c)),
        TensorSpec::new("kernel", &s.kernel(c)),
    ];
    if mode == Mode::Training {
        v.push(TensorSpec::new("corr", &s.corr(c)));
    }
    v.push(TensorSpec::new("guide", &s.guide(c)));
    v.push(TensorSpec::new("region_index", &s.region()));
    if mode == Mode::Inference {
        // The fused path's per-region pixel lists.
        v.push(TensorSpec::new("region_order", &s.region()));
        v.push(TensorSpec::new(
            "region_starts",
            &[s.batch, c.region_num.saturating_add(1)],
        ));
        // The correlation's pixel tiles, bounded with its narrowest tiles (16 pixels).
        let slots = (s.out_height.saturating_mul(s.out_width))
            .div_ceil(16)
            .saturating_add(c.region_num);
        v.push(TensorSpec::new(
            "corr_tiles",
            &[s.batch
                .saturating_mul(slots)
                .saturating_mul(3)
                .saturating_add(1)],
        ));
    }
    v.push(TensorSpec::new("output", &s.output(c)));
    for id in ParamId::ALL {
        v.push(TensorSpec::new(id.name(), &c.param_shape(id)));
    }
    v
}

/// Checks one tensor that a shader binds whole: its bytes against `max_buffer_size` and
/// `max_storage_buffer_binding_size`, its elements against the u32 indexing of the shaders.
pub fn check_bound(limits: &wgpu::Limits, t: &TensorSpec) -> Result<()> {
    check_stored(limits, t)?;
    let binding = limits.max_storage_buffer_binding_size;
    if t.bytes() > binding {
        return Err(too_large(t, "max_storage_buffer_binding_size", binding));
    }
    // One invocation per element, flat indices in u32 (with room for a dispatch's padding).
    if t.numel() > MAX_ITEMS as u128 {
        return Err(DrConvError::TooLarge {
            what: format!(
                "{} (shape {:?}): {} elements, but the shaders index with u32",
                t.name,
                t.shape,
                t.numel()
            ),
            size: sat(t.numel()),
            limit: MAX_ITEMS,
        });
    }
    Ok(())
}

/// Checks a tensor that is only stored and copied (never bound whole): `max_buffer_size`.
pub fn check_stored(limits: &wgpu::Limits, t: &TensorSpec) -> Result<()> {
    if t.numel() == 0 {
        return Err(DrConvError::Shape(format!(
            "{}: tensor of shape {:?} is empty",
            t.name, t.shape
        )));
    }
    if t.bytes() > limits.max_buffer_size {
        return Err(too_large(t, "max_buffer_size", limits.max_buffer_size));
    }
    Ok(())
}

/// The most items one shader job may index: u32, less a margin so that the invocation index of
/// the padded workgroup grid (at most `MAX_GRID_DIM * WG` past the end) cannot wrap around.
pub const MAX_ITEMS: u64 = u32::MAX as u64 - (1 << 24);

/// Workgroups per grid dimension the planners use at most, whatever the device offers: the
/// WebGPU default, which keeps `nwg.x * WG` and the grid padding far inside u32.
pub const MAX_GRID_DIM: u32 = 65535;

fn too_large(t: &TensorSpec, limit_name: &str, limit: u64) -> DrConvError {
    DrConvError::TooLarge {
        what: format!(
            "tensor `{}` of shape {:?} ({} bytes) vs the device's {limit_name}",
            t.name,
            t.shape,
            t.bytes()
        ),
        size: t.bytes(),
        limit,
    }
}

/// The shaders' 1-D workgroups of [`WG`] lanes must fit the device's workgroup limits, and their
/// entry points' storage bindings its per-stage limit.
pub fn check_workgroups(limits: &wgpu::Limits) -> Result<()> {
    let checks = [
        (
            "max_compute_workgroup_size_x",
            limits.max_compute_workgroup_size_x,
        ),
        (
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup,
        ),
    ];
    for (name, limit) in checks {
        if WG > limit {
            return Err(DrConvError::TooLarge {
                what: format!("workgroup size {WG} of the shaders vs the device's {name}"),
                size: WG as u64,
                limit: limit as u64,
            });
        }
    }
    // The largest workgroup memory of any shader: the correlation's staged weights (the
    // matmul's tiles are the same 8 KiB).
    let needed = CORR_WORKGROUP_BYTES;
    if limits.max_compute_workgroup_storage_size < needed {
        return Err(DrConvError::TooLarge {
            what: "workgroup memory of the shaders vs the device's \
                   max_compute_workgroup_storage_size"
                .into(),
            size: needed as u64,
            limit: limits.max_compute_workgroup_storage_size as u64,
        });
    }
    check_storage_bindings(limits)?;
    if limits.max_compute_workgroups_per_dimension == 0 {
        return Err(DrConvError::TooLarge {
            what: "compute dispatch (the device reports max_compute_workgroups_per_dimension = 0: \
                   no compute shaders)"
                .into(),
            size: 1,
            limit: 0,
        });
    }
    Ok(())
}

/// Input rows and columns (with padding) are addressed as i32 in the shaders.
fn check_coordinates(c: &DrConvConfig, s: &ForwardShape) -> Result<()> {
    for (axis, n) in [("height", s.height), ("width", s.width)] {
        let padded = n as u128 + 2 * c.padding as u128;
        if padded > i32::MAX as u128 {
            return Err(DrConvError::TooLarge {
                what: format!(
                    "padded input {axis} ({n} + 2 * padding {}), addressed as i32 in the shaders",
                    c.padding
                ),
                size: sat(padded),
                limit: i32::MAX as u64,
            });
        }
    }
    Ok(())
}

/// Everything an unsplit forward plan of `shape` needs, checked against `limits` before any
/// allocation: every tensor is bound whole by some shader, so each must fit one storage binding.
pub fn check_forward(
    limits: &wgpu::Limits,
    c: &DrConvConfig,
    s: &ForwardShape,
    mode: Mode,
) -> Result<()> {
    check_workgroups(limits)?;
    check_coordinates(c, s)?;
    for t in forward_tensors(c, s, mode) {
        check_bound(limits, &t)?;
    }
    Ok(())
}

/// Every tensor a backward of `shape` adds to its training forward: the upstream gradient, the
/// gradients of the input and of every intermediate, the guide weight's partial sums and the
/// parameter gradients (and dcorr when `with_corr`, for inspection).
pub fn backward_tensors(c: &DrConvConfig, s: &ForwardShape, with_corr: bool) -> Vec<TensorSpec> {
    let kk = c.kernel_size as u128 * c.kernel_size as u128;
    let guide_elems = c.region_num as u128 * c.in_channels as u128 * kk + c.region_num as u128;
    let positions = s.batch as u128 * s.out_height as u128 * s.out_width as u128;
    // The GPU family may take smaller chunks (`Decisions::guide_chunk`), and adds buffers of its
    // own (K slices' partial sums, G values, lists): `gpu::decide` keeps each within a binding.
    let chunks = positions.div_ceil(GUIDE_CHUNK as u128);
    let clamp = |v: u128| v.min(usize::MAX as u128) as usize;
    let mut v = vec![
        TensorSpec::new("grad_output", &s.output(c)),
        TensorSpec::new("grad.x", &s.input(c)),
        TensorSpec::new("grad.pooled", &s.pooled(c)),
        TensorSpec::new("grad.kernel_logits", &s.logits(c)),
        TensorSpec::new("grad.sigmoid", &s.logits(c)),
        TensorSpec::new("grad.kernel", &s.kernel(c)),
        TensorSpec::new("grad.guide", &s.guide(c)),
        TensorSpec::new("grad.guide_partial", &[clamp(chunks), clamp(guide_elems)]),
    ];
    if with_corr {
        v.push(TensorSpec::new("grad.corr", &s.corr(c)));
    }
    for id in ParamId::ALL {
        v.push(TensorSpec::new(
            format!("grad.{}", id.name()),
            &c.param_shape(id),
        ));
    }
    v
}

/// Everything a training step (training forward + backward) of `shape` needs, checked before
/// any allocation.
pub fn check_backward(limits: &wgpu::Limits, c: &DrConvConfig, s: &ForwardShape) -> Result<()> {
    check_forward(limits, c, s, Mode::Training)?;
    for t in backward_tensors(c, s, false) {
        check_bound(limits, &t)?;
    }
    Ok(())
}

/// Element ranges `(start, len)` covering a tensor of `numel` f32 that elementwise shaders bind
/// range by range (buffer ranges, `GpuContext::steps_ranged`) when it exceeds one storage
/// binding: each range fits `max_storage_buffer_binding_size` and the u32 item count of one job,
/// and starts at a multiple of `min_storage_buffer_offset_alignment` bytes and of `multiple`
/// elements. One range `(0, numel)` when the tensor fits whole.
pub fn ranges(
    limits: &wgpu::Limits,
    what: &str,
    numel: usize,
    multiple: usize,
) -> Result<Vec<(usize, usize)>> {
    let fit = (limits.max_storage_buffer_binding_size / 4).min(MAX_ITEMS);
    if numel as u64 <= fit {
        return Ok(vec![(0, numel)]);
    }
    let align = (limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
    let step_unit = lcm(align, multiple.max(1));
    let step = (fit / step_unit as u64) as usize * step_unit;
    if step == 0 {
        return Err(DrConvError::TooLarge {
            what: format!(
                "one range of `{what}` ({step_unit} f32: min_storage_buffer_offset_alignment \
                 {} bytes and {multiple}-element blocks) vs the device's \
                 max_storage_buffer_binding_size",
                limits.min_storage_buffer_offset_alignment
            ),
            size: step_unit as u64 * 4,
            limit: limits.max_storage_buffer_binding_size,
        });
    }
    Ok((0..numel)
        .step_by(step)
        .map(|start| (start, step.min(numel - start)))
        .collect())
}

fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    a / gcd(a, b) * b
}

/// Storage buffers bound by the entry point that binds the most (with one such entry): the
/// device must allow that many per shader stage. `tests/limits_split.rs` checks it against every
/// entry point with naga.
pub const MOST_STORAGE_BINDINGS: (&str, u32) = ("correlation::selected", 7);

/// Storage buffers of the GPU family's generator-and-lists dispatch (`gen_lists::gen_lists_*`),
/// the one entry over [`MOST_STORAGE_BINDINGS`]: `gpu::decide` takes it only where the device
/// allows that many (WebGPU's default, 8), else runs the two stages apart.
pub const GEN_LISTS_STORAGE_BINDINGS: u32 = 8;

/// Storage buffers of inference's generator-with-logits-and-lists dispatch
/// (`gen_lists::logits_gen_lists`): [`GEN_LISTS_STORAGE_BINDINGS`] and the logits' pooled map,
/// weight, bias and outputs. Desktop GPUs' native APIs allow far more; where a device allows
/// fewer (WebGPU's default), the logits keep a dispatch of their own.
pub const LOGITS_GEN_LISTS_STORAGE_BINDINGS: u32 = 12;

/// The shaders' storage bindings per entry point against `max_storage_buffers_per_shader_stage`.
pub fn check_storage_bindings(limits: &wgpu::Limits) -> Result<()> {
    let (entry, needed) = MOST_STORAGE_BINDINGS;
    let limit = limits.max_storage_buffers_per_shader_stage;
    if needed > limit {
        return Err(DrConvError::TooLarge {
            what: format!(
                "storage buffers bound by one entry point of the shaders (e.g. {entry}) vs the \
                 device's max_storage_buffers_per_shader_stage"
            ),
            size: needed as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(binding: u64, buffer: u64, align: u32) -> wgpu::Limits {
        wgpu::Limits {
            max_storage_buffer_binding_size: binding,
            max_buffer_size: buffer,
            min_storage_buffer_offset_alignment: align,
            ..wgpu::Limits::default()
        }
    }

    #[test]
    fn a_tensor_is_checked_against_the_binding_the_buffer_and_u32_indexing() {
        let l = limits(1024, 4096, 256);
        assert!(check_bound(&l, &TensorSpec::new("t", &[16, 16])).is_ok());
        // 257 floats: one byte over the binding, under the buffer.
        let e = check_bound(&l, &TensorSpec::new("t", &[257])).unwrap_err();
        assert!(
            e.to_string().contains("max_storage_buffer_binding_size"),
            "{e}"
        );
        assert!(check_stored(&l, &TensorSpec::new("t", &[257])).is_ok());
        let e = check_stored(&l, &TensorSpec::new("t", &[1025])).unwrap_err();
        assert!(e.to_string().contains("max_buffer_size"), "{e}");
        assert!(matches!(
            check_stored(&l, &TensorSpec::new("t", &[3, 0])),
            Err(DrConvError::Shape(_))
        ));
        // Absurd shapes saturate instead of wrapping, and u32 indexing is its own limit.
        let huge = TensorSpec::new("t", &[usize::MAX, usize::MAX, 8]);
        assert_eq!(huge.bytes(), u64::MAX);
        let wide = limits(u64::MAX, u64::MAX, 256);
        let e = check_bound(&wide, &TensorSpec::new("t", &[1 << 32])).unwrap_err();
        assert!(e.to_string().contains("u32"), "{e}");
    }

    #[test]
    fn ranges_cover_a_tensor_at_aligned_offsets_in_whole_blocks() {
        // 1 KiB bindings (256 floats), 64-float alignment, blocks of 96: steps of lcm 192.
        let l = limits(1024, 1 << 20, 256);
        let r = ranges(&l, "t", 1000, 96).unwrap();
        assert_eq!(
            r,
            [
                (0, 192),
                (192, 192),
                (384, 192),
                (576, 192),
                (768, 192),
                (960, 40)
            ]
        );
        assert_eq!(ranges(&l, "t", 256, 1).unwrap(), [(0, 256)]);
        // A block larger than the binding cannot be bound at all.
        let e = ranges(&l, "loss", 1000, 300).unwrap_err();
        assert!(e.to_string().contains("one range of `loss`"), "{e}");
        assert_eq!(lcm(4, 6), 12);
    }

    #[test]
    fn a_training_forward_binds_the_all_regions_correlation() {
        let c = DrConvConfig::new(4, 8, 3, 2).unwrap();
        let s = c.forward_shape(&[2, 4, 6, 6]).unwrap();
        let names = |m| {
            forward_tensors(&c, &s, m)
                .into_iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
        };
        assert!(names(Mode::Training).contains(&"corr".to_string()));
        assert!(!names(Mode::Inference).contains(&"corr".to_string()));
        let corr = forward_tensors(&c, &s, Mode::Training)
            .into_iter()
            .find(|t| t.name == "corr")
            .unwrap();
        // B x r x O x H' x W'.
        assert_eq!(corr.shape, [2, 2, 8, 4, 4]);
    }
}
