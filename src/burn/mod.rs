//! DRConv2d as a [burn](https://burn.dev) module (feature `burn`): put [`DrConv2d`] in a burn
//! model, load a PyTorch `state_dict` into it, train it with burn's autodiff and optimizers.
//! [`DrConv2dFn`] is the same layer without parameters, its [`Weights`] passed to each call (what
//! a model generated from ONNX holds).
//!
//! # Which path runs where
//! - **A wgpu device registered with drconv** ([`init_wgpu`], [`init_wgpu_async`] or
//!   [`register_setup`]; plain or `.autodiff()`): drconv's own WGSL kernels run on burn's device
//!   and queue, reading and writing burn's tensor buffers in place (no host round trip). Pending
//!   burn work is flushed before our submission, and burn's buffers are held until that
//!   submission has run. A forward without tracked gradients takes the fused inference path
//!   (each pixel's region only); with tracked gradients it takes the training path and its
//!   backward is registered in burn's autodiff, so gradients reach the parameters and `x` and
//!   flow on through the rest of the model.
//! - **Every other device** (flex, ndarray, cubecl's CPU runtime, a wgpu device not
//!   registered), **and every float dtype but f32** (f16 included, on any device): the same
//!   module runs the reference algorithm composed from burn's tensor ops in the input's dtype
//!   (adaptive pooling, 1x1 convs, a grouped conv over the batch for the per-sample correlation,
//!   first-maximum argmax), differentiated by burn's autodiff, so a model stays portable.
//!   [`DrConv2d::path`] says which one a device gets. The input and the parameters must share
//!   one dtype ([`DrConv2d::try_forward`] returns an error otherwise).
//!
//! # Limits of this version
//! - In the browser (WebGPU) nothing of ours waits on the GPU inside burn's executor: plans are
//!   built and work is submitted with their error scopes left pending, so an error of our
//!   kernels there (the device's limits are checked up front, so this is rare: out of memory, a
//!   lost device) comes back from the next call, or from [`settle`] (`settle(&device).await`).
//!   Natively every call reports its own errors, as before.
//! - Parameters, input and output are copied between burn's buffers and the layer's plans on the
//!   GPU (a few copies per call, no readback).
//! - A failure of our kernels inside burn's executor (a device lost mid-call) panics there, as
//!   burn's own ops do; [`DrConv2d::try_forward`] reports every error it can see before that
//!   (shapes, mixed or non-float dtypes, limits) as a [`crate::DrConvError`].
//!
//! ```
//! use burn::backend::wgpu::WgpuDevice;
//! use burn::tensor::Tensor;
//! use drconv::burn::{init_wgpu, DrConv2dConfig, Path};
//!
//! # fn main() -> drconv::Result<()> {
//! // burn's wgpu device, shared with drconv: the layer runs drconv's kernels there.
//! let device = init_wgpu(&WgpuDevice::default())?;
//! let layer = DrConv2dConfig::new(4, 8, 3, 2).with_padding(1).try_init(&device)?;
//! assert_eq!(layer.path(&device), Path::Kernels);
//! let x = Tensor::<4>::ones([1, 4, 16, 16], &device);
//! assert_eq!(layer.try_forward(x.clone())?.dims(), [1, 8, 16, 16]);
//! // The same forward composed from burn's ops (what every other device runs).
//! assert_eq!(layer.forward_burn_ops(x)?.dims(), [1, 8, 16, 16]);
//! # Ok(())
//! # }
//! ```

mod autodiff;
mod config;
mod forward;
mod functional;
mod kernels;
mod module;
mod ops;
mod reference;
mod runtime;

pub use config::DrConv2dConfig;
pub use functional::DrConv2dFn;
pub use module::DrConv2d;
pub use ops::{DrConvOps, DrConvTensors, KernelCall};
pub use reference::Weights;
#[cfg(not(target_family = "wasm"))]
pub use runtime::init_wgpu;
pub use runtime::{context, init_wgpu_async, path, register_setup, set_path, settle, Path};

/// The regex that keeps `conv_kernel.1` and `conv_kernel.3` at their PyTorch indices when burn's
/// `PytorchStore` maps `nn.Sequential` indices: pass it to `map_indices_contiguous_except` (the
/// default remapping would move them to `conv_kernel.0` and `.1`).
pub const PYTORCH_KEEP_INDICES: &str = r"(^|\.)conv_kernel$";
