//! The training demo: load the image, make the target, train a one-region and a region-aware
//! DRConv2d on the GPU, and write the images, the loss plot, the weights and the summary.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;

use crate::config::DrConvConfig;
use crate::demo::args::DemoArgs;
use crate::demo::fit::{fit, FitSettings, Fitted};
use crate::demo::image_io::{self, BUNDLED_NAME};
use crate::demo::plot::{loss_plot, Curve};
use crate::demo::summary::{write_json, ModelReport, TrainSummary};
use crate::demo::target;
use crate::error::{DrConvError, Result};
use crate::gpu::GpuContext;
use crate::optim::OptimizerConfig;
use crate::tensor::Tensor;

/// Curve colours in loss.png: one region red, several regions blue.
pub const SINGLE_COLOUR: [u8; 3] = [214, 39, 40];
pub const REGIONS_COLOUR: [u8; 3] = [31, 119, 180];

/// Everything a training run produced, for callers that want more than the files.
#[derive(Debug, Clone)]
pub struct TrainRun {
    pub summary: TrainSummary,
    /// Centred `1 x 3 x H x W` input and target.
    pub input: Tensor,
    pub target: Tensor,
    pub single: Fitted,
    pub regions: Fitted,
}

/// The layer config of the demo's models: RGB to RGB, k = 3, padding 1.
pub fn model_config(region_num: usize) -> Result<DrConvConfig> {
    DrConvConfig::new(3, 3, 3, region_num)?.with_padding(1)
}

/// Runs the training demo on the default GPU adapter (`WGPU_BACKEND` respected).
pub async fn train(args: &DemoArgs) -> Result<TrainRun> {
    // Option errors first: they should not wait for (or depend on) an adapter.
    args.validate()?;
    model_config(args.regions)?;
    let ctx = GpuContext::new().await?;
    train_on(&ctx, args).await
}

/// [`train`] on a given context.
pub async fn train_on(ctx: &Arc<GpuContext>, args: &DemoArgs) -> Result<TrainRun> {
    args.validate()?;
    let configs = (model_config(1)?, model_config(args.regions)?);
    let start = Instant::now();
    let img = image_io::fit(image_io::load_rgb(args.image.as_deref())?, args.size)?;
    let x = image_io::to_tensor(&img, 3)?;
    let (t, bright) = target::make_target(&x)?;
    let x_gpu = ctx.upload("demo input", &x)?;
    let t_gpu = ctx.upload("demo target", &t)?;
    let settings = FitSettings {
        steps: args.steps,
        optimizer: OptimizerConfig::adam(args.lr),
        seed: args.seed,
        loss_every: args.loss_every,
        quiet: args.quiet,
    };
    let single = fit(ctx, configs.0, &x_gpu, &t_gpu, settings).await?;
    let regions = fit(ctx, configs.1, &x_gpu, &t_gpu, settings).await?;

    std::fs::create_dir_all(&args.out).map_err(|e| DrConvError::io(&args.out, e))?;
    let files = write_outputs(&args.out, args.zoom, &img, &t, &single, &regions)?;
    let info = ctx.summary();
    let report = |f: &Fitted| ModelReport {
        region_num: f.config.region_num,
        config: f.config,
        first_loss: f.losses.first().map(|p| p.1).unwrap_or(f.final_loss),
        final_loss: f.final_loss,
        ms_per_step: f.ms_per_step,
        region_pixels: image_io::region_counts(&f.region, f.config.region_num),
        losses: f.losses.clone(),
    };
    let mut summary = TrainSummary {
        mode: "train",
        adapter: info.name,
        backend: info.backend,
        device_type: info.device_type,
        image: image_name(args.image.as_deref()),
        width: img.width() as usize,
        height: img.height() as usize,
        target: target::DESCRIPTION,
        target_bright_fraction: bright.iter().filter(|&&b| b).count() as f32 / bright.len() as f32,
        steps: args.steps,
        optimizer: settings.optimizer,
        seed: args.seed,
        loss_ratio: single.final_loss / regions.final_loss,
        single: report(&single),
        regions: report(&regions),
        total_seconds: 0.0,
        out_dir: args.out.display().to_string(),
        files,
    };
    summary.files.push("summary.json".into());
    summary.total_seconds = start.elapsed().as_secs_f64();
    write_json(&summary, &args.out.join("summary.json"))?;
    Ok(TrainRun {
        summary,
        input: x,
        target: t,
        single,
        regions,
    })
}

/// How the image is named in summaries.
pub fn image_name(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string())
        .unwrap_or_else(|| BUNDLED_NAME.to_string())
}

/// Writes every image, the plot and the weights; returns the file names.
fn write_outputs(
    out: &Path,
    zoom: u32,
    img: &RgbImage,
    target: &Tensor,
    single: &Fitted,
    regions: &Fitted,
) -> Result<Vec<String>> {
    let overlay = image_io::region_overlay(img, &regions.region)?;
    let images = [
        ("input.png", img.clone()),
        ("target.png", image_io::to_image(target)?),
        ("output_single.png", image_io::to_image(&single.output)?),
        ("output_regions.png", image_io::to_image(&regions.output)?),
        ("regions.png", overlay),
    ];
    let mut files = Vec::new();
    let counts = image_io::region_counts(&regions.region, regions.config.region_num);
    for (name, im) in images {
        let mut im = image_io::upscale(&im, zoom);
        if name == "regions.png" {
            // Which colour is which region, and how many pixels each holds.
            im = super::plot::with_region_legend(&im, &counts);
        }
        image_io::save_png(&im, &out.join(name))?;
        files.push(name.to_string());
    }
    let single_label = format!("region_num {}", single.config.region_num);
    let regions_label = format!("region_num {}", regions.config.region_num);
    let plot = loss_plot(
        "drconv training loss",
        &[
            Curve {
                label: &single_label,
                colour: SINGLE_COLOUR,
                points: &single.losses,
            },
            Curve {
                label: &regions_label,
                colour: REGIONS_COLOUR,
                points: &regions.losses,
            },
        ],
    )?;
    image_io::save_png(&plot, &out.join("loss.png"))?;
    files.push("loss.png".into());
    crate::weights::save_safetensors(&regions.params, out.join("weights.safetensors"))?;
    files.push("weights.safetensors".into());
    Ok(files)
}
