//! The targets, checked on each benchmarked shape: the table prints them under the rows
//! and the JSON report carries them, so a run says by itself whether they were met.

use super::report::{BenchRow, TargetCheck};
use super::shapes::BenchShape;

/// The forward-time ratio the fused path must reach: 5x at r = 8, 2.5x at r = 4 (the issue
/// names no other r).
fn ratio_required(r: usize) -> Option<f64> {
    match r {
        8 => Some(5.0),
        4 => Some(2.5),
        _ => None,
    }
}

/// How many times faster the fused forward ran than the all-regions one.
pub fn forward_ratio(fused: &BenchRow, all: &BenchRow) -> f64 {
    all.forward_ms / fused.forward_ms
}

pub(super) fn at_least(
    target: &'static str,
    shape: &str,
    value: f64,
    required: f64,
) -> TargetCheck {
    TargetCheck {
        target,
        shape: shape.to_string(),
        value,
        bound: ">=",
        required,
        met: value >= required,
    }
}

pub(super) fn at_most(target: &'static str, shape: &str, value: f64, required: f64) -> TargetCheck {
    TargetCheck {
        target,
        shape: shape.to_string(),
        value,
        bound: "<=",
        required,
        met: value <= required,
    }
}

/// The checks of one shape from its fused and all-regions rows. The correlation's rate is
/// compared with the GEMM timed in the same submissions as its steps (`matmul_gflops` of the
/// row), not with the best GEMM of the whole run, because the host's speed drifts between cells.
pub fn check(shape: &BenchShape, fused: &BenchRow, all: &BenchRow) -> Vec<TargetCheck> {
    let name = shape.name();
    let mut out = Vec::new();
    if let Some(required) = ratio_required(shape.r) {
        out.push(at_least(
            "all-regions / fused forward ms",
            &name,
            forward_ratio(fused, all),
            required,
        ));
    }
    for (target, row) in [
        ("fused correlation GFLOP/s / GEMM's", fused),
        ("all-regions correlation GFLOP/s / GEMM's", all),
    ] {
        out.push(at_least(
            target,
            &name,
            row.corr_gflops / row.matmul_gflops,
            1.0,
        ));
    }
    out
}

/// The checks as table lines.
pub fn lines(checks: &[TargetCheck]) -> String {
    checks
        .iter()
        .map(|c| {
            format!(
                "target {:<42} {:<26} {:>6.2} ({} {:.2}) {}\n",
                c.target,
                c.shape,
                c.value,
                c.bound,
                c.required,
                if c.met { "met" } else { "NOT MET" }
            )
        })
        .collect()
}

/// A fresh input buffer each call must cost at most 10 % over one reused buffer (plans are
/// keyed by shape: the fresh buffer is one copy, not a new plan).
pub fn input_reuse(reuse: &super::report::InputReuse) -> TargetCheck {
    let mut check = at_most(
        "fresh / reused input buffer forward ms",
        &reuse.shape,
        reuse.ratio,
        1.10,
    );
    check.met &= reuse.plans_built == 0;
    check
}
