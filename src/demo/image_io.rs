//! Images in and out of the demo: decoding (the bundled photo or a file), resizing, the
//! centred `1 x C x H x W` tensors the layers see, and PNG output, region maps included.

use std::path::Path;

use image::imageops::FilterType;
use image::{Rgb, RgbImage};

use crate::error::{DrConvError, Result};
use crate::tensor::Tensor;

/// The default image: 128 x 128 photo of astronaut Eileen Collins (NASA, public domain; see
/// `assets/README.md`).
pub const BUNDLED_IMAGE: &[u8] = include_bytes!("../../assets/astronaut.png");

/// How the bundled image is named in summaries.
pub const BUNDLED_NAME: &str = "bundled astronaut.png (NASA, public domain)";

/// Pixels are fed to the layers as `value / 255 - OFFSET`: centred on mid-grey, so that colour
/// transforms that keep grey fixed need no bias (the correlation has none).
pub const OFFSET: f32 = 0.5;

/// One colour per region (Kelly-style, distinguishable), cycled past 12 regions.
pub const PALETTE: [[u8; 3]; 12] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [170, 110, 40],
];

/// Decodes the file at `path`, or the bundled image when `path` is `None`.
pub fn load_rgb(path: Option<&Path>) -> Result<RgbImage> {
    match path {
        None => decode(BUNDLED_IMAGE, "the bundled image"),
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| DrConvError::io(p, e))?;
            decode(&bytes, &p.display().to_string())
        }
    }
}

/// Decodes PNG or JPEG bytes to 8-bit RGB.
pub fn decode(bytes: &[u8], what: &str) -> Result<RgbImage> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| DrConvError::Image(format!("cannot decode {what}: {e}")))?;
    Ok(img.to_rgb8())
}

/// Downscales so that the longer side is at most `max_side` (aspect kept, each side >= 1).
/// Smaller images are returned unchanged.
pub fn fit(img: RgbImage, max_side: u32) -> Result<RgbImage> {
    if max_side == 0 {
        return Err(DrConvError::Config(
            "image size is 0; it must be at least 1 pixel".into(),
        ));
    }
    let (w, h) = img.dimensions();
    let longest = w.max(h);
    if longest <= max_side {
        return Ok(img);
    }
    let scale = |n: u32| ((n as u64 * max_side as u64).div_ceil(longest as u64) as u32).max(1);
    Ok(image::imageops::resize(
        &img,
        scale(w),
        scale(h),
        FilterType::Lanczos3,
    ))
}

/// `1 x channels x H x W` centred tensor: RGB for 3 channels, Rec. 601 luma for 1.
pub fn to_tensor(img: &RgbImage, channels: usize) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let plane = w * h;
    let mut data = vec![0.0f32; channels * plane];
    for (i, px) in img.pixels().enumerate() {
        let v = px.0.map(|c| c as f32 / 255.0 - OFFSET);
        match channels {
            3 => {
                for (c, value) in v.iter().enumerate() {
                    data[c * plane + i] = *value;
                }
            }
            1 => data[i] = luma(v),
            _ => {
                return Err(DrConvError::Shape(format!(
                    "the demo feeds images as 3 channels (RGB) or 1 (luminance), not {channels}"
                )))
            }
        }
    }
    Tensor::new(&[1, channels, h, w], data)
}

/// Rec. 601 luma of an RGB triple (linear, so it commutes with the centring).
pub fn luma(rgb: [f32; 3]) -> f32 {
    0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
}

/// The first image of a `B x C x H x W` tensor (C = 3 or 1) back to 8-bit RGB, un-centred and
/// clamped to [0, 255].
pub fn to_image(t: &Tensor) -> Result<RgbImage> {
    let (c, h, w) = match t.shape.as_slice() {
        [_, c @ (1 | 3), h, w] => (*c, *h, *w),
        s => {
            return Err(DrConvError::Shape(format!(
                "only 1- or 3-channel B x C x H x W tensors can be written as images, got {s:?}"
            )))
        }
    };
    let plane = h * w;
    let byte = |v: f32| ((v + OFFSET) * 255.0).round().clamp(0.0, 255.0) as u8;
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        let ch = |k: usize| byte(t.data[if c == 3 { k * plane + i } else { i }]);
        Rgb([ch(0), ch(1), ch(2)])
    });
    Ok(img)
}

/// The region map drawn over the image: each pixel half its region's palette colour, half the
/// image's grey (so content stays visible but the colours read as regions, not as the photo).
pub fn region_overlay(img: &RgbImage, region: &[i32]) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    if region.len() != (w * h) as usize {
        return Err(DrConvError::Shape(format!(
            "region map has {} entries but the image is {w} x {h}",
            region.len()
        )));
    }
    Ok(RgbImage::from_fn(w, h, |x, y| {
        let px = img.get_pixel(x, y).0;
        let grey = luma(px.map(|c| c as f32));
        let r = region[(y * w + x) as usize].max(0) as usize;
        let col = PALETTE[r % PALETTE.len()];
        Rgb(col.map(|c| (0.55 * c as f32 + 0.45 * grey).round().clamp(0.0, 255.0) as u8))
    }))
}

/// Pixel count of each region `0..region_num`.
pub fn region_counts(region: &[i32], region_num: usize) -> Vec<usize> {
    let mut counts = vec![0; region_num];
    for &r in region {
        if let Some(c) = counts.get_mut(r.max(0) as usize) {
            *c += 1;
        }
    }
    counts
}

/// Nearest-neighbour upscale by an integer factor, so small outputs are viewable.
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    if factor <= 1 {
        return img.clone();
    }
    let (w, h) = img.dimensions();
    image::imageops::resize(img, w * factor, h * factor, FilterType::Nearest)
}

/// Writes `img` as PNG.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| DrConvError::Image(format!("cannot write {}: {e}", path.display())))
}
