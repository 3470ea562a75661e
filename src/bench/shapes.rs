//! The benchmark's layer shapes and the work each forward must do.

use crate::config::DrConvConfig;
use crate::error::Result;

/// One benchmarked layer: `DRConv2d(cin, cout, k, r, padding = pad)` on a `batch x cin x h x w`
/// input (stride 1, dilation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchShape {
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub r: usize,
    pub h: usize,
    pub w: usize,
    pub pad: usize,
}

const fn shape(batch: usize, c: usize, r: usize, hw: usize) -> BenchShape {
    BenchShape {
        batch,
        cin: c,
        cout: c,
        k: 3,
        r,
        h: hw,
        w: hw,
        pad: 1,
    }
}

/// The shapes of the issue, S1-S4 (and of the reference's `bench_torch.py`): `--shape 1` to `4`.
/// The targets (`targets.rs`) apply to these.
pub const SHAPES: [BenchShape; 4] = [
    shape(1, 64, 8, 40),
    shape(1, 128, 8, 20),
    shape(8, 32, 4, 32),
    shape(1, 16, 4, 128),
];

/// A real model's layer, Y1 and Y16: a YOLO neck's DRConv 256 -> 256, r = 8, on its 40 x 40
/// map, at batch 1 and 16 (`--shape 5` and `6`). Opt-in on CPU adapters (`--yolo`), where Y16's
/// all-regions forward alone is about 0.25 TFLOP; run by default on GPUs. No targets.
pub const YOLO_SHAPES: [BenchShape; 2] = [shape(1, 256, 8, 40), shape(16, 256, 8, 40)];

/// Every shape by its `--shape` number (1-based): S1-S4, then Y1 and Y16.
pub const ALL_SHAPES: [BenchShape; 6] = [
    SHAPES[0],
    SHAPES[1],
    SHAPES[2],
    SHAPES[3],
    YOLO_SHAPES[0],
    YOLO_SHAPES[1],
];

/// The short names of [`ALL_SHAPES`], in order (PERF.md's tables, `bench_torch.py`).
pub const SHAPE_TAGS: [&str; 6] = ["S1", "S2", "S3", "S4", "Y1", "Y16"];

impl BenchShape {
    pub fn name(&self) -> String {
        format!(
            "B{} {}->{} k{} r{} {}x{} p{}",
            self.batch, self.cin, self.cout, self.k, self.r, self.h, self.w, self.pad
        )
    }

    /// Whether the targets apply (S1-S4; not the YOLO shapes).
    pub fn has_targets(&self) -> bool {
        SHAPES.contains(self)
    }

    pub fn config(&self) -> Result<DrConvConfig> {
        DrConvConfig::new(self.cin, self.cout, self.k, self.r)?.with_padding(self.pad)
    }

    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.cin, self.h, self.w]
    }

    /// Output pixels per sample, H' x W'.
    pub fn out_pixels(&self) -> Result<usize> {
        let s = self.config()?.forward_shape(&self.input_shape())?;
        Ok(s.out_height * s.out_width)
    }

    /// Multiply-adds x 2 of one region's correlation: 2 B O I k^2 H'W' (what the fused path must do).
    pub fn corr_flops(&self) -> Result<f64> {
        Ok(2.0 * (self.batch * self.cout * self.cin * self.k * self.k * self.out_pixels()?) as f64)
    }

    /// The guide conv: 2 B r I k^2 H'W' (both paths).
    pub fn guide_flops(&self) -> Result<f64> {
        Ok(2.0 * (self.batch * self.r * self.cin * self.k * self.k * self.out_pixels()?) as f64)
    }

    /// Work the fused inference forward must do: one region's correlation + the guide conv.
    pub fn fused_flops(&self) -> Result<f64> {
        Ok(self.corr_flops()? + self.guide_flops()?)
    }

    /// Work of the all-regions forward: r times the correlation + the guide conv.
    pub fn all_regions_flops(&self) -> Result<f64> {
        Ok(self.r as f64 * self.corr_flops()? + self.guide_flops()?)
    }
}
