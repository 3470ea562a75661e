//! Backward of DRConv2d with the seed's semantics (`asign_index.backward`):
//! the correlation gets the upstream gradient masked to the selected region, the guide gets the
//! softmax straight-through `S * (G - sum_g S*G)` with `G = sum_o gy * corr`, and everything else
//! is ordinary autograd. Each stage reads the f32 gradient of the stage after it and accumulates
//! in f64, like the forward.

use crate::config::{adaptive_bin, DrConvConfig, ForwardShape};
use crate::cpu::forward::{check_inputs, correlation, input_pos};
use crate::error::{DrConvError, Result};
use crate::params::{DrConvParams, ParamId};
use crate::tensor::{numel, Tensor};
use crate::trace::{ForwardTrace, Gradients};

/// Gradients of every parameter, of `x` and of every intermediate, given the forward `trace` of
/// `params` on `x` and the upstream gradient `grad_output` (B x O x H' x W').
/// A trace without `corr` (fused inference path) is accepted: the correlation is recomputed.
pub fn backward(
    params: &DrConvParams,
    x: &Tensor,
    trace: &ForwardTrace,
    grad_output: &Tensor,
) -> Result<Gradients> {
    let c = &params.config;
    let s = check_trace(params, x, trace, grad_output)?;
    let recomputed;
    let corr = match &trace.corr {
        Some(t) => {
            expect("trace.corr", t, &s.corr(c))?;
            t
        }
        None => {
            recomputed = correlation(c, &s, x, &trace.kernel);
            &recomputed
        }
    };
    let z = Sizes::new(c, &s);
    let gy = &grad_output.data;
    let (dcorr, dguide) = select_backward(z, c, &s, trace, corr, gy);
    let (d_wg, d_bg, d_k, mut d_x) = conv_backward(z, params, x, trace, &dguide, &dcorr);
    let dkernel = Tensor {
        shape: s.kernel(c).to_vec(),
        data: d_k.iter().map(|&v| v as f32).collect(),
    };
    let (d_w3, d_b3, dsig) = kernel_gen_backward(z, params, &s, trace, &dkernel);
    // --- sigmoid backward ---
    let dlogits = Tensor {
        shape: dsig.shape.clone(),
        data: dsig
            .data
            .iter()
            .zip(&trace.sigmoid.data)
            .map(|(&d, &sg)| (d as f64 * sg as f64 * (1.0 - sg as f64)) as f32)
            .collect(),
    };
    let (d_w1, d_b1, dpooled) = logits_backward(z, params, &s, trace, &dlogits);
    pool_backward(z, &dpooled, &mut d_x);

    let to_f32 = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|a| a as f32).collect() };
    let mut grads: [Vec<f32>; 6] = Default::default();
    grads[ParamId::KernelW1.index()] = to_f32(d_w1);
    grads[ParamId::KernelB1.index()] = to_f32(d_b1);
    grads[ParamId::KernelW3.index()] = to_f32(d_w3);
    grads[ParamId::KernelB3.index()] = to_f32(d_b3);
    grads[ParamId::GuideW.index()] = to_f32(d_wg);
    grads[ParamId::GuideB.index()] = to_f32(d_bg);
    Ok(Gradients {
        x: Tensor {
            shape: s.input(c).to_vec(),
            data: to_f32(d_x),
        },
        params: grads,
        pooled: dpooled,
        kernel_logits: dlogits,
        sigmoid: dsig,
        kernel: dkernel,
        corr: Some(dcorr),
        guide: dguide,
    })
}

/// The loop bounds every stage uses.
#[derive(Clone, Copy)]
struct Sizes {
    bn: usize,
    r: usize,
    i_n: usize,
    o_n: usize,
    k: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    hw: usize,
    kk: usize,
    io: usize,
    rr: usize,
}

impl Sizes {
    fn new(c: &DrConvConfig, s: &ForwardShape) -> Self {
        let (r, i_n, o_n, k) = (c.region_num, c.in_channels, c.out_channels, c.kernel_size);
        Sizes {
            bn: s.batch,
            r,
            i_n,
            o_n,
            k,
            h: s.height,
            w: s.width,
            ho: s.out_height,
            wo: s.out_width,
            hw: s.out_height * s.out_width,
            kk: k * k,
            io: i_n * o_n,
            rr: r * r,
        }
    }
}

/// The trace and the upstream gradient checked against the layer's shapes for `x`.
fn check_trace(
    params: &DrConvParams,
    x: &Tensor,
    trace: &ForwardTrace,
    grad_output: &Tensor,
) -> Result<ForwardShape> {
    let c = &params.config;
    let s = check_inputs(params, x)?;
    if trace.shape != s {
        return Err(DrConvError::Shape(format!(
            "the forward trace was made for shape {:?} but x gives {s:?}",
            trace.shape
        )));
    }
    expect("grad_output", grad_output, &s.output(c))?;
    expect("trace.pooled", &trace.pooled, &s.pooled(c))?;
    expect("trace.sigmoid", &trace.sigmoid, &s.logits(c))?;
    expect("trace.kernel", &trace.kernel, &s.kernel(c))?;
    expect("trace.guide", &trace.guide, &s.guide(c))?;
    if trace.region_index.len() != numel(&s.region()) {
        return Err(DrConvError::Shape(format!(
            "trace.region_index has {} values but the layer needs {:?}",
            trace.region_index.len(),
            s.region()
        )));
    }
    if let Some(bad) = trace
        .region_index
        .iter()
        .find(|&&g| g < 0 || g as usize >= c.region_num)
    {
        return Err(DrConvError::Shape(format!(
            "trace.region_index holds region {bad}, outside 0..{}",
            c.region_num
        )));
    }
    Ok(s)
}

/// The tensor must have `shape`.
fn expect(what: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if t.shape != shape || t.data.len() != numel(shape) {
        return Err(DrConvError::Shape(format!(
            "{what} has shape {:?} ({} values) but the layer needs {shape:?}",
            t.shape,
            t.data.len()
        )));
    }
    Ok(())
}

/// asign_index.backward: dcorr (gy masked to the selected region) and dguide (the softmax
/// straight-through gradient).
fn select_backward(
    z: Sizes,
    c: &DrConvConfig,
    s: &ForwardShape,
    trace: &ForwardTrace,
    corr: &Tensor,
    gy: &[f32],
) -> (Tensor, Tensor) {
    let Sizes { bn, r, o_n, hw, .. } = z;
    let region = &trace.region_index;
    // --- asign_index.backward ---
    // dcorr = gy masked to the selected region.
    let mut dcorr = Tensor::zeros(&s.corr(c));
    for b in 0..bn {
        for o in 0..o_n {
            for p in 0..hw {
                let g = region[b * hw + p] as usize;
                dcorr.data[((b * r + g) * o_n + o) * hw + p] = gy[(b * o_n + o) * hw + p];
            }
        }
    }
    // dguide = S * (G - sum_g S*G), S = softmax_g(guide), G = sum_o gy * corr.
    let mut dguide = Tensor::zeros(&s.guide(c));
    for b in 0..bn {
        for p in 0..hw {
            let gv: Vec<f64> = (0..r)
                .map(|g| trace.guide.data[(b * r + g) * hw + p] as f64)
                .collect();
            let m = gv.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = gv.iter().map(|v| (v - m).exp()).collect();
            let z: f64 = e.iter().sum();
            let big_g: Vec<f64> = (0..r)
                .map(|g| {
                    (0..o_n)
                        .map(|o| {
                            gy[(b * o_n + o) * hw + p] as f64
                                * corr.data[((b * r + g) * o_n + o) * hw + p] as f64
                        })
                        .sum()
                })
                .collect();
            let sm: Vec<f64> = e.iter().map(|ev| ev / z).collect();
            let sg: f64 = (0..r).map(|g| sm[g] * big_g[g]).sum();
            for g in 0..r {
                dguide.data[(b * r + g) * hw + p] = (sm[g] * (big_g[g] - sg)) as f32;
            }
        }
    }
    (dcorr, dguide)
}

/// The guide conv's and the correlation's backward: the guide weight and bias, the kernel, and
/// x's first two paths.
fn conv_backward(
    z: Sizes,
    params: &DrConvParams,
    x: &Tensor,
    trace: &ForwardTrace,
    dguide: &Tensor,
    dcorr: &Tensor,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let c = &params.config;
    let Sizes {
        bn,
        r,
        i_n,
        o_n,
        k,
        h,
        w,
        ho,
        wo,
        hw,
        kk,
        io,
        ..
    } = z;
    // --- guide conv and correlation backward: weights, kernel, and x (two of its three paths) ---
    let wg = params.get(ParamId::GuideW);
    let mut d_wg = vec![0.0f64; r * i_n * kk];
    let mut d_bg = vec![0.0f64; r];
    let mut d_k = vec![0.0f64; bn * r * io * kk];
    let mut d_x = vec![0.0f64; bn * i_n * h * w];
    for b in 0..bn {
        for y in 0..ho {
            for xo in 0..wo {
                let p = y * wo + xo;
                for (g, dbg) in d_bg.iter_mut().enumerate() {
                    *dbg += dguide.data[(b * r + g) * hw + p] as f64;
                }
                for i in 0..i_n {
                    for u in 0..k {
                        let Some(iy) = input_pos(c, y, u, h) else {
                            continue;
                        };
                        for v in 0..k {
                            let Some(ix) = input_pos(c, xo, v, w) else {
                                continue;
                            };
                            let xi = ((b * i_n + i) * h + iy) * w + ix;
                            let xv = x.data[xi] as f64;
                            let t = u * k + v;
                            let mut dxi = 0.0f64;
                            for g in 0..r {
                                let dgd = dguide.data[(b * r + g) * hw + p] as f64;
                                d_wg[(g * i_n + i) * kk + t] += dgd * xv;
                                dxi += wg[(g * i_n + i) * kk + t] as f64 * dgd;
                                for o in 0..o_n {
                                    let dc = dcorr.data[((b * r + g) * o_n + o) * hw + p] as f64;
                                    let ki = ((b * r + g) * io + o * i_n + i) * kk + t;
                                    d_k[ki] += dc * xv;
                                    dxi += trace.kernel.data[ki] as f64 * dc;
                                }
                            }
                            d_x[xi] += dxi;
                        }
                    }
                }
            }
        }
    }
    (d_wg, d_bg, d_k, d_x)
}

/// conv_kernel.3 (grouped 1x1): its weight and bias, and the sigmoid map's gradient.
fn kernel_gen_backward(
    z: Sizes,
    params: &DrConvParams,
    s: &ForwardShape,
    trace: &ForwardTrace,
    dkernel: &Tensor,
) -> (Vec<f64>, Vec<f64>, Tensor) {
    let c = &params.config;
    let Sizes {
        bn, r, kk, io, rr, ..
    } = z;
    // --- conv_kernel.3 (grouped 1x1) backward ---
    let w3 = params.get(ParamId::KernelW3);
    let mut d_w3 = vec![0.0f64; r * io * r];
    let mut d_b3 = vec![0.0f64; r * io];
    let mut dsig = Tensor::zeros(&s.logits(c));
    for b in 0..bn {
        for g in 0..r {
            for ch in 0..io {
                let oc = g * io + ch;
                for t in 0..kk {
                    let dk = dkernel.data[(b * r * io + oc) * kk + t] as f64;
                    d_b3[oc] += dk;
                    for j in 0..r {
                        d_w3[oc * r + j] +=
                            dk * trace.sigmoid.data[(b * rr + g * r + j) * kk + t] as f64;
                    }
                }
            }
            for j in 0..r {
                for t in 0..kk {
                    let mut acc = 0.0f64;
                    for ch in 0..io {
                        let oc = g * io + ch;
                        acc +=
                            w3[oc * r + j] as f64 * dkernel.data[(b * r * io + oc) * kk + t] as f64;
                    }
                    dsig.data[(b * rr + g * r + j) * kk + t] = acc as f32;
                }
            }
        }
    }
    (d_w3, d_b3, dsig)
}

/// conv_kernel.1 (1x1): its weight and bias, and the pooled map's gradient.
fn logits_backward(
    z: Sizes,
    params: &DrConvParams,
    s: &ForwardShape,
    trace: &ForwardTrace,
    dlogits: &Tensor,
) -> (Vec<f64>, Vec<f64>, Tensor) {
    let c = &params.config;
    let Sizes {
        bn, i_n, kk, rr, ..
    } = z;
    // --- conv_kernel.1 (1x1) backward ---
    let w1 = params.get(ParamId::KernelW1);
    let mut d_w1 = vec![0.0f64; rr * i_n];
    let mut d_b1 = vec![0.0f64; rr];
    let mut dpooled = Tensor::zeros(&s.pooled(c));
    for b in 0..bn {
        for m in 0..rr {
            for t in 0..kk {
                let dl = dlogits.data[(b * rr + m) * kk + t] as f64;
                d_b1[m] += dl;
                for i in 0..i_n {
                    d_w1[m * i_n + i] += dl * trace.pooled.data[(b * i_n + i) * kk + t] as f64;
                }
            }
        }
        for i in 0..i_n {
            for t in 0..kk {
                let mut acc = 0.0f64;
                for m in 0..rr {
                    acc += w1[m * i_n + i] as f64 * dlogits.data[(b * rr + m) * kk + t] as f64;
                }
                dpooled.data[(b * i_n + i) * kk + t] = acc as f32;
            }
        }
    }
    (d_w1, d_b1, dpooled)
}

/// The adaptive average pool: each bin spreads dpooled/area over its (overlapping) window,
/// x's third path.
fn pool_backward(z: Sizes, dpooled: &Tensor, d_x: &mut [f64]) {
    let Sizes {
        bn, i_n, k, h, w, ..
    } = z;
    // --- adaptive avg pool backward: each bin spreads dpooled/area over its (overlapping) window ---
    for b in 0..bn {
        for i in 0..i_n {
            for u in 0..k {
                let (h0, h1) = adaptive_bin(u, h, k);
                for v in 0..k {
                    let (w0, w1) = adaptive_bin(v, w, k);
                    let area = ((h1 - h0) * (w1 - w0)) as f64;
                    let share = dpooled.data[((b * i_n + i) * k + u) * k + v] as f64 / area;
                    for yy in h0..h1 {
                        for xx in w0..w1 {
                            d_x[((b * i_n + i) * h + yy) * w + xx] += share;
                        }
                    }
                }
            }
        }
    }
}
