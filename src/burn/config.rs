//! `DrConv2dConfig` and its `init`, as burn keeps a module's config: `#[derive(Config)]`
//! (`new(..)`, `with_*`), `init(&device)`. The module's constructors and its way back to a config
//! live here too, so that `module.rs` does not import this file (no import cycle).

use burn::config::Config;
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

use super::module::DrConv2d;
use super::runtime::Runtime;
use crate::config::DrConvConfig;
use crate::error::Result;
use crate::params::{DrConvParams, ParamId};

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
    pub fn layer_config(&self) -> Result<DrConvConfig> {
        DrConvConfig::new(
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

/// The burn configuration of a layer, with the default initializer.
impl From<DrConvConfig> for DrConv2dConfig {
    fn from(c: DrConvConfig) -> Self {
        DrConv2dConfig::new(c.in_channels, c.out_channels, c.kernel_size, c.region_num)
            .with_stride(c.stride)
            .with_padding(c.padding)
            .with_dilation(c.dilation)
    }
}

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
        let p = config.padding;
        let guide = conv(
            Conv2dConfig::new([i, r], [k, k])
                .with_stride([config.stride; 2])
                .with_dilation([config.dilation; 2])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p)),
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

impl DrConv2d {
    /// The layer's configuration (with the default initializer).
    pub fn config(&self) -> DrConv2dConfig {
        self.layer_config().into()
    }

    /// A module on `device` holding `params` (e.g. read from a drconv safetensors file), in f32.
    pub fn from_params(params: &DrConvParams, device: &Device) -> Result<Self> {
        let mut m = DrConv2dConfig::from(params.config).try_init(device)?;
        let tensor = |id: ParamId| TensorData::new(params.get(id).to_vec(), params.shape(id));
        let set = |conv: &mut Conv2d, w: ParamId, b: ParamId| {
            conv.weight = Param::from_tensor(Tensor::from_data(tensor(w), device));
            conv.bias = Some(Param::from_tensor(Tensor::from_data(tensor(b), device)));
        };
        let [w1, b1, w3, b3, gw, gb] = ParamId::ALL;
        set(m.conv_kernel[1].as_mut().expect("made by init"), w1, b1);
        set(m.conv_kernel[3].as_mut().expect("made by init"), w3, b3);
        set(&mut m.conv_guide, gw, gb);
        Ok(m)
    }
}
