//! What a demo run reports: `summary.json` and the same facts printed for a person.

use std::path::Path;

use serde::Serialize;

use crate::config::DrConvConfig;
use crate::error::{DrConvError, Result};
use crate::optim::OptimizerConfig;

/// One trained model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub region_num: usize,
    pub config: DrConvConfig,
    /// Loss before the first update.
    pub first_loss: f32,
    /// MSE of the trained layer.
    pub final_loss: f32,
    pub ms_per_step: f64,
    /// Pixels assigned to each region by the trained layer.
    pub region_pixels: Vec<usize>,
    /// `(step, loss)` as plotted in loss.png.
    pub losses: Vec<(u64, f32)>,
}

/// `summary.json` of a training run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub mode: &'static str,
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub image: String,
    pub width: usize,
    pub height: usize,
    pub target: &'static str,
    /// Share of pixels the target makes grey (bright neighbourhood).
    pub target_bright_fraction: f32,
    pub steps: usize,
    pub optimizer: OptimizerConfig,
    pub seed: u64,
    pub single: ModelReport,
    pub regions: ModelReport,
    /// `single.final_loss / regions.final_loss`.
    pub loss_ratio: f32,
    pub total_seconds: f64,
    pub out_dir: String,
    pub files: Vec<String>,
}

/// `summary.json` of a `--weights` run.
#[derive(Debug, Clone, Serialize)]
pub struct ApplySummary {
    pub mode: &'static str,
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub weights: String,
    /// Prefix of the layer's tensors in the file (empty for a file of the layer alone).
    pub prefix: String,
    pub config: DrConvConfig,
    pub image: String,
    pub width: usize,
    pub height: usize,
    pub region_pixels: Vec<usize>,
    pub forward_ms: f64,
    pub out_dir: String,
    pub files: Vec<String>,
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json<T: Serialize>(value: &T, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| DrConvError::Config(format!("cannot serialize the summary: {e}")))?;
    std::fs::write(path, text + "\n").map_err(|e| DrConvError::io(path, e))
}

fn pixels(counts: &[usize]) -> String {
    counts
        .iter()
        .enumerate()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl TrainSummary {
    /// The report printed at the end of a run.
    pub fn human(&self) -> String {
        let model = |m: &ModelReport| {
            format!(
                "  region_num {:<2} final MSE {:.5} (from {:.3})  {:.1} ms/step\n",
                m.region_num, m.final_loss, m.first_loss, m.ms_per_step
            )
        };
        let c = &self.regions.config;
        format!(
            "DRConv demo on {} ({}, {})\n\
             image  {} at {}x{}\n\
             target {} ({:.0}% of pixels grey)\n\
             trained DRConv2d({}->{}, k={}, padding={}) for {} steps each, Adam lr {}:\n\
             {}{}\
             region-aware loss is {:.1}x lower; pixels per region: {}\n\
             took {:.1} s; files in {}: {}\n",
            self.adapter,
            self.backend,
            self.device_type,
            self.image,
            self.width,
            self.height,
            self.target,
            self.target_bright_fraction * 100.0,
            c.in_channels,
            c.out_channels,
            c.kernel_size,
            c.padding,
            self.steps,
            self.optimizer.lr(),
            model(&self.single),
            model(&self.regions),
            self.loss_ratio,
            pixels(&self.regions.region_pixels),
            self.total_seconds,
            self.out_dir,
            self.files.join(", "),
        )
    }
}

impl ApplySummary {
    pub fn human(&self) -> String {
        let c = &self.config;
        format!(
            "DRConv2d({}->{}, k={}, region_num={}, stride={}, padding={}, dilation={}) from {}\n\
             ran on {} ({}, {}) over {} at {}x{} in {:.1} ms\n\
             pixels per region: {}\n\
             files in {}: {}\n",
            c.in_channels,
            c.out_channels,
            c.kernel_size,
            c.region_num,
            c.stride,
            c.padding,
            c.dilation,
            self.weights,
            self.adapter,
            self.backend,
            self.device_type,
            self.image,
            self.width,
            self.height,
            self.forward_ms,
            pixels(&self.region_pixels),
            self.out_dir,
            self.files.join(", "),
        )
    }
}
