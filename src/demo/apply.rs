//! `--weights`: run a trained DRConv2d (safetensors with the reference's state_dict names, from
//! this demo or from PyTorch) on an image and write its output and region map.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use image::imageops::FilterType;

use crate::config::DrConvConfig;
use crate::config::Mode;
use crate::demo::args::DemoArgs;
use crate::demo::image_io;
use crate::demo::run::image_name;
use crate::demo::summary::{write_json, ApplySummary};
use crate::error::{DrConvError, Result};
use crate::gpu::GpuContext;
use crate::layer::DrConv2d;
use crate::params::DrConvParams;
use crate::tensor::Tensor;
use crate::weights;

/// What a `--weights` run produced.
#[derive(Debug, Clone)]
pub struct ApplyRun {
    pub summary: ApplySummary,
    /// The layer's output, `1 x O x H' x W'`.
    pub output: Tensor,
    /// Region of each output pixel, `H' x W'`.
    pub region: Vec<i32>,
}

/// The layer config of a weights file: the one this crate saved in the metadata when present,
/// else inferred from the tensor shapes with stride 1, dilation 1 and padding
/// `(kernel_size - 1) / 2`. An explicit `padding` overrides either.
pub fn weights_config(bytes: &[u8], prefix: &str, padding: Option<usize>) -> Result<DrConvConfig> {
    let saved = if prefix.is_empty() {
        weights::saved_config(bytes)?
    } else {
        None
    };
    let config = match saved {
        Some(c) => c,
        None => {
            let c = weights::infer_config_with_prefix(bytes, prefix, 1, 0, 1)?;
            c.with_padding((c.kernel_size - 1) / 2)?
        }
    };
    match padding {
        Some(p) => config.with_padding(p),
        None => Ok(config),
    }
}

/// Runs the layer in `weights_path` on the image of `args` (default adapter).
pub async fn apply(args: &DemoArgs, weights_path: &Path) -> Result<ApplyRun> {
    // File and option errors first: they should not wait for (or depend on) an adapter.
    let params = load_params(args, weights_path)?;
    let ctx = GpuContext::new().await?;
    run_layer(&ctx, args, weights_path, params).await
}

/// [`apply`] on a given context.
pub async fn apply_on(
    ctx: &Arc<GpuContext>,
    args: &DemoArgs,
    weights_path: &Path,
) -> Result<ApplyRun> {
    let params = load_params(args, weights_path)?;
    run_layer(ctx, args, weights_path, params).await
}

/// Reads and checks the weights file (config, channel counts, every tensor).
fn load_params(args: &DemoArgs, weights_path: &Path) -> Result<DrConvParams> {
    args.validate()?;
    let bytes = std::fs::read(weights_path).map_err(|e| DrConvError::io(weights_path, e))?;
    let config = weights_config(&bytes, &args.prefix, args.padding)?;
    let (i, o) = (config.in_channels, config.out_channels);
    if !matches!(i, 1 | 3) || !matches!(o, 1 | 3) {
        return Err(DrConvError::Config(format!(
            "the demo shows layers with 1 (luminance) or 3 (RGB) input and output channels; \
             {} is {i} -> {o}: run it through the Rust API (drconv::DrConv2d) instead",
            weights_path.display()
        )));
    }
    if args.prefix.is_empty() {
        weights::load_safetensors_bytes(&config, &bytes)
    } else {
        weights::load_safetensors_with_prefix(&config, &bytes, &args.prefix)
    }
}

async fn run_layer(
    ctx: &Arc<GpuContext>,
    args: &DemoArgs,
    weights_path: &Path,
    params: DrConvParams,
) -> Result<ApplyRun> {
    let config = params.config;
    let i = config.in_channels;
    let img = image_io::fit(image_io::load_rgb(args.image.as_deref())?, args.size)?;
    let x = image_io::to_tensor(&img, i)?;
    let mut layer = DrConv2d::new(ctx.clone(), &params)?;
    let x_gpu = layer.upload(&x)?;
    let trace = layer.forward_trace(&x_gpu, Mode::Inference).await?;
    // Timed again now that the plan and pipelines exist.
    let timer = Instant::now();
    layer.forward(&x_gpu, Mode::Inference).await?;
    ctx.poll_wait()?;
    let forward_ms = timer.elapsed().as_secs_f64() * 1e3;

    let (oh, ow) = (trace.shape.out_height as u32, trace.shape.out_width as u32);
    let base = if img.dimensions() == (ow, oh) {
        img.clone()
    } else {
        image::imageops::resize(&img, ow, oh, FilterType::Triangle)
    };
    let out = &args.out;
    std::fs::create_dir_all(out).map_err(|e| DrConvError::io(out, e))?;
    let images = [
        ("input.png", img.clone()),
        ("output.png", image_io::to_image(&trace.output)?),
        (
            "regions.png",
            image_io::region_overlay(&base, &trace.region_index)?,
        ),
    ];
    let mut files = Vec::new();
    for (name, im) in images {
        image_io::save_png(&image_io::upscale(&im, args.zoom), &out.join(name))?;
        files.push(name.to_string());
    }
    files.push("summary.json".into());
    let info = ctx.summary();
    let summary = ApplySummary {
        mode: "apply",
        adapter: info.name,
        backend: info.backend,
        device_type: info.device_type,
        // Absolute, so that summary.json still names the file from another folder.
        weights: std::fs::canonicalize(weights_path)
            .unwrap_or_else(|_| weights_path.to_path_buf())
            .display()
            .to_string(),
        prefix: args.prefix.clone(),
        config,
        image: image_name(args.image.as_deref()),
        width: img.width() as usize,
        height: img.height() as usize,
        region_pixels: image_io::region_counts(&trace.region_index, config.region_num),
        forward_ms,
        out_dir: out.display().to_string(),
        files,
    };
    write_json(&summary, &out.join("summary.json"))?;
    Ok(ApplyRun {
        summary,
        output: trace.output,
        region: trace.region_index,
    })
}
