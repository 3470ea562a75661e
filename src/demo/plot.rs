//! The loss plot, drawn pixel by pixel with the `image` crate: axes, a log-scale y axis with a
//! gridline per decade, step ticks, one coloured line per curve and a legend.

use image::{Rgb, RgbImage};

use crate::demo::font;
use crate::error::{DrConvError, Result};

/// One curve: a label for the legend, its colour, and `(step, loss)` points in step order.
#[derive(Debug, Clone)]
pub struct Curve<'a> {
    pub label: &'a str,
    pub colour: [u8; 3],
    pub points: &'a [(u64, f32)],
}

const WIDTH: u32 = 720;
const HEIGHT: u32 = 440;
const LEFT: u32 = 70;
const RIGHT: u32 = 24;
const TOP: u32 = 40;
const BOTTOM: u32 = 52;
const TEXT: u32 = 2;
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const MINOR: Rgb<u8> = Rgb([242, 242, 242]);

/// Draws the curves over `0..=max_step` with a log10 loss axis. Non-positive or non-finite
/// losses cannot be shown on a log axis and are skipped.
pub fn loss_plot(title: &str, curves: &[Curve]) -> Result<RgbImage> {
    let finite = |l: f32| l.is_finite() && l > 0.0;
    let values: Vec<f32> = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .filter(|&l| finite(l))
        .collect();
    if values.is_empty() {
        return Err(DrConvError::Config(
            "nothing to plot: no positive, finite loss values".into(),
        ));
    }
    let lo = values.iter().fold(f32::INFINITY, |a, &b| a.min(b)).log10();
    let hi = values.iter().fold(0.0f32, |a, &b| a.max(b)).log10();
    let (d0, mut d1) = (lo.floor() as i32, hi.ceil() as i32);
    if d1 <= d0 {
        d1 = d0 + 1;
    }
    let max_step = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(0)
        .max(1);

    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
    let (x0, x1) = (LEFT as f32, (WIDTH - RIGHT) as f32);
    let (y0, y1) = ((HEIGHT - BOTTOM) as f32, TOP as f32);
    let px = |step: u64| x0 + (x1 - x0) * step as f32 / max_step as f32;
    let py = |log: f32| y0 + (y1 - y0) * (log - d0 as f32) / (d1 - d0) as f32;

    // Decade gridlines with labels, and 2..9 minor lines.
    for d in d0..=d1 {
        let y = py(d as f32);
        hline(&mut img, x0, x1, y, GRID);
        let label = format!("1e{d}");
        let w = font::text_width(&label, TEXT) as f32;
        text(&mut img, &label, x0 - w - 8.0, y - 7.0, BLACK);
        if d < d1 {
            for m in 2..10 {
                hline(&mut img, x0, x1, py(d as f32 + (m as f32).log10()), MINOR);
            }
        }
    }
    // Step ticks at a 1-2-5 spacing, about 6 of them.
    let tick = nice_step(max_step as f64 / 6.0);
    let mut s = 0u64;
    while s <= max_step {
        let x = px(s);
        line(&mut img, (x, y0), (x, y0 + 5.0), BLACK, 1);
        let label = s.to_string();
        let w = font::text_width(&label, TEXT) as f32;
        text(&mut img, &label, x - w / 2.0, y0 + 10.0, BLACK);
        s += tick;
    }
    // Axes and their labels.
    line(&mut img, (x0, y0), (x1, y0), BLACK, 1);
    line(&mut img, (x0, y0), (x0, y1), BLACK, 1);
    let xl = "step";
    let w = font::text_width(xl, TEXT) as f32;
    text(&mut img, xl, (x0 + x1 - w) / 2.0, y0 + 30.0, BLACK);
    text(&mut img, "mse", 8.0, y1 - 26.0, BLACK);
    let tw = font::text_width(title, TEXT) as f32;
    text(&mut img, title, (x0 + x1 - tw) / 2.0, 12.0, BLACK);

    for c in curves {
        let pts: Vec<(f32, f32)> = c
            .points
            .iter()
            .filter(|p| finite(p.1))
            .map(|&(s, l)| (px(s), py(l.log10())))
            .collect();
        let colour = Rgb(c.colour);
        for pair in pts.windows(2) {
            line(&mut img, pair[0], pair[1], colour, 2);
        }
        if let [only] = pts.as_slice() {
            line(&mut img, *only, *only, colour, 3);
        }
    }
    // Legend, top right.
    let mut ly = y1 + 10.0;
    let widest = curves
        .iter()
        .map(|c| font::text_width(c.label, TEXT))
        .max()
        .unwrap_or(0) as f32;
    let lx = x1 - widest - 44.0;
    for c in curves {
        line(
            &mut img,
            (lx, ly + 7.0),
            (lx + 28.0, ly + 7.0),
            Rgb(c.colour),
            3,
        );
        text(&mut img, c.label, lx + 36.0, ly, BLACK);
        ly += 22.0;
    }
    Ok(img)
}

/// The 1-2-5 multiple of a power of ten nearest above `raw` (at least 1).
fn nice_step(raw: f64) -> u64 {
    let raw = raw.max(1.0);
    let p = 10f64.powf(raw.log10().floor());
    let m = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|m| m * p >= raw)
        .unwrap_or(10.0);
    (m * p).round() as u64
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn hline(img: &mut RgbImage, x0: f32, x1: f32, y: f32, c: Rgb<u8>) {
    line(img, (x0, y), (x1, y), c, 1);
}

/// A line `thickness` pixels wide (a square brush stepped along the longer axis).
fn line(img: &mut RgbImage, a: (f32, f32), b: (f32, f32), c: Rgb<u8>, thickness: i64) {
    let n = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as i64;
    let lo = -(thickness - 1) / 2;
    for i in 0..=n {
        let t = i as f32 / n as f32;
        let x = (a.0 + (b.0 - a.0) * t).round() as i64;
        let y = (a.1 + (b.1 - a.1) * t).round() as i64;
        for dy in lo..lo + thickness {
            for dx in lo..lo + thickness {
                put(img, x + dx, y + dy, c);
            }
        }
    }
}

/// Draws `s` with its top-left corner at (x, y).
fn text(img: &mut RgbImage, s: &str, x: f32, y: f32, c: Rgb<u8>) {
    let (x, y) = (x.round() as i64, y.round() as i64);
    let step = ((font::WIDTH + 1) * TEXT) as i64;
    for (i, ch) in s.chars().enumerate() {
        let rows = font::glyph(ch);
        let drop = if font::descends(ch) { font::DESCENT } else { 0 };
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..font::WIDTH {
                if bits & (1 << (font::WIDTH - 1 - col)) != 0 {
                    for sy in 0..TEXT as i64 {
                        for sx in 0..TEXT as i64 {
                            put(
                                img,
                                x + i as i64 * step + (col * TEXT) as i64 + sx,
                                y + ((r as u32 + drop) * TEXT) as i64 + sy,
                                c,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `img` (the region overlay, already upscaled) with a legend strip below it: per region its
/// palette colour, its index and its pixel count (of the model's output map).
pub fn with_region_legend(img: &RgbImage, counts: &[usize]) -> RgbImage {
    let total: usize = counts.iter().sum();
    let labels: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(g, &n)| format!("region {g}: {n} of {total} px"))
        .collect();
    let line = (font::HEIGHT + font::DESCENT + 2) * TEXT;
    let swatch = font::HEIGHT * TEXT;
    let pad = 2 * TEXT;
    let widest = labels
        .iter()
        .map(|l| font::text_width(l, TEXT))
        .max()
        .unwrap_or(0);
    let (w, h) = img.dimensions();
    let width = w.max(pad * 3 + swatch + widest);
    let height = h + pad + line * labels.len() as u32 + pad;
    let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    image::imageops::replace(&mut out, img, 0, 0);
    for (g, label) in labels.iter().enumerate() {
        let y = h + pad + line * g as u32;
        let colour = Rgb(super::image_io::PALETTE[g % super::image_io::PALETTE.len()]);
        for dy in 0..swatch {
            for dx in 0..swatch {
                put(&mut out, (pad + dx) as i64, (y + dy) as i64, colour);
            }
        }
        let x = pad * 2 + swatch;
        text(&mut out, label, x as f32, y as f32, Rgb([0, 0, 0]));
    }
    out
}
