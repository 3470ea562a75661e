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
        let report = bench::run(&ctx, &opts, &mut |line| eprintln!("drconv: {line}")).await?;
        print!("{}", bench::table(&report));
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&report)?;
            std::fs::write(path, text + "\n")
                .map_err(|e| CliError(format!("writing {}: {e}", path.display())))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}
