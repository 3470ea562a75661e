//! The native demo (`cargo run --release --example demo`, `drconv demo`): watch DRConv learn
//! regions. A photo is turned into a target by a filter that depends on the content (grey where
//! the neighbourhood is bright, doubled contrast where it is dark; see [`target`]); one DRConv2d
//! with a single region and one with several are trained on the GPU to reproduce it, and the
//! region map the second one learns is drawn over the image.
//!
//! With `--weights FILE` it instead runs a trained layer (e.g. exported from PyTorch, see
//! `examples/export_pytorch.py`) on an image.

#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod apply;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod args;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod fit;
pub mod font;
pub mod image_io;
pub mod plot;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod run;
pub mod summary;
pub mod target;

// The training and apply drivers use clap, indicatif and the clock: native only. The image
// helpers, the target and the plot are shared with the browser demo (`crate::web`).
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub use apply::{apply, apply_on, ApplyRun};
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub use args::DemoArgs;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub use run::{train, train_on, TrainRun};

#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
use crate::error::Result;

/// Runs the demo the arguments ask for (training, or `--weights`) and returns the report to
/// print. Blocks on the GPU work (native only).
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub fn run_blocking(args: &DemoArgs) -> Result<String> {
    pollster::block_on(async {
        match &args.weights {
            Some(w) => Ok(apply(args, w).await?.summary.human()),
            None => Ok(train(args).await?.summary.human()),
        }
    })
}
