//! The demo's target: a content-dependent filter that no single convolution reproduces.
//!
//! With `x` the centred RGB input (`value/255 - 0.5`), `L` its Rec. 601 luma and `box` the 3x3
//! mean with zero padding (the layers' `padding = 1`):
//!
//! * where the neighbourhood is bright (`box(L) >= 0`, i.e. mean luma at least mid-grey), the
//!   target is grey: every channel `box(L)`;
//! * where it is dark, the target is the colour image with doubled contrast: `2 * box(x)`.
//!
//! One convolution applies one colour mix everywhere, so it can only compromise between
//! "desaturate" and "boost"; a DRConv with two regions reproduces the target exactly
//! ([`oracle_params`]): the guide computes `box(L)` and its argmax picks the filter per pixel. Both
//! filters are spatially uniform 3x3 kernels, which the kernel generator can produce from its
//! bias alone whatever the image (its `k x k` spatial variation is tied to the image's pooled
//! colours), so the gap between `region_num = 1` and more regions measures region awareness.

use crate::config::DrConvConfig;
use crate::demo::image_io::luma;
use crate::error::{DrConvError, Result};
use crate::params::{DrConvParams, ParamId};
use crate::tensor::Tensor;

/// Contrast gain applied in dark neighbourhoods.
pub const DARK_GAIN: f32 = 2.0;

/// One-line description for summaries.
pub const DESCRIPTION: &str = "grey where the 3x3 neighbourhood is bright, 2x contrast where it \
                               is dark (both 3x3-smoothed)";

/// The target for a centred `1 x 3 x H x W` input, and the bright mask (`H x W`, true = grey).
pub fn make_target(x: &Tensor) -> Result<(Tensor, Vec<bool>)> {
    let (h, w) = match x.shape.as_slice() {
        [1, 3, h, w] => (*h, *w),
        s => {
            return Err(DrConvError::Shape(format!(
                "the demo target needs a 1 x 3 x H x W image, got {s:?}"
            )))
        }
    };
    let plane = h * w;
    let lum: Vec<f32> = (0..plane)
        .map(|i| luma([x.data[i], x.data[plane + i], x.data[2 * plane + i]]))
        .collect();
    let lum_box = box3(&lum, h, w);
    let bright: Vec<bool> = lum_box.iter().map(|&v| v >= 0.0).collect();
    let mut data = vec![0.0f32; 3 * plane];
    for c in 0..3 {
        let chan_box = box3(&x.data[c * plane..(c + 1) * plane], h, w);
        for i in 0..plane {
            data[c * plane + i] = if bright[i] {
                lum_box[i]
            } else {
                DARK_GAIN * chan_box[i]
            };
        }
    }
    Ok((Tensor::new(&[1, 3, h, w], data)?, bright))
}

/// 3x3 mean with zero padding, summed in the same row-major tap order as the correlation.
pub fn box3(plane: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0.0f32;
            for dy in 0..3 {
                for dx in 0..3 {
                    let (yy, xx) = ((y + dy).wrapping_sub(1), (x + dx).wrapping_sub(1));
                    if yy < h && xx < w {
                        s += plane[yy * w + xx] / 9.0;
                    }
                }
            }
            out[y * w + x] = s;
        }
    }
    out
}

/// A DRConv2d(3, 3, k=3, region_num=2, padding=1) whose output is exactly the target: region 0
/// (grey) wins where `box(L) >= 0` (argmax picks the first of equal values), region 1 (gain)
/// elsewhere. The kernel generator's weights are zero, so the kernels are its biases.
pub fn oracle_params() -> Result<DrConvParams> {
    let config = DrConvConfig::new(3, 3, 3, 2)?.with_padding(1)?;
    let mut p = DrConvParams::init(config, 0)?;
    for id in [ParamId::KernelW1, ParamId::KernelB1, ParamId::KernelW3] {
        p.get_mut(id).fill(0.0);
    }
    let coef = [0.299f32, 0.587, 0.114];
    // Kernel channel g*I*O + o*I + i (region g, output o, input i), each spatially uniform.
    let b3 = p.get_mut(ParamId::KernelB3);
    for o in 0..3 {
        for i in 0..3 {
            b3[o * 3 + i] = coef[i] / 9.0;
            b3[9 + o * 3 + i] = if o == i { DARK_GAIN / 9.0 } else { 0.0 };
        }
    }
    // Guide: region 0 = box(L), region 1 = 0.
    let gw = p.get_mut(ParamId::GuideW);
    gw.fill(0.0);
    for (i, c) in coef.iter().enumerate() {
        gw[i * 9..(i + 1) * 9].fill(c / 9.0);
    }
    p.get_mut(ParamId::GuideB).fill(0.0);
    Ok(p)
}
