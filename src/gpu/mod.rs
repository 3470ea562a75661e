//! The GPU runtime: context, shaders, pipeline cache, device tensors, and the op programs.

pub mod backward;
pub mod buffers;
pub mod cache;
pub mod calibrate;
pub mod context;
pub mod correlation;
pub mod dispatch;
pub mod forward;
pub mod limits;
pub mod loss;
pub mod optim;
pub mod params;
pub mod pipelines;
pub mod plan;
pub mod program;
pub mod shaders;
pub mod split;
pub mod stages;
pub mod variants;

pub use crate::config::Mode;
pub use backward::{BackwardPlan, GpuGradients};
pub use buffers::GpuTensor;
pub use context::{ContextOptions, GpuContext};
pub use forward::ForwardPlan;
pub use variants::{Backward, Correlation, KernelGen, VariantOverrides, Variants};
