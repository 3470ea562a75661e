//! Training one DRConv2d toward the target on the GPU with a progress bar, then evaluating it.

use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::DrConvConfig;
use crate::config::Mode;
use crate::error::{DrConvError, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::optim::OptimizerConfig;
use crate::params::DrConvParams;
use crate::tensor::Tensor;
use crate::train::Trainer;

/// What training one model produced.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub config: DrConvConfig,
    /// `(step, loss before that step's update)` every `loss_every` steps and at the last step,
    /// then `(steps, final_loss)`.
    pub losses: Vec<(u64, f32)>,
    /// MSE of the trained layer's output (host-side, f64 accumulation).
    pub final_loss: f32,
    /// Wall time per step after the first (which builds the plans), GPU work included.
    pub ms_per_step: f64,
    pub params: DrConvParams,
    /// Output of the trained layer, `1 x O x H x W`.
    pub output: Tensor,
    /// Region of each output pixel, `H x W`.
    pub region: Vec<i32>,
}

/// Training settings shared by both models.
#[derive(Debug, Clone, Copy)]
pub struct FitSettings {
    pub steps: usize,
    pub optimizer: OptimizerConfig,
    pub seed: u64,
    pub loss_every: usize,
    pub quiet: bool,
}

/// Trains a fresh layer with `config` (init from `settings.seed`) for `settings.steps` Adam
/// steps on `x` toward `target` (both already on the device), reading the loss back only every
/// `loss_every` steps so the other steps are one submission each with no wait.
pub async fn fit(
    ctx: &Arc<GpuContext>,
    config: DrConvConfig,
    x: &GpuTensor,
    target: &GpuTensor,
    settings: FitSettings,
) -> Result<Fitted> {
    let init = DrConvParams::init(config, settings.seed)?;
    let mut trainer = Trainer::new(ctx.clone(), &init, settings.optimizer).await?;
    let bar = progress_bar(settings, config.region_num);
    let mut losses = Vec::new();
    let mut timer = Instant::now();
    for step in 0..settings.steps {
        let last = step + 1 == settings.steps;
        let read = step % settings.loss_every == 0 || last;
        if let Some(loss) = trainer.step(x, target, read).await? {
            if !loss.is_finite() {
                bar.abandon();
                return Err(DrConvError::Config(format!(
                    "training region_num {} diverged: loss {loss} at step {step} \
                     (learning rate {}); try a smaller --lr",
                    config.region_num,
                    settings.optimizer.lr()
                )));
            }
            losses.push((step as u64, loss));
            bar.set_message(format!("loss {loss:.5}"));
        }
        if step == 0 {
            // Plans and pipelines are built on the first step: keep it out of the timing.
            ctx.poll_wait()?;
            timer = Instant::now();
        }
        bar.inc(1);
    }
    ctx.poll_wait()?;
    let timed_steps = settings.steps.saturating_sub(1).max(1);
    let ms_per_step = timer.elapsed().as_secs_f64() * 1e3 / timed_steps as f64;

    let trace = trainer
        .layer_mut()
        .forward_trace(x, Mode::Inference)
        .await?;
    let host_target = target.read(ctx).await?;
    let final_loss = mse(&trace.output, &host_target)?;
    losses.push((settings.steps as u64, final_loss));
    bar.finish_with_message(format!(
        "final loss {final_loss:.5}, {ms_per_step:.1} ms/step"
    ));
    Ok(Fitted {
        config,
        losses,
        final_loss,
        ms_per_step,
        params: trainer.params().await?,
        output: trace.output,
        region: trace.region_index,
    })
}

/// `mean((a - b)^2)`, accumulated in f64.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.shape != b.shape || a.data.is_empty() {
        return Err(DrConvError::Shape(format!(
            "MSE of tensors of shapes {:?} and {:?}",
            a.shape, b.shape
        )));
    }
    let sum: f64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
        .sum();
    Ok((sum / a.data.len() as f64) as f32)
}

fn progress_bar(settings: FitSettings, region_num: usize) -> ProgressBar {
    if settings.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(settings.steps as u64);
    let style = ProgressStyle::with_template(
        "{prefix:>13} [{bar:32.cyan/blue}] {pos:>5}/{len} {msg} ({elapsed}, eta {eta})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(format!("region_num {region_num}"));
    bar
}
