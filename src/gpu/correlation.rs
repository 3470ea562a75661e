//! The correlation's tiles and entries: its tile shapes (one workgroup per output tile, counted
//! with `GpuContext::group_steps`), the entry family of each variant, and whether the kernel
//! rows go through the uniform binding (uniform kernel).
//!
//! `GpuContext::steps` counts items in lanes of `WG`; asking it for `groups * WG` items gives
//! exactly `groups` workgroups, folded into y and split over dispatches at the per-dimension
//! limit like every other step. The shader recovers its tile with `group_index` (in each tiled
//! shader): `wid.x + wid.y * nwg.x` plus `d.base / WG`, and stops at `d.count / WG`.

use crate::gpu::buffers::UNIFORM_BINDING_BYTES;
use crate::gpu::variants::{Correlation, Variants};

/// Whether a channel-last tensor of `bytes` goes through the 64 KiB uniform binding: the
/// correlation's kernel rows (`shaders::CORRELATION_UBO`) and the guide's weights
/// (`shaders::GUIDE_CONV_UBO`). Where the variants run the channel-last entries with the uniform kernel
/// on, the tensor fits and the device binds that much as uniform and as storage data (the
/// uniform kernel's buffer is also written and read whole as storage).
pub fn fits_uniform_binding(v: &Variants, limits: &wgpu::Limits, bytes: u64) -> bool {
    v.channel_last()
        && v.uniform_kernel
        && bytes <= UNIFORM_BINDING_BYTES
        && limits.max_uniform_buffer_binding_size >= UNIFORM_BINDING_BYTES
        && limits.max_storage_buffer_binding_size >= UNIFORM_BINDING_BYTES
        && limits.max_buffer_size >= UNIFORM_BINDING_BYTES
}

/// Most per-region uniform bindings, one dispatch each, the fused correlation takes: dispatches
/// cost 0.07-0.12 ms each on lavapipe (PERF.md, Design), about what a per-region uniform
/// saves on a small region.
pub const MAX_PER_REGION_DISPATCHES: u64 = 64;

/// Whether the fused `_channel_last` correlation reads each (sample, region)'s kernel rows (`block_bytes`
/// of O rows, `regions` = B * r of them) through a uniform binding of its own
/// (`selected_channel_last_per_region`, one dispatch each): where the whole kernel is too large for one
/// uniform binding ([`fits_uniform_binding`] is off) but one region's rows fit, start at offsets the device
/// can bind a uniform at, and are few enough; the grids come from the device. The kernel's buffer
/// then reaches 64 KiB past the last region's rows.
pub fn fits_per_region_uniform(
    v: &Variants,
    limits: &wgpu::Limits,
    block_bytes: u64,
    regions: u64,
) -> bool {
    // The buffer reaches a whole binding past the last region's rows; it is also written and read
    // whole as storage.
    let padded = regions.saturating_sub(1) * block_bytes + UNIFORM_BINDING_BYTES;
    v.channel_last()
        && v.uniform_kernel
        && v.device_grid
        && regions <= MAX_PER_REGION_DISPATCHES
        && block_bytes <= UNIFORM_BINDING_BYTES
        && block_bytes.is_multiple_of(limits.min_uniform_buffer_offset_alignment as u64)
        && limits.max_uniform_buffer_binding_size >= UNIFORM_BINDING_BYTES
        && limits.max_buffer_size >= padded
        && limits.max_storage_buffer_binding_size >= padded
}

/// The correlation's entry points for `v.correlation`: (all regions, selected region).
pub fn corr_entries(v: &Variants) -> (&'static str, &'static str) {
    match v.correlation {
        Correlation::Gemm => ("gemm_all_regions", "gemm_selected"),
        Correlation::Staged => ("all_regions", "selected"),
        Correlation::ChannelLast => ("all_regions_channel_last", "selected_channel_last"),
        Correlation::Direct4 => ("all_regions_direct4", "selected_direct4"),
        Correlation::Direct => ("all_regions_direct", "selected_direct"),
    }
}

/// A correlation tile: `rows` kernel rows by `pixels` output pixels per workgroup. The
/// 64-invocation entries of `shaders/correlation.wgsl` take `groups()` row groups of 8 rows by
/// `256 / groups` pixels (`Dims::row_groups`); the GEMM of `shaders/correlation_gemm.wgsl`
/// 64 x 64 or 32 x 128 (`Dims::corr_tile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrTiling {
    pub rows: u64,
    pub pixels: u64,
}

impl CorrTiling {
    /// `groups` row groups of 8 rows by `256 / groups` pixels.
    pub const fn of_groups(groups: u64) -> Self {
        CorrTiling {
            rows: 8 * groups,
            pixels: 256 / groups,
        }
    }

    /// Row groups of 8 rows (the 64-invocation entries' `row_groups()`).
    pub fn groups(self) -> u64 {
        self.rows / 8
    }

    /// The tiling of the all-regions GEMM (`rows` = r*O rows by `pixels` = H'W' columns per
    /// sample) with the least padded work; ties go to the squarer tile.
    pub fn dense(rows: u64, pixels: u64, c: Correlation) -> Self {
        Self::least(c, |t| {
            t.padded_rows(rows) * pixels.div_ceil(t.pixels) as u128 * t.pixels as u128
        })
    }

    /// The tiling of the per-region GEMMs (`rows` = O rows, a sample's `pixels` split over
    /// `regions` lists of sizes known only on the device): each list wastes half a tile on
    /// average, so small regions favour narrow tiles.
    pub fn per_region(rows: u64, pixels: u64, regions: u64, c: Correlation) -> Self {
        Self::least(c, |t| {
            t.padded_rows(rows) * (2 * pixels as u128 + regions as u128 * t.pixels as u128)
        })
    }

    fn padded_rows(self, rows: u64) -> u128 {
        rows.div_ceil(self.rows) as u128 * self.rows as u128
    }

    /// The tiles variant `c` can run, squarest first: the GEMM's two; 1 to 8 row groups where
    /// the weights are staged (the workgroup memory holds 8); up to 16 otherwise.
    fn candidates(c: Correlation) -> Vec<CorrTiling> {
        match c {
            Correlation::Gemm => vec![
                CorrTiling {
                    rows: 64,
                    pixels: 64,
                },
                CorrTiling {
                    rows: 32,
                    pixels: 128,
                },
            ],
            Correlation::Staged => [4, 8, 2, 1].map(Self::of_groups).to_vec(),
            _ => [4, 8, 2, 1, 16].map(Self::of_groups).to_vec(),
        }
    }

    fn least(c: Correlation, cost: impl Fn(CorrTiling) -> u128) -> Self {
        let all = Self::candidates(c);
        let first = all[0];
        all.into_iter().min_by_key(|&t| cost(t)).unwrap_or(first)
    }
}
