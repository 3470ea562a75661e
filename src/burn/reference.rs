//! The reference algorithm composed from burn's tensor ops (the path of every device without our
//! kernels): every region's correlation, then each pixel's region picked by a one-hot mask.
//! Gradients come from burn's autodiff; the guide's gradient is the reference's (a softmax
//! Jacobian through the selected correlation), added with a term whose value is exactly zero.

use burn::tensor::module::{adaptive_avg_pool2d, conv2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{activation, Int, Tensor};

use crate::config::DrConvConfig;

/// The layer's six parameters as burn tensors (state_dict order).
pub(crate) struct Weights {
    pub w1: Tensor<4>,
    pub b1: Tensor<1>,
    pub w3: Tensor<4>,
    pub b3: Tensor<1>,
    pub gw: Tensor<4>,
    pub gb: Tensor<1>,
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

/// The region of every output pixel, B x H' x W': the first maximal guide logit (burn's
/// `argmax` does not promise which of equal values it returns).
pub(crate) fn region_map(guide: Tensor<4>) -> Tensor<3, Int> {
    let [b, r, h, w] = guide.dims();
    let max = guide.clone().max_dim(1);
    let is_max = guide.equal(max);
    let index = Tensor::<1, Int>::arange(0..r as i64, &is_max.device())
        .reshape([1, r, 1, 1])
        .expand([b, r, h, w]);
    let past_end = Tensor::<4, Int>::full([b, r, h, w], r as i64, &is_max.device());
    index
        .mask_where(is_max.bool_not(), past_end)
        .min_dim(1)
        .reshape([b, h, w])
}

/// The forward: B x O x H' x W'.
pub(crate) fn forward(c: &DrConvConfig, x: Tensor<4>, p: &Weights) -> Tensor<4> {
    let corr = all_regions(c, &x, generated_kernels(c, &x, p));
    let guide = guide(c, &x, p);
    let [b, r, o, h, w] = corr.dims();
    let region = region_map(guide.clone().detach());
    let choices = Tensor::<1, Int>::arange(0..r as i64, &x.device()).reshape([1, r, 1, 1]);
    let mask = region
        .reshape([b, 1, h, w])
        .equal(choices)
        .float()
        .reshape([b, r, 1, h, w]);
    let selected = (corr.clone() * mask).sum_dim(1);
    // The reference's guide gradient: softmax(guide) weighting the detached correlation, minus
    // itself detached (exactly zero in value, so the output is `selected` bit for bit), so only
    // its gradient enters.
    let soft = activation::softmax(guide, 1).reshape([b, r, 1, h, w]);
    let weighted = (corr.detach() * soft).sum_dim(1);
    (selected + (weighted.clone() - weighted.detach())).reshape([b, o, h, w])
}
