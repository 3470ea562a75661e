//! `DrConv2dConfig`: burn's `#[derive(Config)]` habits (`new(..)`, `with_*`); `init(&device)`
//! lives in `init.rs`, beside the module it builds.

use burn::config::Config;
use burn::nn::Initializer;

use crate::error::Result;

/// The configuration of a [`DrConv2d`](super::DrConv2d): the PyTorch reference's
/// `DRConv2d(in_channels, out_channels, kernel_size, region_num, stride=, padding=, dilation=)`.
#[derive(Config, Debug)]
pub struct DrConv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// The (square) kernel size of the guide conv and of the generated kernels.
    pub kernel_size: usize,
    /// Regions (generated kernels per sample).
    pub region_num: usize,
    /// Stride of the correlation and the guide conv.
    #[config(default = 1)]
    pub stride: usize,
    /// Zero padding on every side.
    #[config(default = 0)]
    pub padding: usize,
    /// Spacing between kernel taps.
    #[config(default = 1)]
    pub dilation: usize,
    /// How the parameters are initialised: by default PyTorch's (`kaiming_uniform(a=sqrt(5))`
    /// for the weights, uniform in +-1/sqrt(fan_in) for the biases).
    #[config(
        default = "Initializer::KaimingUniform{gain:0.577_350_269_189_625_8,fan_out_only:false}"
    )]
    pub initializer: Initializer,
}

impl DrConv2dConfig {
    /// The crate's configuration, validated (sizes, stride, dilation).
    pub fn layer_config(&self) -> Result<crate::DrConvConfig> {
        crate::DrConvConfig::new(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.region_num,
        )?
        .with_stride(self.stride)?
        .with_padding(self.padding)?
        .with_dilation(self.dilation)
    }
}
