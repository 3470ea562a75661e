//! `DrConv2d`, the burn module: the reference `DRConv2d`'s parameters under its `state_dict`
//! names, and a forward that picks our kernels or burn's ops by device.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::forward;
use super::reference::{self, Weights};
use super::runtime::{self, Path, Runtime};
use crate::config::DrConvConfig;
use crate::error::{DrConvError, Result};
use crate::params::DrConvParams;

/// Dynamic Region-Aware Convolution as a burn module: the PyTorch reference's `DRConv2d`, with
/// its parameters under the same names (`conv_kernel.1.weight`, `conv_kernel.1.bias`,
/// `conv_kernel.3.weight`, `conv_kernel.3.bias`, `conv_guide.weight`, `conv_guide.bias`), so a
/// PyTorch `state_dict` loads into it. Made by
/// [`DrConv2dConfig::init`](super::DrConv2dConfig::init) or [`DrConv2d::from_params`]; see the
/// [module docs](super) for which path a device runs.
#[derive(Module, Debug)]
pub struct DrConv2d {
    /// The kernel generator, as the reference's `nn.Sequential`: `[1]` the 1x1 conv
    /// I -> r*r on the pooled input, `[3]` the grouped 1x1 conv r*r -> r*I*O (`[0]` is the
    /// pool, `[2]` the sigmoid: no parameters).
    pub conv_kernel: Vec<Option<Conv2d>>,
    /// The guide conv I -> r, k x k, with the layer's stride, padding and dilation.
    pub conv_guide: Conv2d,
    #[module(skip)]
    runtime: Runtime,
}

impl DrConv2d {
    pub(crate) fn assemble(
        conv_kernel: Vec<Option<Conv2d>>,
        guide: Conv2d,
        runtime: Runtime,
    ) -> Self {
        DrConv2d {
            conv_kernel,
            conv_guide: guide,
            runtime,
        }
    }

    /// The crate's configuration of this layer.
    pub fn layer_config(&self) -> DrConvConfig {
        *self.runtime.config()
    }

    /// Which implementation a forward of f32 tensors on `device` runs (every other float dtype
    /// runs [`Path::BurnOps`]: our kernels take f32).
    pub fn path(&self, device: &Device) -> Path {
        runtime::path(device)
    }

    /// The output, B x O x H' x W', of `x` (B x I x H x W), in x's dtype.
    ///
    /// # Panics
    /// On an input the layer cannot take (wrong rank of channels, too small for the kernel, too
    /// large for the device, a dtype other than the parameters') or parameters of the wrong
    /// shape: [`DrConv2d::try_forward`] returns those as errors.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.try_forward(x)
            .unwrap_or_else(|e| panic!("drconv::burn::DrConv2d::forward: {e}"))
    }

    /// [`DrConv2d::forward`], with every error it can see before burn runs the call.
    pub fn try_forward(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        forward::run(&self.runtime, x, self.weights()?)
    }

    /// The forward composed from burn's ops, on any device (what non-wgpu devices run).
    pub fn forward_burn_ops(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        let w = self.checked(&x)?;
        Ok(reference::forward(self.runtime.config(), x, &w))
    }

    /// The region of every output pixel, B x H' x W' (the first maximal guide logit), from the
    /// guide conv in burn's ops.
    pub fn regions(&self, x: Tensor<4>) -> Result<Tensor<3, Int>> {
        let w = self.checked(&x)?;
        let guide = reference::guide(self.runtime.config(), &x, &w);
        let [b, _, h, width] = guide.dims();
        Ok(reference::region_map(guide.detach()).reshape([b, h, width]))
    }

    /// The parameters, checked against `x` and the configuration (`forward::checked`).
    fn checked(&self, x: &Tensor<4>) -> Result<Weights> {
        let w = self.weights()?;
        forward::checked(self.runtime.config(), x, &w)?;
        Ok(w)
    }

    /// The parameters, their shapes checked against the configuration (no input to check).
    fn checked_params(&self) -> Result<Weights> {
        let w = self.weights()?;
        forward::check_shapes(self.runtime.config(), &w)?;
        Ok(w)
    }

    /// The six parameters (state_dict order), present; their shapes are checked by the caller.
    fn weights(&self) -> Result<Weights> {
        let conv = |i: usize| {
            self.conv_kernel
                .get(i)
                .and_then(Option::as_ref)
                .ok_or_else(|| {
                    DrConvError::Weights(format!(
                        "conv_kernel.{i} is missing (the module was not made by DrConv2dConfig)"
                    ))
                })
        };
        let bias = |c: &Conv2d, name: &str| {
            c.bias.as_ref().map(Param::val).ok_or_else(|| {
                DrConvError::Weights(format!(
                    "{name}.bias is missing (the reference's convs have biases)"
                ))
            })
        };
        let (k1, k3, g) = (conv(1)?, conv(3)?, &self.conv_guide);
        let w = Weights {
            w1: k1.weight.val(),
            b1: bias(k1, "conv_kernel.1")?,
            w3: k3.weight.val(),
            b3: bias(k3, "conv_kernel.3")?,
            gw: g.weight.val(),
            gb: bias(g, "conv_guide")?,
        };
        Ok(w)
    }

    /// The parameters as the crate's host values, in f32 (reads them back from the device).
    pub fn to_params(&self) -> Result<DrConvParams> {
        let w = self.checked_params()?;
        let values = [
            read_f32(w.w1.into_data())?,
            read_f32(w.b1.into_data())?,
            read_f32(w.w3.into_data())?,
            read_f32(w.b3.into_data())?,
            read_f32(w.gw.into_data())?,
            read_f32(w.gb.into_data())?,
        ];
        DrConvParams::from_values(*self.runtime.config(), values)
    }

    /// [`DrConv2d::to_params`] without blocking: what the browser needs, where burn reads a
    /// WebGPU buffer only asynchronously (`into_data` panics there).
    pub async fn to_params_async(&self) -> Result<DrConvParams> {
        let w = self.checked_params()?;
        let values = [
            read_f32_async(w.w1).await?,
            read_f32_async(w.b1).await?,
            read_f32_async(w.w3).await?,
            read_f32_async(w.b3).await?,
            read_f32_async(w.gw).await?,
            read_f32_async(w.gb).await?,
        ];
        DrConvParams::from_values(*self.runtime.config(), values)
    }
}

/// A parameter's values as f32 (whatever its dtype).
fn read_f32(t: TensorData) -> Result<Vec<f32>> {
    t.convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| DrConvError::Weights(format!("{e:?}")))
}

/// [`read_f32`] of a tensor read without blocking.
async fn read_f32_async<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| DrConvError::Weights(format!("reading a parameter back: {e:?}")))?;
    read_f32(data)
}
