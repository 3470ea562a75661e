//! `drconv verify`: runs golden cases through the GPU layer (or the CPU reference) and compares
//! every tensor with the golden files, one line (or one JSON object) per case.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use drconv::golden::{list_cases, GoldenCase};
use drconv::verify::{compare_case, CaseReport};
use drconv::{DrConv2d, GpuContext, Mode};
use drconv::{ForwardTrace, Gradients};

use super::{say, CliError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    /// Every region's correlation: all intermediates exist and are checked.
    Training,
    /// The fused path (no correlation tensor): checks output, region map and the kernel branch.
    Inference,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object per case: {"case", "ok", "tensors": {NAME: {"max_abs_err", "ok"}}}.
    #[arg(long)]
    json: bool,
    /// Run the plain-Rust CPU reference instead of the GPU.
    #[arg(long)]
    cpu: bool,
    /// Which GPU forward to run.
    #[arg(long, value_enum, default_value_t = ModeArg::Training)]
    mode: ModeArg,
    /// Case directories (holding case.json) or directories of cases (index.json or subdirectories).
    #[arg(required = true, value_name = "CASE_DIR")]
    dirs: Vec<PathBuf>,
}

/// Where the cases run.
enum Runner {
    Cpu,
    Gpu(Arc<GpuContext>, Mode),
}

impl Runner {
    /// Whether this runner computes gradients: the backward reads the training forward's
    /// tensors, so the fused inference path has none (they stay `null`, never "passed").
    fn has_backward(&self) -> bool {
        !matches!(self, Runner::Gpu(_, Mode::Inference))
    }

    async fn run(&self, case: &GoldenCase) -> drconv::Result<(ForwardTrace, Option<Gradients>)> {
        match self {
            Runner::Cpu => {
                let trace = drconv::cpu::forward(&case.params, &case.x)?;
                let grads = match &case.grad_output {
                    Some(gy) => Some(drconv::cpu::backward(&case.params, &case.x, &trace, gy)?),
                    None => None,
                };
                Ok((trace, grads))
            }
            Runner::Gpu(ctx, mode) => {
                let mut layer = DrConv2d::new(ctx.clone(), &case.params)?;
                let x = layer.upload(&case.x)?;
                // NaN first, so a tensor the shaders never wrote cannot pass by accident.
                layer.plan(&x, *mode).await?.poison(ctx);
                let trace = layer.forward_trace(&x, *mode).await?;
                let grads = match (&case.grad_output, mode) {
                    (Some(gy), Mode::Training) => {
                        let gy = ctx.upload("grad_output", gy)?;
                        let plan = layer.backward_plan(&x).await?;
                        // dcorr exists only for inspection; make it now so it is poisoned too.
                        plan.materialise_corr(ctx, &case.config)?;
                        plan.poison(ctx);
                        Some(layer.backward_trace(&x, &gy).await?)
                    }
                    _ => None,
                };
                Ok((trace, grads))
            }
        }
    }

    /// Whether the golden tensor `stem` is outside what this run computes by design.
    fn out_of_scope(&self, stem: &str) -> bool {
        let inference = matches!(self, Runner::Gpu(_, Mode::Inference));
        (inference && stem == "inter.corr") || (stem.starts_with("grad.") && !self.has_backward())
    }
}

/// Each argument as a case directory or a directory of cases, in order.
fn case_dirs(args: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut dirs = Vec::new();
    for a in args {
        if a.join("case.json").is_file() {
            dirs.push(a.clone());
        } else if a.is_dir() {
            let found = list_cases(a)?;
            if found.is_empty() {
                return Err(CliError(format!(
                    "{} has no case.json, no index.json and no subdirectory with a case.json",
                    a.display()
                )));
            }
            dirs.extend(found);
        } else {
            return Err(CliError(format!("{} is not a directory", a.display())));
        }
    }
    Ok(dirs)
}

/// The report of one case: a tensor out of scope is `null` and does not fail the case; one in
/// scope must be produced and within tolerance.
fn report(
    runner: &Runner,
    case: &GoldenCase,
    fwd: &ForwardTrace,
    grads: Option<&Gradients>,
) -> CaseReport {
    let mut r = compare_case(case, fwd, grads);
    r.ok = r
        .tensors
        .iter()
        .all(|(name, t)| t.ok == Some(true) || (t.ok.is_none() && runner.out_of_scope(name)));
    r
}

/// `summary_line` without the out-of-scope tensors, which are counted at the end instead.
fn human_line(runner: &Runner, r: &CaseReport) -> String {
    let mut shown = r.clone();
    shown
        .tensors
        .retain(|name, t| t.ok.is_some() || !runner.out_of_scope(name));
    let skipped = r.tensors.len() - shown.tensors.len();
    let mut line = shown.summary_line();
    if skipped > 0 {
        line.push_str(&format!("  (not computed by this run: {skipped} tensors)"));
    }
    line
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let cases = case_dirs(&args.dirs)?
        .into_iter()
        .map(GoldenCase::load)
        .collect::<drconv::Result<Vec<_>>>()?;
    pollster::block_on(async {
        let runner =
            match (args.cpu, args.mode) {
                (true, ModeArg::Inference) => return Err(CliError(
                    "--mode inference selects the fused GPU forward; the CPU reference has only \
                     the training forward (drop --cpu or --mode)"
                        .into(),
                )),
                (true, ModeArg::Training) => Runner::Cpu,
                (false, mode) => {
                    let ctx = super::context().await?;
                    let s = ctx.summary();
                    eprintln!(
                        "drconv: adapter {} ({}, {}, driver {} {})",
                        s.name, s.backend, s.device_type, s.driver, s.driver_info
                    );
                    let mode = match mode {
                        ModeArg::Training => Mode::Training,
                        ModeArg::Inference => Mode::Inference,
                    };
                    Runner::Gpu(ctx, mode)
                }
            };
        if !runner.has_backward() {
            eprintln!("drconv: the inference path has no backward; gradients are reported as null");
        }
        let mut passed = 0;
        for case in &cases {
            let ok = match runner.run(case).await {
                Ok((fwd, grads)) => {
                    let r = report(&runner, case, &fwd, grads.as_ref());
                    if args.json {
                        say(serde_json::to_string(&r)?)?;
                    } else {
                        say(human_line(&runner, &r))?;
                    }
                    r.ok
                }
                Err(e) => {
                    if args.json {
                        let v = serde_json::json!({
                            "case": case.name, "ok": false, "error": e.to_string(), "tensors": {}
                        });
                        say(v)?;
                    } else {
                        say(format!("{:<18} ERROR  {e}", case.name))?;
                    }
                    false
                }
            };
            passed += ok as usize;
        }
        let summary = format!("{passed} of {} cases passed", cases.len());
        if args.json {
            eprintln!("drconv: {summary}");
        } else {
            say(summary)?;
        }
        Ok(if passed == cases.len() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
