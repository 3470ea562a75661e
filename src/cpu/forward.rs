//! Training-mode forward of DRConv2d with every intermediate, in plain loops.
//!
//! Each stage reads the f32 tensors of the previous stage (as PyTorch does), accumulates in f64
//! and rounds once to f32. Every guide channel is computed by the same loop with the same
//! operation order, so channels with equal weights are bitwise equal (the `ties_dup_channel` case).

use crate::config::{adaptive_bin, DrConvConfig, ForwardShape};
use crate::error::{DrConvError, Result};
use crate::params::{DrConvParams, ParamId};
use crate::tensor::{numel, Tensor};
use crate::trace::ForwardTrace;

/// Full training-mode forward of `params` on `x` (B x I x H x W), keeping every intermediate
/// (`corr` is `Some`). Errors name the offending shape or parameter.
pub fn forward(params: &DrConvParams, x: &Tensor) -> Result<ForwardTrace> {
    let c = &params.config;
    let s = check_inputs(params, x)?;
    let pooled = adaptive_avg_pool(c, &s, x);
    let kernel_logits = kernel_logits(params, &s, &pooled);
    let sigmoid = Tensor {
        shape: kernel_logits.shape.clone(),
        data: kernel_logits.data.iter().map(|&l| sigmoid(l)).collect(),
    };
    let kernel = generate_kernel(params, &s, &sigmoid);
    let corr = correlation(c, &s, x, &kernel);
    let guide = guide(params, &s, x);
    let region_index = region_argmax(c, &s, &guide);
    let output = select_region(c, &s, &corr, &region_index);
    Ok(ForwardTrace {
        shape: s,
        pooled,
        kernel_logits,
        sigmoid,
        kernel,
        corr: Some(corr),
        guide,
        region_index,
        output,
    })
}

/// Validates the config, the six parameter lengths and the input; returns the forward shape.
pub(crate) fn check_inputs(params: &DrConvParams, x: &Tensor) -> Result<ForwardShape> {
    let c = &params.config;
    c.validate()?;
    for id in ParamId::ALL {
        let shape = c.param_shape(id);
        let got = params.get(id).len();
        if got != numel(&shape) {
            return Err(DrConvError::Weights(format!(
                "{} has {got} values but shape {shape:?} needs {}",
                id.name(),
                numel(&shape)
            )));
        }
    }
    let s = c.forward_shape(&x.shape)?;
    if x.data.len() != numel(&x.shape) {
        return Err(DrConvError::Shape(format!(
            "input tensor of shape {:?} needs {} values but holds {}",
            x.shape,
            numel(&x.shape),
            x.data.len()
        )));
    }
    Ok(s)
}

/// Input coordinate read by output position `out` at kernel tap `tap` along an axis of length
/// `n`: `out*stride + tap*dilation - padding`, or None when it falls in the zero padding.
pub(crate) fn input_pos(c: &DrConvConfig, out: usize, tap: usize, n: usize) -> Option<usize> {
    let p = (out * c.stride + tap * c.dilation).checked_sub(c.padding)?;
    (p < n).then_some(p)
}

/// `xpad[b, i, y*s + u*d, xo*s + v*d]`: the input with literal zero padding. Padded taps are
/// multiplied, not skipped, so a NaN/Inf weight on a padded tap gives NaN as in the float64 spec
/// (`np.pad`) and PyTorch's ungrouped conv2d; the GPU shaders do the same.
#[allow(clippy::too_many_arguments)]
pub(crate) fn xpad(
    c: &DrConvConfig,
    s: &ForwardShape,
    x: &Tensor,
    b: usize,
    i: usize,
    y: usize,
    xo: usize,
    u: usize,
    v: usize,
) -> f64 {
    match (input_pos(c, y, u, s.height), input_pos(c, xo, v, s.width)) {
        (Some(iy), Some(ix)) => {
            x.data[((b * c.in_channels + i) * s.height + iy) * s.width + ix] as f64
        }
        _ => 0.0,
    }
}

/// The logistic function, computed in f64.
pub(crate) fn sigmoid(l: f32) -> f32 {
    (1.0 / (1.0 + (-(l as f64)).exp())) as f32
}

/// `AdaptiveAvgPool2d((k, k))`: B x I x k x k.
pub(crate) fn adaptive_avg_pool(c: &DrConvConfig, s: &ForwardShape, x: &Tensor) -> Tensor {
    let (i_n, k, h, w) = (c.in_channels, c.kernel_size, s.height, s.width);
    let mut out = Tensor::zeros(&s.pooled(c));
    for b in 0..s.batch {
        for i in 0..i_n {
            let plane = &x.data[(b * i_n + i) * h * w..][..h * w];
            for u in 0..k {
                let (h0, h1) = adaptive_bin(u, h, k);
                for v in 0..k {
                    let (w0, w1) = adaptive_bin(v, w, k);
                    let mut acc = 0.0f64;
                    for yy in h0..h1 {
                        for xx in w0..w1 {
                            acc += plane[yy * w + xx] as f64;
                        }
                    }
                    let area = ((h1 - h0) * (w1 - w0)) as f64;
                    out.data[((b * i_n + i) * k + u) * k + v] = (acc / area) as f32;
                }
            }
        }
    }
    out
}

/// `conv_kernel.1` (1x1 conv I -> r*r): `logits[b,m,u,v] = b1[m] + sum_i W1[m,i] pooled[b,i,u,v]`.
pub(crate) fn kernel_logits(params: &DrConvParams, s: &ForwardShape, pooled: &Tensor) -> Tensor {
    let c = &params.config;
    let (i_n, kk, rr) = (
        c.in_channels,
        c.kernel_size * c.kernel_size,
        c.region_num * c.region_num,
    );
    let (w1, b1) = (params.get(ParamId::KernelW1), params.get(ParamId::KernelB1));
    let mut out = Tensor::zeros(&s.logits(c));
    for b in 0..s.batch {
        for m in 0..rr {
            for t in 0..kk {
                let mut acc = b1[m] as f64;
                for i in 0..i_n {
                    acc += w1[m * i_n + i] as f64 * pooled.data[(b * i_n + i) * kk + t] as f64;
                }
                out.data[(b * rr + m) * kk + t] = acc as f32;
            }
        }
    }
    out
}

/// `conv_kernel.3` (grouped 1x1 conv r*r -> r*I*O, groups r):
/// `kernel[b, g*I*O + c, t] = b3[g*I*O + c] + sum_j W3[g*I*O + c, j] sig[b, g*r + j, t]`.
pub(crate) fn generate_kernel(params: &DrConvParams, s: &ForwardShape, sig: &Tensor) -> Tensor {
    let c = &params.config;
    let (r, io, kk) = (
        c.region_num,
        c.in_channels * c.out_channels,
        c.kernel_size * c.kernel_size,
    );
    let (w3, b3) = (params.get(ParamId::KernelW3), params.get(ParamId::KernelB3));
    let mut out = Tensor::zeros(&s.kernel(c));
    for b in 0..s.batch {
        for g in 0..r {
            for ch in 0..io {
                let oc = g * io + ch;
                for t in 0..kk {
                    let mut acc = b3[oc] as f64;
                    for j in 0..r {
                        acc += w3[oc * r + j] as f64
                            * sig.data[(b * r * r + g * r + j) * kk + t] as f64;
                    }
                    out.data[(b * r * io + oc) * kk + t] = acc as f32;
                }
            }
        }
    }
    out
}

/// Correlation of x with every region's generated kernel, B x r x O x H' x W':
/// `corr[b,g,o,y,x] = sum_{i,u,v} K[b, g*I*O + o*I + i, u, v] xpad[b, i, y*s + u*d, x*s + v*d]`.
pub fn correlation(c: &DrConvConfig, s: &ForwardShape, x: &Tensor, kernel: &Tensor) -> Tensor {
    let (r, i_n, o_n, k) = (c.region_num, c.in_channels, c.out_channels, c.kernel_size);
    let (ho, wo) = (s.out_height, s.out_width);
    let mut out = Tensor::zeros(&s.corr(c));
    for b in 0..s.batch {
        for g in 0..r {
            for o in 0..o_n {
                // Weights of region g, output channel o: I x k x k.
                let kw = &kernel.data[((b * r + g) * o_n + o) * i_n * k * k..][..i_n * k * k];
                for y in 0..ho {
                    for xo in 0..wo {
                        let mut acc = 0.0f64;
                        for i in 0..i_n {
                            for u in 0..k {
                                for v in 0..k {
                                    acc += kw[(i * k + u) * k + v] as f64
                                        * xpad(c, s, x, b, i, y, xo, u, v);
                                }
                            }
                        }
                        out.data[(((b * r + g) * o_n + o) * ho + y) * wo + xo] = acc as f32;
                    }
                }
            }
        }
    }
    out
}

/// `conv_guide`: B x r x H' x W'. The same loop, in the same order, for every channel.
pub(crate) fn guide(params: &DrConvParams, s: &ForwardShape, x: &Tensor) -> Tensor {
    let c = &params.config;
    let (r, i_n, k) = (c.region_num, c.in_channels, c.kernel_size);
    let (ho, wo) = (s.out_height, s.out_width);
    let (wg, bg) = (params.get(ParamId::GuideW), params.get(ParamId::GuideB));
    let mut out = Tensor::zeros(&s.guide(c));
    for b in 0..s.batch {
        for g in 0..r {
            let gw = &wg[g * i_n * k * k..][..i_n * k * k];
            for y in 0..ho {
                for xo in 0..wo {
                    let mut acc = 0.0f64;
                    for i in 0..i_n {
                        for u in 0..k {
                            for v in 0..k {
                                acc += gw[(i * k + u) * k + v] as f64
                                    * xpad(c, s, x, b, i, y, xo, u, v);
                            }
                        }
                    }
                    out.data[((b * r + g) * ho + y) * wo + xo] = (acc + bg[g] as f64) as f32;
                }
            }
        }
    }
    out
}

/// Index of the first maximal value; a NaN counts as maximal, so the first NaN wins (torch).
/// Returns 0 for an empty input.
pub fn argmax_first(values: impl IntoIterator<Item = f32>) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (idx, v) in values.into_iter().enumerate() {
        if idx == 0 || v.is_nan() || v > best_v {
            best = idx;
            best_v = v;
            if v.is_nan() {
                break;
            }
        }
    }
    best
}

/// `argmax` over the r guide channels of the (f32) guide at each position: B x H' x W'.
pub(crate) fn region_argmax(c: &DrConvConfig, s: &ForwardShape, guide: &Tensor) -> Vec<i32> {
    let (r, hw) = (c.region_num, s.out_height * s.out_width);
    let mut out = vec![0i32; s.batch * hw];
    for b in 0..s.batch {
        for p in 0..hw {
            let g = argmax_first((0..r).map(|g| guide.data[(b * r + g) * hw + p]));
            out[b * hw + p] = g as i32;
        }
    }
    out
}

/// `out[b,o,y,x] = corr[b, region[b,y,x], o, y, x]`.
pub(crate) fn select_region(
    c: &DrConvConfig,
    s: &ForwardShape,
    corr: &Tensor,
    region: &[i32],
) -> Tensor {
    let (r, o_n, hw) = (c.region_num, c.out_channels, s.out_height * s.out_width);
    let mut out = Tensor::zeros(&s.output(c));
    for b in 0..s.batch {
        for o in 0..o_n {
            for p in 0..hw {
                let g = region[b * hw + p] as usize;
                out.data[(b * o_n + o) * hw + p] = corr.data[((b * r + g) * o_n + o) * hw + p];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::argmax_first;

    #[test]
    fn argmax_ties_and_nan() {
        assert_eq!(argmax_first([1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax_first([0.0, 0.0, 0.0]), 0);
        assert_eq!(argmax_first([1.0, f32::NAN, 5.0, f32::NAN]), 1);
        assert_eq!(argmax_first([f32::NAN, 5.0]), 0);
        assert_eq!(argmax_first([f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
        assert_eq!(argmax_first([-1.0, -0.5]), 1);
    }
}
