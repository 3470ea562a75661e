//! A YOLO-style detector trained in PyTorch (`python/detector.py`), exported to ONNX with its two
//! DRConv2d layers as `drconv.DRConv2d` nodes (`python/drconv_onnx.py`), and generated as a burn
//! model at build time by burn-onnx with drconv's hook (`build.rs`): the model, its plain-conv
//! twin, and the host side (image in, boxes out) that `python/detector.py` documents.

use burn::tensor::{Device, Tensor, TensorData};

/// The generated models (burn-onnx writes them into `OUT_DIR/model/`; generated code, so the
/// crate's lints do not apply).
#[allow(clippy::all, unused)]
pub mod model {
    /// The detector with two DRConv blocks in its neck (from `detector.onnx`).
    pub mod detector {
        include!(concat!(env!("OUT_DIR"), "/model/detector.rs"));
    }
    /// The same detector with plain 3x3 convs in their place (from `detector_conv.onnx`).
    pub mod detector_conv {
        include!(concat!(env!("OUT_DIR"), "/model/detector_conv.rs"));
    }
    /// Four DRConv layers covering every attribute of the node (from `fixtures/attrs.onnx`).
    pub mod attrs {
        include!(concat!(env!("OUT_DIR"), "/model/attrs.rs"));
    }
}

/// The models' input side (pixels).
pub const SIZE: usize = 128;
/// Class names, in the order of the class logits.
pub const CLASSES: [&str; 3] = ["circle", "square", "triangle"];
/// The two output scales' strides (outputs `p8`, `p16`).
pub const STRIDES: [usize; 2] = [8, 16];

/// One detected box, in input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Left, top, right, bottom.
    pub bbox: [f32; 4],
    /// Index into [`CLASSES`].
    pub class: usize,
    /// sigmoid(objectness) x the class's softmax probability.
    pub score: f32,
}

/// The image at `path` as the models take it: RGB in [0, 1], 1 x 3 x 128 x 128 (resized if it
/// has another size), and the RGB image itself.
pub fn load_image(path: &str, device: &Device) -> Result<(Tensor<4>, image::RgbImage), String> {
    let img = image::open(path)
        .map_err(|e| format!("reading {path}: {e}"))?
        .to_rgb8();
    let img = if img.dimensions() == (SIZE as u32, SIZE as u32) {
        img
    } else {
        image::imageops::resize(&img, SIZE as u32, SIZE as u32, image::imageops::Triangle)
    };
    let mut chw = vec![0f32; 3 * SIZE * SIZE];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            chw[c * SIZE * SIZE + y as usize * SIZE + x as usize] = f32::from(p[c]) / 255.0;
        }
    }
    let data = TensorData::new(chw, [1, 3, SIZE, SIZE]);
    Ok((Tensor::from_data(data, device), img))
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// The boxes of one image whose score exceeds `conf`, from one scale's output (C x G x G, flat,
/// channel-major), in the order `python/detector.py`'s `decode` yields them: cells row-major.
fn decode_scale(map: &[f32], grid: usize, stride: usize, conf: f32, out: &mut Vec<Detection>) {
    let at = |c: usize, gy: usize, gx: usize| map[(c * grid + gy) * grid + gx];
    let s = stride as f32;
    for gy in 0..grid {
        for gx in 0..grid {
            let logits: Vec<f32> = (5..5 + CLASSES.len()).map(|c| at(c, gy, gx)).collect();
            let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = logits.iter().map(|l| (l - top).exp()).sum();
            // First maximum on ties, as numpy's argmax.
            let class = logits.iter().position(|&l| l == top).unwrap_or(0);
            let score = sigmoid(at(0, gy, gx)) / sum;
            if score <= conf {
                continue;
            }
            let cx = (gx as f32 + sigmoid(at(1, gy, gx))) * s;
            let cy = (gy as f32 + sigmoid(at(2, gy, gx))) * s;
            let w = s * at(3, gy, gx).clamp(-4.0, 4.0).exp();
            let h = s * at(4, gy, gx).clamp(-4.0, 4.0).exp();
            out.push(Detection {
                bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                class,
                score,
            });
        }
    }
}

/// Every image's boxes above `conf` from the two outputs (`p8` B x 8 x 16 x 16, `p16`
/// B x 8 x 8 x 8), scale by scale.
pub fn decode(p8: &Tensor<4>, p16: &Tensor<4>, conf: f32) -> Vec<Vec<Detection>> {
    let maps = [p8, p16].map(|t| {
        let dims = t.dims();
        let values = t.clone().into_data().convert::<f32>().try_to_vec::<f32>();
        (dims, values.unwrap_or_default())
    });
    let batch = maps[0].0[0];
    (0..batch)
        .map(|b| {
            let mut dets = Vec::new();
            for ((dims, values), stride) in maps.iter().zip(STRIDES) {
                let per = dims[1] * dims[2] * dims[3];
                let image = &values[b * per..(b + 1) * per];
                decode_scale(image, dims[2], stride, conf, &mut dets);
            }
            dets
        })
        .collect()
}

/// Intersection over union, continuous coordinates.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let inter =
        (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Greedy class-aware non-maximum suppression: highest score first (stable), a box is dropped
/// when a kept box of its class overlaps it by more than `iou_threshold`; at most 100 kept.
pub fn nms(mut dets: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in dets {
        if kept.len() == 100 {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|k| k.class == d.class && iou(&k.bbox, &d.bbox) > iou_threshold);
        if !suppressed {
            kept.push(d);
        }
    }
    kept
}

/// Draws each box into `img`: 2 px in its class's colour inside a 1 px black line, so it shows
/// on any background.
pub fn draw(img: &mut image::RgbImage, dets: &[Detection]) {
    const COLOURS: [[u8; 3]; 3] = [[255, 40, 40], [255, 255, 255], [40, 160, 255]];
    let (w, h) = (img.width() as i64, img.height() as i64);
    for d in dets {
        let [x1, y1, x2, y2] = d.bbox.map(|v| v.round() as i64);
        for t in -1..2 {
            let colour = image::Rgb(if t < 0 {
                [0, 0, 0]
            } else {
                COLOURS[d.class % COLOURS.len()]
            });
            let mut put = |x: i64, y: i64| {
                if (0..w).contains(&x) && (0..h).contains(&y) {
                    img.put_pixel(x as u32, y as u32, colour);
                }
            };
            for x in x1 - 1..=x2 + 1 {
                put(x, y1 + t);
                put(x, y2 - t);
            }
            for y in y1 - 1..=y2 + 1 {
                put(x1 + t, y);
                put(x2 - t, y);
            }
        }
    }
}

/// Reads the F32 tensor `name` of a safetensors file onto `device`.
pub fn fixture(bytes: &[u8], name: &str, device: &Device) -> Result<Tensor<4>, String> {
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let view = file.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let shape: [usize; 4] = view
        .shape()
        .try_into()
        .map_err(|_| format!("{name} has shape {:?}, expected 4-D", view.shape()))?;
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}
