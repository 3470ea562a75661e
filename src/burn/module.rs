//! `DrConv2d`, the burn module: the reference `DRConv2d`'s parameters under its `state_dict`
//! names, and a forward that picks our kernels or burn's ops by device.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::{DType, Dispatch};
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::DrConv2dConfig;
use super::ops::{DrConvOps, KernelCall};
use super::reference::{self, Weights};
use super::runtime::{context, Runtime};
use crate::config::{DrConvConfig, Mode};
use crate::error::{DrConvError, Result};
use crate::params::{DrConvParams, ParamId};

/// Dynamic Region-Aware Convolution as a burn module: the PyTorch reference's `DRConv2d`, with
/// its parameters under the same names (`conv_kernel.1.weight`, `conv_kernel.1.bias`,
/// `conv_kernel.3.weight`, `conv_kernel.3.bias`, `conv_guide.weight`, `conv_guide.bias`), so a
/// PyTorch `state_dict` loads into it. Made by [`DrConv2dConfig::init`]; see the
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

/// Which implementation a device runs (see the [module docs](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// drconv's WGSL kernels on burn's wgpu device and queue.
    Kernels,
    /// The reference algorithm composed from burn's tensor ops.
    BurnOps,
}

static WARNED: AtomicBool = AtomicBool::new(false);

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

    /// The layer's configuration (with the default initializer).
    pub fn config(&self) -> DrConv2dConfig {
        let c = self.runtime.config();
        DrConv2dConfig::new(c.in_channels, c.out_channels, c.kernel_size, c.region_num)
            .with_stride(c.stride)
            .with_padding(c.padding)
            .with_dilation(c.dilation)
    }

    /// The crate's configuration of this layer.
    pub fn layer_config(&self) -> DrConvConfig {
        *self.runtime.config()
    }

    /// Which implementation a forward on `device` runs.
    pub fn path(&self, device: &Device) -> Path {
        if cfg!(not(target_family = "wasm")) && context(device).is_some() {
            Path::Kernels
        } else {
            Path::BurnOps
        }
    }

    /// The output, B x O x H' x W', of `x` (B x I x H x W).
    ///
    /// # Panics
    /// On an input the layer cannot take (wrong rank of channels, too small for the kernel, too
    /// large for the device) or parameters of the wrong shape: [`DrConv2d::try_forward`]
    /// returns those as errors.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.try_forward(x)
            .unwrap_or_else(|e| panic!("drconv::burn::DrConv2d::forward: {e}"))
    }

    /// [`DrConv2d::forward`], with every error it can see before burn runs the call.
    pub fn try_forward(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        let config = self.runtime.config();
        config.forward_shape(&x.dims())?;
        let w = self.weights()?;
        let device = x.device();
        let f32s = std::iter::once(x.dtype())
            .chain([
                w.w1.dtype(),
                w.b1.dtype(),
                w.w3.dtype(),
                w.b3.dtype(),
                w.gw.dtype(),
                w.gb.dtype(),
            ])
            .all(|d| d == DType::F32);
        match self.path(&device) {
            Path::Kernels if f32s => self.forward_kernels(x, w),
            _ => {
                self.note_burn_ops(&device);
                Ok(reference::forward(config, x, &w))
            }
        }
    }

    /// The forward composed from burn's ops, on any device (what non-wgpu devices run).
    pub fn forward_burn_ops(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        self.runtime.config().forward_shape(&x.dims())?;
        Ok(reference::forward(
            self.runtime.config(),
            x,
            &self.weights()?,
        ))
    }

    /// The region of every output pixel, B x H' x W' (the first maximal guide logit), from the
    /// guide conv in burn's ops.
    pub fn regions(&self, x: Tensor<4>) -> Result<Tensor<3, Int>> {
        let config = self.runtime.config();
        config.forward_shape(&x.dims())?;
        let guide = reference::guide(config, &x, &self.weights()?);
        Ok(reference::region_map(guide.detach()))
    }

    fn forward_kernels(&self, x: Tensor<4>, w: Weights) -> Result<Tensor<4>> {
        let ctx = context(&x.device()).expect("the path said kernels");
        let tracked = x.is_require_grad()
            || [&w.w1, &w.w3, &w.gw].iter().any(|t| t.is_require_grad())
            || [&w.b1, &w.b3, &w.gb].iter().any(|t| t.is_require_grad());
        let mode = if tracked {
            Mode::Training
        } else {
            Mode::Inference
        };
        // Build the plan now: its errors (the device's limits) come back here, not from inside
        // burn's executor.
        let shape = x.dims();
        self.runtime.with_slot(&ctx, |slot| {
            pollster::block_on(slot.layer.prepare(&shape, mode))
        })?;
        let call = KernelCall {
            runtime: self.runtime.clone(),
            mode,
            ticket: 0,
        };
        let y = <Dispatch as DrConvOps>::drconv_forward(
            x.into_dispatch(),
            w.w1.into_dispatch(),
            w.b1.into_dispatch(),
            w.w3.into_dispatch(),
            w.b3.into_dispatch(),
            w.gw.into_dispatch(),
            w.gb.into_dispatch(),
            call,
        );
        Ok(Tensor::from_dispatch(y))
    }

    /// A wgpu device that was not registered runs burn's ops: say so once.
    fn note_burn_ops(&self, device: &Device) {
        if format!("{device:?}").contains("Wgpu") && !WARNED.swap(true, Ordering::Relaxed) {
            log::warn!(
                "drconv::burn: {device:?} is a wgpu device not registered with drconv, so \
                 DrConv2d runs burn's ops there (many times slower); create it with \
                 drconv::burn::init_wgpu to run drconv's kernels"
            );
        }
    }

    /// The six parameters (state_dict order), checked against the configuration.
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
        let shapes = [
            w.w1.dims().to_vec(),
            w.b1.dims().to_vec(),
            w.w3.dims().to_vec(),
            w.b3.dims().to_vec(),
            w.gw.dims().to_vec(),
            w.gb.dims().to_vec(),
        ];
        let want = ParamId::ALL.map(|id| self.runtime.config().param_shape(id));
        for (id, (got, want)) in ParamId::ALL.iter().zip(shapes.iter().zip(&want)) {
            if got != want {
                return Err(DrConvError::Weights(format!(
                    "{} has shape {got:?} but the layer {:?} needs {want:?}",
                    id.name(),
                    self.runtime.config()
                )));
            }
        }
        Ok(w)
    }

    /// The parameters as the crate's host values (reads them back from the device).
    pub fn to_params(&self) -> Result<DrConvParams> {
        let w = self.weights()?;
        let read = |t: TensorData| {
            t.convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| DrConvError::Weights(format!("{e:?}")))
        };
        let values = [
            read(w.w1.into_data())?,
            read(w.b1.into_data())?,
            read(w.w3.into_data())?,
            read(w.b3.into_data())?,
            read(w.gw.into_data())?,
            read(w.gb.into_data())?,
        ];
        DrConvParams::from_values(*self.runtime.config(), values)
    }

    /// A module on `device` holding `params` (e.g. read from a drconv safetensors file).
    pub fn from_params(params: &DrConvParams, device: &Device) -> Result<Self> {
        let c = params.config;
        let mut m = DrConv2dConfig::new(c.in_channels, c.out_channels, c.kernel_size, c.region_num)
            .with_stride(c.stride)
            .with_padding(c.padding)
            .with_dilation(c.dilation)
            .try_init(device)?;
        let t4 = |id: ParamId| {
            let shape = params.shape(id);
            Param::from_tensor(Tensor::<4>::from_data(
                TensorData::new(params.get(id).to_vec(), shape),
                device,
            ))
        };
        let t1 = |id: ParamId| {
            Param::from_tensor(Tensor::<1>::from_data(
                TensorData::new(params.get(id).to_vec(), params.shape(id)),
                device,
            ))
        };
        let set = |conv: &mut Conv2d, w: ParamId, b: ParamId| {
            conv.weight = t4(w);
            conv.bias = Some(t1(b));
        };
        let [w1, b1, w3, b3, gw, gb] = ParamId::ALL;
        set(m.conv_kernel[1].as_mut().expect("made by init"), w1, b1);
        set(m.conv_kernel[3].as_mut().expect("made by init"), w3, b3);
        set(&mut m.conv_guide, gw, gb);
        Ok(m)
    }
}
