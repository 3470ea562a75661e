//! The reference algorithm composed from burn's tensor ops (the path of every device without our
//! kernels, and of every dtype but f32): every region's correlation, then each pixel's region's,
//! all in the input's dtype. Gradients come from burn's autodiff; the guide's is the reference's
//! (a softmax Jacobian through the selected correlation), carried by a term of value zero.

use burn::tensor::module::{adaptive_avg_pool2d, conv2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{activation, DType, FloatDType, Int, Tensor};

use crate::config::DrConvConfig;
use crate::params::ParamId;

/// A layer's six weights as burn tensors, in `state_dict` order (shapes for in channels I, out
/// channels O, kernel size k, regions r): what [`super::DrConv2dFn`] takes with each call.
#[derive(Debug, Clone)]
pub struct Weights {
    /// `conv_kernel.1.weight`, r*r x I x 1 x 1.
    pub w1: Tensor<4>,
    /// `conv_kernel.1.bias`, r*r.
    pub b1: Tensor<1>,
    /// `conv_kernel.3.weight`, r*I*O x r x 1 x 1.
    pub w3: Tensor<4>,
    /// `conv_kernel.3.bias`, r*I*O.
    pub b3: Tensor<1>,
    /// `conv_guide.weight`, r x I x k x k.
    pub gw: Tensor<4>,
    /// `conv_guide.bias`, r.
    pub gb: Tensor<1>,
}

/// What the module checks of a parameter before a call.
pub(crate) struct ParamInfo {
    pub id: ParamId,
    pub dtype: DType,
    pub dims: Vec<usize>,
    /// Whether autodiff tracks it (a training forward).
    pub tracked: bool,
}

impl Weights {
    /// Each parameter's [`ParamInfo`], in state_dict order.
    pub(crate) fn infos(&self) -> [ParamInfo; 6] {
        fn info<const D: usize>(id: ParamId, t: &Tensor<D>) -> ParamInfo {
            ParamInfo {
                id,
                dtype: t.dtype(),
                dims: t.dims().to_vec(),
                tracked: t.is_tracked(),
            }
        }
        let [w1, b1, w3, b3, gw, gb] = ParamId::ALL;
        [
            info(w1, &self.w1),
            info(b1, &self.b1),
            info(w3, &self.w3),
            info(b3, &self.b3),
            info(gw, &self.gw),
            info(gb, &self.gb),
        ]
    }
}

/// Every region's generated kernel, as grouped-conv weights: (B*r*O) x I x k x k.
fn generated_kernels(c: &DrConvConfig, x: &Tensor<4>, p: &Weights) -> Tensor<4> {
    let (i, o, k, r) = (c.in_channels, c.out_channels, c.kernel_size, c.region_num);
    let b = x.dims()[0];
    let pooled = adaptive_avg_pool2d(x.clone(), [k, k]);
    let one = |groups| ConvOptions::new([1, 1], [0, 0], [1, 1], groups);
    let logits = conv2d(pooled, p.w1.clone(), Some(p.b1.clone()), one(1));
    let kernel = conv2d(
        activation::sigmoid(logits),
        p.w3.clone(),
        Some(p.b3.clone()),
        one(r),
    );
    // Channel g*I*O + o*I + i is region g, output o, input i.
    kernel.reshape([b * r * o, i, k, k])
}

/// corr[b, g, o, y, x]: x correlated with every region's kernel (a conv grouped by sample).
fn all_regions(c: &DrConvConfig, x: &Tensor<4>, kernels: Tensor<4>) -> Tensor<5> {
    let [b, i, h, w] = x.dims();
    let options = ConvOptions::new([c.stride; 2], [c.padding; 2], [c.dilation; 2], b);
    let corr = conv2d(x.clone().reshape([1, b * i, h, w]), kernels, None, options);
    let [_, _, ho, wo] = corr.dims();
    corr.reshape([b, c.region_num, c.out_channels, ho, wo])
}

/// The guide logits, B x r x H' x W'.
pub(crate) fn guide(c: &DrConvConfig, x: &Tensor<4>, p: &Weights) -> Tensor<4> {
    let options = ConvOptions::new([c.stride; 2], [c.padding; 2], [c.dilation; 2], 1);
    conv2d(x.clone(), p.gw.clone(), Some(p.gb.clone()), options)
}

/// The region of every output pixel, B x 1 x H' x W': the first maximal guide logit (burn's
/// `argmax` returns the lowest index of equal maxima, as the reference's does).
pub(crate) fn region_map(guide: Tensor<4>) -> Tensor<4, Int> {
    guide.argmax(1)
}

/// The forward: B x O x H' x W', in x's dtype.
pub(crate) fn forward(c: &DrConvConfig, x: Tensor<4>, p: &Weights) -> Tensor<4> {
    let corr = all_regions(c, &x, generated_kernels(c, &x, p));
    let guide = guide(c, &x, p);
    let [b, r, o, h, w] = corr.dims();
    let choices = Tensor::<1, Int>::arange(0..r as i64, &x.device()).reshape([1, r, 1, 1]);
    let mask = region_map(guide.clone())
        .equal(choices)
        .cast(FloatDType::from(corr.dtype()));
    // The one-hot mask picks each pixel's region (a product and a sum over r: on flex an order
    // of magnitude faster than `gather`, whose N-d path indexes element by element). With
    // gradients tracked, the mask carries softmax(guide) minus itself detached: exactly zero in
    // value (the output is the selected correlation bit for bit), it gives the guide the
    // reference's straight-through gradient, a softmax Jacobian of sum_o dy * corr.
    let select = if corr.is_tracked() || guide.is_tracked() {
        let soft = activation::softmax(guide, 1);
        mask + (soft.clone() - soft.detach())
    } else {
        mask
    };
    (corr * select.reshape([b, r, 1, h, w]))
        .sum_dim(1)
        .reshape([b, o, h, w])
}
