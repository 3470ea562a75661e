//! `drconv bench`: the fused inference forward against the all-regions forward at the issue's
//! shapes, next to a plain GEMM, on the default adapter (`WGPU_BACKEND` respected).

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
    /// Run only this shape (1-4, as listed in PERF.md); repeat for several.
    #[arg(long = "shape", value_name = "N", value_parser = clap::value_parser!(u8).range(1..=4))]
    shapes: Vec<u8>,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    pollster::block_on(async {
        let ctx = super::context().await?;
        let opts = BenchOptions {
            quick: args.quick,
            shapes: args.shapes.iter().map(|&n| n as usize).collect(),
        };
        let shapes = match opts.shapes.len() {
            0 => bench::SHAPES.len(),
            n => n,
        };
        let bar = progress_bar(shapes);
        let report = bench::run(&ctx, &opts, &mut |line| {
            match line.strip_prefix(bench::SHAPE_DONE) {
                Some(shape) => {
                    bar.inc(1);
                    bar.set_message(format!("done:{shape}"));
                }
                // suspend, not println: println prints nothing when stderr is no terminal.
                None => bar.suspend(|| eprintln!("drconv: {line}")),
            }
        })
        .await?;
        bar.finish_and_clear();
        print!("{}", bench::table(&report));
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&report)?;
            std::fs::write(path, text + "\n")
                .map_err(|e| CliError(format!("writing {}: {e}", path.display())))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One step per shape, with the elapsed time and an estimate of what is left (each shape takes
/// about as long as the others), printed on stderr.
fn progress_bar(shapes: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(shapes as u64);
    let style = indicatif::ProgressStyle::with_template(
        "bench [{bar:24.cyan/blue}] {pos}/{len} shapes {msg} ({elapsed}, eta {eta})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message("GEMM first");
    bar
}
