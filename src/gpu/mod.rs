//! The GPU runtime: context, shaders, pipeline cache, device tensors, and the op programs.

pub mod autotune;
pub mod backward;
pub mod buffers;
pub mod cache;
pub mod context;
pub mod correlation;
pub mod cost;
pub mod decide;
pub mod deferred;
pub mod dispatch;
pub mod forward;
pub mod limits;
pub mod loss;
pub mod optim;
pub mod params;
pub mod pipelines;
pub mod plan;
pub mod profile;
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
