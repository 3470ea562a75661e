//! The demo's options, shared by `cargo run --example demo` and `drconv demo` (clap derive).

use std::path::PathBuf;

use crate::error::{DrConvError, Result};

/// Training steps of each model by default. With [`DEFAULT_SIZE`] the whole run takes about
/// 40 s on a software Vulkan adapter (lavapipe, 2 cores), a few seconds on a real GPU.
pub const DEFAULT_STEPS: usize = 600;
/// Longer image side, in pixels, by default.
pub const DEFAULT_SIZE: u32 = 80;
/// Adam learning rate by default: from PyTorch's init (loss ~5) it brings both models to their
/// plateau within the default steps without diverging.
pub const DEFAULT_LR: f32 = 0.05;

/// Train DRConv to reproduce a content-dependent filter and show the regions it learns, or run
/// a trained layer (`--weights`) on an image.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Image to use (PNG or JPEG); the bundled astronaut photo when absent.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Regions of the region-aware model (the other model has 1).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub regions: usize,
    /// Training steps of each model.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_STEPS)]
    pub steps: usize,
    /// Output folder (created if needed).
    #[arg(long, value_name = "DIR", default_value = "demo-out")]
    pub out: PathBuf,
    /// Run this trained layer (safetensors, the reference's state_dict names) on the image
    /// instead of training: writes input.png, output.png, regions.png and summary.json.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Seed of the parameter init.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Longer image side in pixels (larger images are downscaled; time grows with the area).
    #[arg(long, value_name = "PX", default_value_t = DEFAULT_SIZE)]
    pub size: u32,
    /// Adam learning rate.
    #[arg(long, default_value_t = DEFAULT_LR)]
    pub lr: f32,
    /// Read the loss back every N steps (each read waits for the GPU).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub loss_every: usize,
    /// Nearest-neighbour magnification of the written images.
    #[arg(long, default_value_t = 4)]
    pub zoom: u32,
    /// With --weights: the layer's padding (not stored in PyTorch's state_dict). Default: the
    /// value saved by this crate in the file's metadata, else (kernel_size - 1) / 2.
    #[arg(long)]
    pub padding: Option<usize>,
    /// With --weights: the prefix of the layer's tensors inside a larger model's file, e.g.
    /// `neck.drconv.` (trailing dot included).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs {
            image: None,
            regions: 4,
            steps: DEFAULT_STEPS,
            out: PathBuf::from("demo-out"),
            weights: None,
            seed: 0,
            size: DEFAULT_SIZE,
            lr: DEFAULT_LR,
            loss_every: 10,
            zoom: 4,
            padding: None,
            prefix: String::new(),
            quiet: false,
        }
    }
}

impl DemoArgs {
    /// Range checks that the layer and optimizer configs do not already make.
    pub fn validate(&self) -> Result<()> {
        let at_least_one = [
            ("--steps", self.steps),
            ("--loss-every", self.loss_every),
            ("--size", self.size as usize),
        ];
        for (name, v) in at_least_one {
            if v == 0 {
                return Err(DrConvError::Config(format!(
                    "{name} is 0; it must be at least 1"
                )));
            }
        }
        if !(1..=16).contains(&self.zoom) {
            return Err(DrConvError::Config(format!(
                "--zoom is {}; it must be in 1..=16",
                self.zoom
            )));
        }
        Ok(())
    }
}
