//! `DrConv2dConfig::init`: a fresh `DrConv2d` with PyTorch's default initialisation. Apart from
//! `config.rs` so that the configuration does not depend on the module it builds.

use burn::nn::conv::Conv2dConfig;
use burn::nn::PaddingConfig2d;
use burn::tensor::Device;

use super::config::DrConv2dConfig;
use super::module::DrConv2d;
use super::runtime::Runtime;
use crate::error::Result;

impl DrConv2dConfig {
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
