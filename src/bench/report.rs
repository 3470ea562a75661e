//! The benchmark report: what `drconv bench` prints as a table and writes as JSON.

use serde::Serialize;

/// Time of one step (one label of the plan; a step split over several dispatches is summed).
#[derive(Debug, Clone, Serialize)]
pub struct StepTime {
    pub label: &'static str,
    pub ms: f64,
}

/// One (shape, path) cell.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub shape: String,
    /// `"fused"` (Mode::Inference) or `"all_regions"` (Mode::Training).
    pub path: &'static str,
    pub forward_ms: f64,
    /// The fastest forward: on a shared machine, the least disturbed.
    pub forward_min_ms: f64,
    /// Training forward + backward (the fused forward saves nothing for a backward), the same
    /// for both rows of a shape; `None` when the backward failed on this device.
    pub forward_backward_ms: Option<f64>,
    /// The path's required work (see [`BenchShape`](super::shapes::BenchShape)) over `forward_ms`.
    pub gflops: f64,
    /// The plan's buffers plus the parameters.
    pub peak_bytes: u64,
    /// The correlation step(s) alone, timed one step per pass.
    pub corr_ms: f64,
    /// The correlation's required work over `corr_ms`.
    pub corr_gflops: f64,
    /// The best GEMM variant, timed in the same submissions as this shape's steps (the same for
    /// both rows of a shape): the attainable rate next to `corr_gflops` under the same host load.
    pub matmul_gflops: f64,
    pub steps: Vec<StepTime>,
}

/// The shader variants of one shape's layer.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeVariants {
    pub shape: String,
    pub variants: String,
}

/// GFLOP/s of one GEMM variant.
#[derive(Debug, Clone, Serialize)]
pub struct MatmulResult {
    pub variant: &'static str,
    pub n: usize,
    pub gflops: f64,
}

/// Whether the fused forward agrees with the all-regions forward at a shape.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub shape: String,
    pub output_max_abs_diff: f64,
    pub region_equal: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Per shape: the forward with one reused input buffer against a fresh buffer every call.
    pub input_reuse: Vec<InputReuse>,
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    /// `"gpu-timestamps"` or `"wall"`.
    pub timer: &'static str,
    /// The shader variants each shape ran (`Variants`' display), in shape order.
    pub variants: Vec<ShapeVariants>,
    /// The best GEMM variant: the device's attainable rate (the best of its runs before and
    /// after the shapes and beside each shape's steps).
    pub matmul_gflops: f64,
    pub matmul: Vec<MatmulResult>,
    pub rows: Vec<BenchRow>,
    pub agreement: Vec<Agreement>,
    /// The targets at each shape (see `targets::check`).
    pub targets: Vec<TargetCheck>,
    /// The host's 1-minute load average before and after (Linux; other work on a shared machine
    /// slows a software adapter such as lavapipe down).
    pub host_load: Option<[f64; 2]>,
}

/// One target at one shape.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub target: &'static str,
    pub shape: String,
    pub value: f64,
    /// ">=" (value at least `required`) or "<=" (at most).
    pub bound: &'static str,
    pub required: f64,
    pub met: bool,
}

/// Per-call time of the fused forward (submit and wait, wall clock) with one input buffer reused
/// and with a freshly uploaded buffer each call (the upload itself not timed): plans are keyed by
/// shape, so the fresh buffer costs one copy into the plan's input, no new plan.
#[derive(Debug, Clone, Serialize)]
pub struct InputReuse {
    pub shape: String,
    pub reused_ms: f64,
    pub fresh_ms: f64,
    /// fresh / reused (target: at most 1.10).
    pub ratio: f64,
    /// Plans the layer built during the fresh-buffer calls (0: every call reused its plan).
    pub plans_built: usize,
}
