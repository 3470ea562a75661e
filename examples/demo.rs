//! Watch DRConv learn regions: `cargo run --release --example demo` trains a one-region and a
//! region-aware DRConv2d on the GPU to reproduce a content-dependent filter of a photo and writes
//! the outputs, the learned region map, the loss curves and the weights to `demo-out/`.
//! `--help` lists the options; `WGPU_BACKEND` picks the backend (vulkan, gl, metal, dx12).

use std::process::ExitCode;

use clap::Parser;
use drconv::internal::demo::{run_blocking, DemoArgs};

#[derive(Debug, Parser)]
#[command(name = "demo", about = "Watch DRConv learn regions on the GPU")]
struct Cli {
    #[command(flatten)]
    args: DemoArgs,
}

fn main() -> ExitCode {
    // The crate's and wgpu's warnings reach the terminal (RUST_LOG=info or debug for more).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run_blocking(&cli.args) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo: error: {e}");
            ExitCode::from(2)
        }
    }
}
