//! `DrConv2dConfig`: burn's `#[derive(Config)]` habits (`new(..)`, `with_*`, `init(&device)`).

use burn::config::Config;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::Device;

use super::module::DrConv2d;
use super::runtime::Runtime;
use crate::error::Result;

/// The configuration of a [`DrConv2d`]: the PyTorch reference's
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

    /// A layer on `device` with freshly initialised parameters, or the configuration's error.
    pub fn try_init(&self, device: &Device) -> Result<DrConv2d> {
        let config = self.layer_config()?;
        let (i, o, k, r) = (
            config.in_channels,
            config.out_channels,
            config.kernel_size,
            config.region_num,
        );
        let conv = |c: Conv2dConfig| c.with_initializer(self.initializer.clone()).init(device);
        let pool_conv = conv(Conv2dConfig::new([i, r * r], [1, 1]));
        let gen_conv = conv(Conv2dConfig::new([r * r, r * i * o], [1, 1]).with_groups(r));
        let guide = conv(
            Conv2dConfig::new([i, r], [k, k])
                .with_stride([config.stride; 2])
                .with_dilation([config.dilation; 2])
                .with_padding(PaddingConfig2d::Explicit(
                    config.padding,
                    config.padding,
                    config.padding,
                    config.padding,
                )),
        );
        Ok(DrConv2d::assemble(
            vec![None, Some(pool_conv), None, Some(gen_conv)],
            guide,
            Runtime::new(config),
        ))
    }

    /// A layer on `device` with freshly initialised parameters.
    ///
    /// # Panics
    /// On an invalid configuration (a zero size, region_num < 1): [`DrConv2dConfig::try_init`]
    /// returns it as an error instead.
    pub fn init(&self, device: &Device) -> DrConv2d {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("DrConv2dConfig::init: {e}"))
    }
}
