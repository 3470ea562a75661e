//! The row split: when one sample does not fit even with one output channel, sub-plans take
//! bands of output rows.
//!
//! A band of `ny` output rows from `y0` is an ordinary sub-plan (same layer, same padding) of a
//! band of input rows copied out of x. The sub-plan pads its band with zero rows top and bottom,
//! which is right only at the image's edges, so its band starts `top = ceil(p / s)` output rows
//! early: sub-plan output row `j` is output row `y0 + j - top`, input row `m` of the band is
//! input row `(y0 - top) * s + m` (zeros where that is outside `0..H`, written by the program).
//! Rows `top..top + ny` of the sub-plan's output are exact; the `top` rows above and the
//! `floor(p / s)` rows below them are discarded, and in the backward get a zero upstream
//! gradient, so they add nothing to any gradient. The pooled map needs the whole image: it is
//! computed before the bands (`super::pool`) and copied into each band's sub-plan, whose own pool
//! and pool backward are left out of its program.

use super::band::band;
use super::chunks::Chunk;
use super::copies::{copy, Dir};
use crate::config::DrConvConfig;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::program::Step;

/// The input row of the band starting at output row `y0` that is its sub-plan's input row 0
/// (negative: above the image).
fn first_input_row(c: &DrConvConfig, y0: usize) -> i64 {
    (y0 as i64 - c.padding.div_ceil(c.stride) as i64) * c.stride as i64
}

/// Copies of `nrows` rows between `full` (`B x C x H x W`, or `B x H x W` as one channel) at
/// samples `b0..`, channels `c0..` and row `full_row`, and every sample and channel of `chunk`
/// from its row `chunk_row`: one copy per (sample, channel).
#[allow(clippy::too_many_arguments)]
pub(super) fn rows(
    label: &'static str,
    full: &GpuTensor,
    chunk: &GpuTensor,
    (b0, c0): (usize, usize),
    full_row: usize,
    chunk_row: usize,
    nrows: usize,
    dir: Dir,
) -> Vec<Step> {
    let planes = |t: &GpuTensor| -> (u64, u64, u64) {
        let n = t.shape.len();
        let ch = if n == 4 { t.shape[1] } else { 1 };
        (ch as u64, t.shape[n - 2] as u64, t.shape[n - 1] as u64)
    };
    let (fc, fh, w) = planes(full);
    let (cc, chh, _) = planes(chunk);
    let nb = chunk.shape[0] as u64;
    let mut steps = Vec::new();
    for j in 0..nb {
        for k in 0..cc {
            let at = (((b0 as u64 + j) * fc + c0 as u64 + k) * fh + full_row as u64) * w * 4;
            let chunk_at = ((j * cc + k) * chh + chunk_row as u64) * w * 4;
            steps.push(copy(
                label,
                full,
                at,
                chunk,
                chunk_at,
                nrows as u64 * w * 4,
                dir,
            ));
        }
    }
    steps
}

/// A band's input rows that lie in the image, as `(full_row, chunk_row, nrows)`, and whether
/// the band also has rows outside it (zeros).
fn input_rows(c: &DrConvConfig, height: usize, ch: &Chunk) -> ((usize, usize, usize), bool) {
    let b = band(c, ch.ny);
    let a = first_input_row(c, ch.y0);
    let lo = a.max(0);
    let hi = (a + b.in_rows as i64).min(height as i64);
    let inside = ((lo as usize), (lo - a) as usize, (hi - lo).max(0) as usize);
    (inside, a < 0 || hi < a + b.in_rows as i64)
}

/// The steps filling chunk `ch`'s input band `band_x` from `x`: zeros first when the band reaches
/// past the image (the buffer is shared by bands of one size), then its rows.
pub(super) fn input_in(
    c: &DrConvConfig,
    x: &GpuTensor,
    band_x: &GpuTensor,
    ch: &Chunk,
) -> Vec<Step> {
    let ((full_row, chunk_row, n), outside) = input_rows(c, x.shape[2], ch);
    let mut steps = Vec::new();
    if outside {
        let bytes = band_x.numel() as u64 * 4;
        steps.push(Step::clear("input band zeros", &band_x.buffer, 0, bytes));
    }
    if n > 0 {
        steps.extend(rows(
            "input band in",
            x,
            band_x,
            (ch.b0, 0),
            full_row,
            chunk_row,
            n,
            Dir::In,
        ));
    }
    steps
}

/// The copies of the exact rows of a chunk's output-shaped tensor (output, guide, region map,
/// grad_output) to or from the full tensor, at channel `c0` of it.
pub(super) fn out_rows(
    label: &'static str,
    c: &DrConvConfig,
    full: &GpuTensor,
    chunk: &GpuTensor,
    ch: &Chunk,
    c0: usize,
    dir: Dir,
) -> Vec<Step> {
    let top = band(c, ch.ny).top;
    rows(label, full, chunk, (ch.b0, c0), ch.y0, top, ch.ny, dir)
}

/// The steps adding a band's `grad.x` (`band_dx`, through `scratch` of its shape) into the full
/// `grad_x`: the band's rows in the image copied out, summed with `add` (scratch += band_dx),
/// copied back. Bands overlap by the kernel's reach, so each adds to what the last left.
pub(super) fn add_input_grad(
    c: &DrConvConfig,
    grad_x: &GpuTensor,
    scratch: &GpuTensor,
    add: &[Step],
    ch: &Chunk,
) -> Vec<Step> {
    let ((full_row, chunk_row, n), _) = input_rows(c, grad_x.shape[2], ch);
    if n == 0 {
        return Vec::new();
    }
    let at = (ch.b0, 0);
    let mut steps = rows(
        "grad.x band in",
        grad_x,
        scratch,
        at,
        full_row,
        chunk_row,
        n,
        Dir::In,
    );
    steps.extend(add.iter().cloned());
    steps.extend(rows(
        "grad.x band out",
        grad_x,
        scratch,
        at,
        full_row,
        chunk_row,
        n,
        Dir::Out,
    ));
    steps
}
