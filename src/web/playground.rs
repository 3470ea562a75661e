//! The browser demo: an image on the GPU, the native demo's target for it, a pretrained layer run
//! on it, and a fresh layer trained toward the target, all through the crate's own demo helpers
//! (`demo::image_io`, `demo::target`), layer and trainer. Pixels come back as RGBA for canvases.

use std::sync::Arc;

use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use wasm_bindgen::prelude::*;

use crate::config::DrConvConfig;
use crate::config::Mode;
use crate::cpu::mse_loss;
use crate::demo::{image_io, target};
use crate::error::{DrConvError, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::layer::DrConv2d;
use crate::optim::OptimizerConfig;
use crate::params::DrConvParams;
use crate::tensor::Tensor;
use crate::train::Trainer;
use crate::web::gpu::WebGpu;
use crate::web::js::{js_err, now_ms, to_json, work_done};
use crate::weights;

/// A layer's output and region map on the playground's image, ready for `putImageData`.
#[wasm_bindgen]
pub struct Frame {
    width: u32,
    height: u32,
    output: Vec<u8>,
    regions: Vec<u8>,
    region_pixels: Vec<u32>,
    loss: Option<f32>,
    forward_ms: f64,
}

#[wasm_bindgen]
impl Frame {
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.width
    }
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.height
    }
    /// The layer's output as RGBA (un-centred, clamped), `width x height`.
    #[wasm_bindgen(getter)]
    pub fn output(&self) -> Vec<u8> {
        self.output.clone()
    }
    /// The region map over the image in the demo's palette, RGBA.
    #[wasm_bindgen(getter)]
    pub fn regions(&self) -> Vec<u8> {
        self.regions.clone()
    }
    /// Pixels per region `0..region_num`.
    #[wasm_bindgen(getter)]
    pub fn region_pixels(&self) -> Vec<u32> {
        self.region_pixels.clone()
    }
    /// MSE against the demo target, when the output has the target's shape.
    #[wasm_bindgen(getter)]
    pub fn loss(&self) -> Option<f32> {
        self.loss
    }
    /// Milliseconds per inference forward (plan already built; GPU work included).
    #[wasm_bindgen(getter)]
    pub fn forward_ms(&self) -> f64 {
        self.forward_ms
    }
}

/// Where a training run stands after a call to [`Playground::train`].
#[wasm_bindgen]
#[derive(Debug, Clone, Copy)]
pub struct TrainProgress {
    /// Steps taken since `start_training`.
    pub steps: u32,
    /// MSE before the last step's update.
    pub loss: f32,
    /// Milliseconds per training step in this call (forward, loss, backward, Adam; GPU included).
    pub ms_per_step: f64,
}

/// A layer loaded from weights, with the input tensor its channel count needs.
struct Loaded {
    layer: DrConv2d,
    x: GpuTensor,
}

/// One image and the layers the page runs on it.
#[wasm_bindgen]
pub struct Playground {
    ctx: Arc<GpuContext>,
    image: RgbImage,
    /// Centred `1 x 3 x H x W` RGB, on the device.
    x: GpuTensor,
    target: Tensor,
    target_gpu: GpuTensor,
    loaded: Option<Loaded>,
    trainer: Option<Trainer>,
}

#[wasm_bindgen]
impl Playground {
    /// The native demo's bundled photo (`assets/astronaut.png`), downscaled so that its longer
    /// side is at most `max_side` pixels.
    pub fn bundled(gpu: &WebGpu, max_side: u32) -> Result<Playground, JsError> {
        let img = image_io::decode(image_io::BUNDLED_IMAGE, "the bundled image").map_err(js_err)?;
        Self::with_image(gpu, img, max_side).map_err(js_err)
    }

    /// An image the browser decoded (`ImageData.data`: RGBA, `width x height`; alpha ignored).
    pub fn from_rgba(
        gpu: &WebGpu,
        rgba: &[u8],
        width: u32,
        height: u32,
        max_side: u32,
    ) -> Result<Playground, JsError> {
        let want = width as usize * height as usize * 4;
        if rgba.len() != want || want == 0 {
            return Err(js_err(DrConvError::Image(format!(
                "{width} x {height} RGBA needs {want} bytes (and at least one pixel), got {}",
                rgba.len()
            ))));
        }
        let img = RgbImage::from_fn(width, height, |x, y| {
            let i = (y as usize * width as usize + x as usize) * 4;
            Rgb([rgba[i], rgba[i + 1], rgba[i + 2]])
        });
        Self::with_image(gpu, img, max_side).map_err(js_err)
    }

    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.image.width()
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.image.height()
    }

    /// The (downscaled) input image as RGBA.
    pub fn input_rgba(&self) -> Vec<u8> {
        rgba(&self.image)
    }

    /// The demo's target for this image as RGBA (see `demo::target`).
    pub fn target_rgba(&self) -> Result<Vec<u8>, JsError> {
        Ok(rgba(&image_io::to_image(&self.target).map_err(js_err)?))
    }

    /// What the target is, in words.
    pub fn target_description() -> String {
        target::DESCRIPTION.to_string()
    }

    /// The region palette, RGB triples flattened (region `r` is `palette[3r..3r+3]`, cycled).
    pub fn palette() -> Vec<u8> {
        image_io::PALETTE.iter().flatten().copied().collect()
    }

    /// Loads a trained layer from safetensors bytes (the reference's state_dict names). The
    /// config is the one this crate saved in the metadata, else inferred from the shapes with
    /// stride 1, dilation 1 and padding `(k - 1) / 2`. Returns the config as JSON.
    pub fn load_weights(&mut self, bytes: &[u8]) -> Result<String, JsError> {
        let config = weights_config(bytes).map_err(js_err)?;
        let (i, o) = (config.in_channels, config.out_channels);
        if !matches!(i, 1 | 3) || !matches!(o, 1 | 3) {
            return Err(js_err(DrConvError::Config(format!(
                "the page shows layers with 1 (luminance) or 3 (RGB) input and output channels; \
                 these weights are {i} -> {o}"
            ))));
        }
        let params = weights::load_safetensors_bytes(&config, bytes).map_err(js_err)?;
        let layer = DrConv2d::new(self.ctx.clone(), &params).map_err(js_err)?;
        let x = image_io::to_tensor(&self.image, i)
            .and_then(|t| layer.upload(&t))
            .map_err(js_err)?;
        self.loaded = Some(Loaded { layer, x });
        to_json(&config)
    }

    /// Runs the loaded layer (inference path) and returns its frame; the forward time is the mean
    /// of `repeats` forwards after a first one that builds the plan.
    pub async fn run_loaded(&mut self, repeats: u32) -> Result<Frame, JsError> {
        let loaded = self.loaded.as_mut().ok_or_else(|| {
            js_err(DrConvError::Config(
                "no layer loaded: call load_weights first".into(),
            ))
        })?;
        frame(
            &self.ctx,
            &mut loaded.layer,
            &loaded.x,
            &self.image,
            &self.target,
            repeats,
        )
        .await
        .map_err(js_err)
    }

    /// A fresh `DrConv2d(3, 3, k=3, region_num = regions, padding=1)` (the native demo's model),
    /// PyTorch's init from `seed`, and Adam with learning rate `lr`.
    pub async fn start_training(
        &mut self,
        regions: u32,
        lr: f32,
        seed: u32,
    ) -> Result<(), JsError> {
        self.trainer = None; // frees the previous run's buffers first
        let config = DrConvConfig::new(3, 3, 3, regions as usize)
            .and_then(|c| c.with_padding(1))
            .map_err(js_err)?;
        let params = DrConvParams::init(config, seed as u64).map_err(js_err)?;
        let trainer = Trainer::new(self.ctx.clone(), &params, OptimizerConfig::adam(lr))
            .await
            .map_err(js_err)?;
        self.trainer = Some(trainer);
        Ok(())
    }

    /// `steps` training steps (one submission each); only the last one reads the loss back.
    pub async fn train(&mut self, steps: u32) -> Result<TrainProgress, JsError> {
        let trainer = self.trainer.as_mut().ok_or_else(|| {
            js_err(DrConvError::Config(
                "no training run: call start_training first".into(),
            ))
        })?;
        if steps == 0 {
            return Err(js_err(DrConvError::Config(
                "steps is 0; it must be at least 1".into(),
            )));
        }
        let start = now_ms();
        let mut loss = None;
        for i in 0..steps {
            loss = trainer
                .step(&self.x, &self.target_gpu, i + 1 == steps)
                .await
                .map_err(js_err)?;
        }
        let ms_per_step = (now_ms() - start) / steps as f64;
        let loss = loss.unwrap_or(f32::NAN);
        if !loss.is_finite() {
            return Err(js_err(DrConvError::Config(format!(
                "training diverged: loss {loss} after {} steps; try a smaller learning rate",
                trainer.steps()
            ))));
        }
        Ok(TrainProgress {
            steps: trainer.steps() as u32,
            loss,
            ms_per_step,
        })
    }

    /// The layer being trained, run on the image (inference path).
    pub async fn trained_frame(&mut self, repeats: u32) -> Result<Frame, JsError> {
        let trainer = self.trainer.as_mut().ok_or_else(|| {
            js_err(DrConvError::Config(
                "no training run: call start_training first".into(),
            ))
        })?;
        frame(
            &self.ctx,
            trainer.layer_mut(),
            &self.x,
            &self.image,
            &self.target,
            repeats,
        )
        .await
        .map_err(js_err)
    }

    /// The trained parameters as safetensors bytes (loadable by `load_weights` and PyTorch).
    pub async fn trained_weights(&self) -> Result<Vec<u8>, JsError> {
        let trainer = self.trainer.as_ref().ok_or_else(|| {
            js_err(DrConvError::Config(
                "no training run: call start_training first".into(),
            ))
        })?;
        let params = trainer.params().await.map_err(js_err)?;
        weights::save_safetensors_bytes(&params).map_err(js_err)
    }
}

impl Playground {
    fn with_image(gpu: &WebGpu, img: RgbImage, max_side: u32) -> Result<Playground> {
        let image = image_io::fit(img, max_side)?;
        let x_host = image_io::to_tensor(&image, 3)?;
        let (target, _) = target::make_target(&x_host)?;
        let ctx = gpu.ctx.clone();
        let x = ctx.upload("image", &x_host)?;
        let target_gpu = ctx.upload("target", &target)?;
        Ok(Playground {
            ctx,
            image,
            x,
            target,
            target_gpu,
            loaded: None,
            trainer: None,
        })
    }
}

/// The config of a weights file: saved in its metadata by this crate, else inferred (PyTorch's
/// files carry no stride, padding or dilation: assume 1, "same" padding, 1).
fn weights_config(bytes: &[u8]) -> Result<DrConvConfig> {
    match weights::saved_config(bytes)? {
        Some(c) => Ok(c),
        None => {
            let c = weights::infer_config(bytes, 1, 0, 1)?;
            c.with_padding((c.kernel_size - 1) / 2)
        }
    }
}

/// Runs `layer` on `x`, times `repeats` more forwards, and draws output and regions.
async fn frame(
    ctx: &GpuContext,
    layer: &mut DrConv2d,
    x: &GpuTensor,
    image: &RgbImage,
    target: &Tensor,
    repeats: u32,
) -> Result<Frame> {
    layer.forward(x, Mode::Inference).await?;
    work_done(ctx).await?;
    let repeats = repeats.max(1);
    let start = now_ms();
    for _ in 0..repeats {
        layer.forward(x, Mode::Inference).await?;
    }
    work_done(ctx).await?;
    let forward_ms = (now_ms() - start) / repeats as f64;

    let region_num = layer.config().region_num;
    let plan = layer.plan(x, Mode::Inference).await?;
    let output = plan.output.read(ctx).await?;
    let region = plan.region.read_i32(ctx).await?;
    let (oh, ow) = (plan.shape.out_height as u32, plan.shape.out_width as u32);
    // A layer without "same" padding has a smaller output: draw its regions on a resized image.
    let base = if image.dimensions() == (ow, oh) {
        image.clone()
    } else {
        image::imageops::resize(image, ow, oh, FilterType::Triangle)
    };
    let loss = if output.shape == target.shape {
        Some(mse_loss(&output, target)?.0)
    } else {
        None
    };
    Ok(Frame {
        width: ow,
        height: oh,
        output: rgba(&image_io::to_image(&output)?),
        regions: rgba(&image_io::region_overlay(&base, &region)?),
        region_pixels: image_io::region_counts(&region, region_num)
            .into_iter()
            .map(|n| n as u32)
            .collect(),
        loss,
        forward_ms,
    })
}

/// RGB pixels to the RGBA layout of `ImageData`.
fn rgba(img: &RgbImage) -> Vec<u8> {
    img.pixels()
        .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
        .collect()
}
