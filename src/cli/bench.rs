//! `drconv bench`: the fused inference forward against the all-regions forward at the issue's
//! shapes (S1-S4, and the YOLO neck's Y1 and Y16 on GPUs or with `--yolo`), next to a plain
//! GEMM, on the default adapter (`WGPU_BACKEND` respected); with `--burn` (feature `burn`), the
//! burn module against the same layer in burn's own ops.

use std::path::PathBuf;
use std::process::ExitCode;

use drconv::internal::bench::{self, BenchOptions};

use super::CliError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Short time budgets: a smoke run, not numbers to quote.
    #[arg(long)]
    quick: bool,
    /// Run only this shape (1-4: S1-S4, 5: Y1, 6: Y16, as listed in PERF.md); repeat for
    /// several.
    #[arg(long = "shape", value_name = "N", value_parser = clap::value_parser!(u8).range(1..=6))]
    shapes: Vec<u8>,
    /// Also run the YOLO-neck shapes Y1 and Y16 (B1 and B16, 256->256, r8, 40x40). They run by
    /// default on a GPU; on a CPU adapter (lavapipe) they take minutes, so only when asked.
    #[arg(long)]
    yolo: bool,
    /// The burn module on our kernels against the layer written in burn's tensor ops, on burn's
    /// wgpu device (needs the `burn` feature).
    #[arg(long)]
    burn: bool,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let mut opts = BenchOptions {
        quick: args.quick,
        shapes: args.shapes.iter().map(|&n| n as usize).collect(),
        yolo: args.yolo,
    };
    if args.burn {
        if opts.yolo || opts.shapes.iter().any(|&n| n > bench::SHAPES.len()) {
            return Err(CliError(
                "bench --burn runs S1-S4 only (--shape 1 to 4), not the YOLO shapes".into(),
            ));
        }
        let shapes = opts.selected().count();
        return run_burn(&args, &opts, shapes);
    }
    pollster::block_on(async {
        let ctx = super::context().await?;
        // The YOLO shapes by default on GPUs only: a CPU adapter takes minutes over them.
        opts.yolo |= ctx.summary().device_type != "Cpu";
        let bar = progress_bar(opts.selected().count(), "GEMM first");
        let report = bench::run(&ctx, &opts, &mut progress(&bar)).await?;
        bar.finish_and_clear();
        print!("{}", bench::table(&report));
        write_json(&args, &report)?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(feature = "burn")]
fn run_burn(args: &Args, opts: &BenchOptions, shapes: usize) -> Result<ExitCode, CliError> {
    use drconv::internal::bench::burn_module;
    let bar = progress_bar(shapes, "first calls");
    let report = burn_module::run(opts, &mut progress(&bar))?;
    bar.finish_and_clear();
    print!("{}", burn_module::table(&report));
    write_json(args, &report)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "burn"))]
fn run_burn(_: &Args, _: &BenchOptions, _: usize) -> Result<ExitCode, CliError> {
    Err(CliError(
        "bench --burn: this drconv was built without the `burn` feature; run \
         `cargo run --release --features burn -- bench --burn`"
            .into(),
    ))
}

/// Counts finished shapes on the bar and prints every other line above it.
fn progress(bar: &indicatif::ProgressBar) -> impl FnMut(&str) + '_ {
    move |line| match line.strip_prefix(bench::SHAPE_DONE) {
        Some(shape) => {
            bar.inc(1);
            bar.set_message(format!("done:{shape}"));
        }
        // suspend, not println: println prints nothing when stderr is no terminal.
        None => bar.suspend(|| eprintln!("drconv: {line}")),
    }
}

fn write_json(args: &Args, report: &impl serde::Serialize) -> Result<(), CliError> {
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| CliError(format!("writing {}: {e}", path.display())))?;
    }
    Ok(())
}

/// One step per shape, with the elapsed time and an estimate of what is left (each shape takes
/// about as long as the others), printed on stderr.
fn progress_bar(shapes: usize, first: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(shapes as u64);
    let style = indicatif::ProgressStyle::with_template(
        "bench [{bar:24.cyan/blue}] {pos}/{len} shapes {msg} ({elapsed}, eta {eta})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(first);
    bar
}
