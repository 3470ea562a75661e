//! `drconv plan`: every dispatch of a layer's plan with its counts (`crate::gpu::cost`), the
//! plan's totals and, for a named GPU ([`GpuProfile`]), the roofline floor of each dispatch and
//! how much of the chip it fills. The variants are chosen as they would be on that GPU, so the
//! GPU family can be read on a machine without one. Plans are reported unsplit.

use serde::Serialize;

use crate::config::{DrConvConfig, Mode};
use crate::error::Result;
use crate::gpu::cost::{dispatches, Dispatch};
use crate::gpu::decide::{decide, Target};
use crate::gpu::profile::GpuProfile;

/// One dispatch with what the profile says of it.
#[derive(Debug, Clone, Serialize)]
pub struct DispatchReport {
    #[serde(flatten)]
    pub dispatch: Dispatch,
    /// Workgroups per compute unit (with a profile).
    pub per_unit: Option<f64>,
    /// Workgroups over the workgroups the chip runs at once (with a profile).
    pub waves: Option<f64>,
    /// The roofline floor: max(FLOPs / FP32 peak, bytes / bandwidth), microseconds.
    pub floor_us: Option<f64>,
}

/// One layer shape's plan in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub shape: String,
    pub mode: &'static str,
    /// `Decisions`' one-line summary.
    pub decisions: String,
    pub dispatches: Vec<DispatchReport>,
    pub flops: u64,
    pub bytes: u64,
    /// Sum of the dispatches' floors (they depend on each other), microseconds.
    pub floor_us: Option<f64>,
    /// Dispatches of over 4 MFLOP that give the chip fewer than 2 workgroups per compute unit.
    pub underfilled: Vec<&'static str>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub profile: Option<GpuProfile>,
    pub plans: Vec<PlanReport>,
}

/// Dispatches over this many FLOPs must fill the chip (at least 2 workgroups per compute unit,
/// or for a GEMM as many K slices as its inner dimension allows).
pub const FILL_FLOPS: u64 = 4_000_000;

/// The report of `config` on input `shape` (named `name`) in `mode`, decided for `target`.
pub fn plan_report(
    target: &Target,
    profile: Option<&GpuProfile>,
    (name, config, shape): (&str, &DrConvConfig, &[usize]),
    mode: Mode,
) -> Result<PlanReport> {
    let s = config.forward_shape(shape)?;
    let d = decide(target, config, &s, mode, true);
    let list: Vec<_> = dispatches(&d, config, &s)
        .into_iter()
        .map(|dispatch| {
            let units = profile.map(|p| p.compute_units as f64);
            DispatchReport {
                per_unit: units.map(|u| dispatch.workgroups as f64 / u),
                waves: profile.map(|p| dispatch.workgroups as f64 / p.slots() as f64),
                floor_us: profile.map(|p| 1e6 * p.floor_s(dispatch.flops, dispatch.bytes)),
                dispatch,
            }
        })
        .collect();
    let underfilled = match profile {
        Some(p) => list
            .iter()
            .filter(|r| {
                // A GEMM in K slices is split as far as its inner dimension allows.
                let sliced = d.sliced_entries().contains(&r.dispatch.entry);
                r.dispatch.flops > FILL_FLOPS
                    && r.dispatch.workgroups < 2 * p.compute_units as u64
                    && !sliced
            })
            .map(|r| r.dispatch.label)
            .collect(),
        None => Vec::new(),
    };
    Ok(PlanReport {
        shape: name.to_string(),
        mode: match mode {
            Mode::Inference => "inference",
            Mode::Training => "training",
        },
        decisions: d.to_string(),
        flops: list.iter().map(|r| r.dispatch.flops).sum(),
        bytes: list.iter().map(|r| r.dispatch.bytes).sum(),
        floor_us: profile.map(|_| list.iter().filter_map(|r| r.floor_us).sum()),
        underfilled,
        dispatches: list,
    })
}

/// The report as text: a table per plan.
pub fn plan_table(report: &Report) -> String {
    let mut out = String::new();
    if let Some(p) = &report.profile {
        out += &format!(
            "profile {}: {}, {} compute units x {} workgroups of 64, {} TFLOP/s FP32, {} GB/s\n",
            p.name, p.device, p.compute_units, p.slots_per_unit, p.fp32_tflops, p.bandwidth_gbs
        );
    }
    for plan in &report.plans {
        out += &format!("\n{}\n  {}\n", plan.shape, plan.decisions);
        out += &format!(
            "  {:<26}{:<34}{:>10}{:>9}{:>11}{:>12}{:>10}{:>11}\n",
            "step", "entry", "groups", "wg mem", "MFLOP", "KB", "per unit", "floor us"
        );
        for r in &plan.dispatches {
            let d = &r.dispatch;
            let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
            out += &format!(
                "  {:<26}{:<34}{:>10}{:>9}{:>11.2}{:>12.1}{:>10}{:>11}\n",
                d.label,
                format!("{}{}", d.entry, if d.indirect { " (indirect)" } else { "" }),
                d.workgroups,
                d.workgroup_bytes,
                d.flops as f64 / 1e6,
                d.bytes as f64 / 1e3,
                opt(r.per_unit, 2),
                opt(r.floor_us, 2),
            );
        }
        out += &format!(
            "  total: {} dispatches, {:.1} MFLOP, {:.1} KB{}\n",
            plan.dispatches.len(),
            plan.flops as f64 / 1e6,
            plan.bytes as f64 / 1e3,
            plan.floor_us
                .map_or(String::new(), |f| format!(", roofline floor {f:.2} us")),
        );
        if !plan.underfilled.is_empty() {
            out += &format!(
                "  under 2 workgroups per compute unit at over {} MFLOP: {}\n",
                FILL_FLOPS / 1_000_000,
                plan.underfilled.join(", ")
            );
        }
    }
    out
}
