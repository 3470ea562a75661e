//! DRConv (Dynamic Region-Aware Convolution, Chen et al., CVPR 2021) as WGSL compute shaders on
//! wgpu: forward, backward and training on Vulkan, Metal, DX12, GL and WebGPU, plus a plain-Rust
//! CPU reference of the same maths.

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod config;
pub mod cpu;
pub mod demo;
pub mod error;
pub mod golden;
pub mod gpu;
pub mod layer;
pub mod optim;
pub mod params;
pub mod rng;
pub mod tensor;
pub mod trace;
pub mod train;
pub mod verify;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod weights;

/// The wgpu this crate is built on, so that a program names the same version.
pub use wgpu;

pub use config::{DrConvConfig, ForwardShape, Mode};
pub use error::{DrConvError, Result};
pub use gpu::{ContextOptions, GpuContext, GpuGradients, GpuTensor, VariantOverrides, Variants};
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
