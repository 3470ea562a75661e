//! Dispatches counted in workgroups rather than invocations, for the tiled shaders (one
//! workgroup per output tile, whatever its size).
//!
//! `GpuContext::steps` counts items in lanes of `WG`; asking it for `groups * WG` items gives
//! exactly `groups` workgroups, folded into y and split over dispatches at the per-dimension
//! limit like every other step. The shader recovers its tile with `group_index` (in each tiled
//! shader): `wid.x + wid.y * nwg.x` plus `d.base / WG`, and stops at `d.count / WG`.

use crate::error::{DrConvError, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::program::{Dims, Step, WG};
use crate::gpu::shaders::Shader;

impl GpuContext {
    /// The steps that run `entry` of `shader` on `groups` workgroups.
    pub fn group_steps(
        &self,
        label: &'static str,
        shader: &Shader,
        entry: &'static str,
        dims: Dims,
        buffers: &[(u32, &wgpu::Buffer)],
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
