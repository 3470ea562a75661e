//! `DrConv2dFn`: the layer with its weights passed to each call, for models whose weights live
//! elsewhere (a model generated from ONNX holds them as the graph's constants).

use burn::module::Module;
use burn::tensor::Tensor;

use super::config::DrConv2dConfig;
use super::forward;
use super::reference::Weights;
use super::runtime::Runtime;
use crate::config::DrConvConfig;
use crate::error::Result;

/// DRConv2d whose six weights come with each call instead of living in the module: the layer's
/// configuration and its plans, no parameters. What `drconv::onnx::DrConv2dOp` (feature `onnx`)
/// generates, so a model from ONNX stores each weight once (as the graph's constant). Runs where
/// [`super::DrConv2d`] runs, on the same paths: our kernels on a device registered with drconv,
/// burn's ops elsewhere.
#[derive(Module, Debug)]
pub struct DrConv2dFn {
    #[module(skip)]
    runtime: Runtime,
}

impl DrConv2dFn {
    /// The layer of `config`.
    pub fn new(config: DrConvConfig) -> Result<Self> {
        config.validate()?;
        Ok(DrConv2dFn {
            runtime: Runtime::new(config),
        })
    }

    /// The crate's configuration of this layer.
    pub fn layer_config(&self) -> DrConvConfig {
        *self.runtime.config()
    }

    /// The output, B x O x H' x W', of `x` (B x I x H x W) with weights `w`, in x's dtype.
    ///
    /// # Panics
    /// Where [`super::DrConv2d::forward`] does: [`DrConv2dFn::try_forward`] returns those as
    /// errors.
    pub fn forward(&self, x: Tensor<4>, w: Weights) -> Tensor<4> {
        self.try_forward(x, w)
            .unwrap_or_else(|e| panic!("drconv::burn::DrConv2dFn::forward: {e}"))
    }

    /// [`DrConv2dFn::forward`], with every error it can see before burn runs the call (shapes
    /// of `x` and of every weight, dtypes, the device's limits).
    pub fn try_forward(&self, x: Tensor<4>, w: Weights) -> Result<Tensor<4>> {
        forward::run(&self.runtime, x, w)
    }
}

impl DrConv2dConfig {
    /// The layer without parameters ([`DrConv2dFn`]), or the configuration's error.
    pub fn try_init_fn(&self) -> Result<DrConv2dFn> {
        DrConv2dFn::new(self.layer_config()?)
    }

    /// The layer without parameters ([`DrConv2dFn`]).
    ///
    /// # Panics
    /// On an invalid configuration: [`DrConv2dConfig::try_init_fn`] returns it as an error.
    pub fn init_fn(&self) -> DrConv2dFn {
        self.try_init_fn()
            .unwrap_or_else(|e| panic!("DrConv2dConfig::init_fn: {e}"))
    }
}
