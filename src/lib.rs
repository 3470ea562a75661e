//! DRConv (Dynamic Region-Aware Convolution, Chen et al., CVPR 2021) as WGSL compute shaders on
//! wgpu: forward, backward and training on Vulkan, Metal, DX12, GL and WebGPU, plus a plain-Rust
//! CPU reference of the same maths.

pub mod config;
pub mod cpu;
pub mod error;
pub mod golden;
pub mod gpu;
pub mod layer;
pub mod optim;
pub mod params;
pub mod rng;
pub mod tensor;
pub mod trace;
pub mod verify;
pub mod weights;

pub use config::{DrConvConfig, ForwardShape};
pub use gpu::{ContextOptions, GpuContext, GpuTensor, Mode};
pub use layer::DrConv2d;
pub use error::{DrConvError, Result};
pub use optim::{OptimizerConfig, OptimizerState};
pub use params::{DrConvParams, ParamId};
pub use tensor::Tensor;
pub use trace::{ForwardTrace, Gradients};
