//! DRConv (Dynamic Region-Aware Convolution, Chen et al., CVPR 2021) as WGSL compute shaders on
//! wgpu: forward, backward and training on Vulkan, Metal, DX12, GL and WebGPU, plus a plain-Rust
//! CPU reference of the same maths.
//!
//! # The pieces
//! - [`GpuContext`]: a device, either made by drconv ([`GpuContext::new`]) or the application's
//!   own ([`GpuContext::from_wgpu`]), with its compiled pipelines.
//! - [`DrConv2d`]: one layer's parameters on that device, and its plans (one per input shape and
//!   mode): [`DrConv2d::forward`], [`DrConv2d::backward`], or the `encode_*` methods that record
//!   into the caller's `CommandEncoder`.
//! - [`GpuTensor`]: values on the device, in a buffer drconv made or in a view of the caller's
//!   ([`GpuTensor::from_buffer`]).
//! - [`Trainer`]: forward, MSE loss, backward and an optimizer step in one submission.
//! - [`weights`]: PyTorch `state_dict`s in safetensors, whole checkpoints included
//!   ([`weights::find_layers`]).
//! - [`cpu`]: the reference implementation the shaders are tested against.
//!
//! # Example
//! ```no_run
//! use drconv::{DrConv2d, DrConvConfig, DrConvParams, GpuContext, Mode, Tensor};
//! # fn main() -> drconv::Result<()> {
//! pollster::block_on(async {
//!     let ctx = GpuContext::new().await?;
//!     let config = DrConvConfig::new(8, 16, 3, 4)?.with_padding(1)?;
//!     let mut layer = DrConv2d::new(ctx.clone(), &DrConvParams::init(config, 0)?)?;
//!     let x = layer.upload(&Tensor::zeros(&[1, 8, 32, 32]))?;
//!     let y = layer.forward(&x, Mode::Inference).await?.read(&ctx).await?;
//!     assert_eq!(y.shape, vec![1, 16, 32, 32]);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Features
//! - `cli` (default): the `drconv` binary, the native demo and the benchmark (clap, indicatif,
//!   image, pollster, env_logger). A library dependent takes `default-features = false`.
//! - `golden`: the golden-vector loader ([`golden`]) and comparison ([`verify`]).
//! - `demo`: the demos' image helpers. `web`: the browser build's JavaScript API (wasm32).
//! - `burn`: [`burn::DrConv2d`], the layer as a burn 0.22 module (our kernels on burn's wgpu
//!   devices, burn's ops elsewhere). `burn-dev`: what the burn example and tests add (burn's
//!   CPU backend, PyTorch import, optimizers).
//!
//! drconv 0.1 is built on wgpu 30 (re-exported as [`wgpu`]): a device or buffer handed to drconv
//! must come from that wgpu.
#![warn(missing_docs)]
// No `feature(doc_cfg)` under `docsrs`: scripts/test.sh builds the docs with docs.rs's flags on
// stable, where `#![feature]` is an error.

#[cfg(feature = "burn")]
pub mod burn;
mod config;
pub mod cpu;
mod error;
#[cfg(feature = "golden")]
pub mod golden;
mod layer;
#[cfg(feature = "onnx")]
pub mod onnx;
mod optim;
mod params;
pub mod pytorch;
mod tensor;
mod trace;
mod train;
#[cfg(feature = "golden")]
pub mod verify;
#[cfg(all(target_arch = "wasm32", feature = "web"))]
#[doc(hidden)]
pub mod web;
pub mod weights;

#[doc(hidden)]
pub mod internal;
#[cfg(feature = "demo")]
pub(crate) use internal::demo;
pub(crate) use internal::{gpu, rng};

/// The wgpu this crate is built on, so that a program names the same version.
pub use wgpu;

pub use config::{DrConvConfig, ForwardShape, Mode};
pub use error::{DrConvError, Result};
pub use gpu::context::AdapterSummary;
pub use gpu::{
    Backward, ContextOptions, Correlation, GpuContext, GpuGradients, GpuTensor, KernelGen,
    VariantOverrides, Variants,
};
pub use layer::DrConv2d;
pub use optim::{OptimizerConfig, OptimizerState};
pub use params::{DrConvParams, ParamId};
pub use tensor::Tensor;
pub use trace::{ForwardTrace, Gradients};
pub use train::Trainer;

/// The README's Rust examples compile and run as doc tests (on whatever adapter is present).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
