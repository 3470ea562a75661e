//! MSE loss on the GPU: the gradient `2 (y - t) / N` written straight into a backward plan's
//! `grad_output`, and the loss `mean((y - t)^2)` reduced in a fixed order into one float.

use crate::error::{DrConvError, Result};
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::program::{Dims, Program};
use crate::gpu::shaders;

/// Elements per partial sum of the loss (first reduction stage).
pub const LOSS_CHUNK: usize = 256;

/// Buffers and program of one (output, target, gradient) binding of the MSE loss.
#[derive(Debug)]
pub struct MsePlan {
    /// The loss, one f32, valid after the program runs.
    pub loss: GpuTensor,
    partial: GpuTensor,
    pub program: Program,
}

impl MsePlan {
    /// Binds `y` (the forward's output), `target` and `grad` (where dL/dy goes), all one shape.
    pub fn build(
        ctx: &GpuContext,
        y: &GpuTensor,
        target: &GpuTensor,
        grad: &GpuTensor,
    ) -> Result<Self> {
        for (what, t) in [("target", target), ("gradient", grad)] {
            if t.shape != y.shape {
                return Err(DrConvError::Shape(format!(
                    "MSE {what} has shape {:?} but the output has shape {:?}",
                    t.shape, y.shape
                )));
            }
        }
        // The loss binds the whole output (a plan split over the batch does not split it).
        let spec =
            crate::gpu::limits::TensorSpec::new("output, bound whole by the MSE loss", &y.shape);
        crate::gpu::limits::check_bound(&ctx.limits, &spec)?;
        let n = y.numel();
        let chunks = n.div_ceil(LOSS_CHUNK);
        let loss = ctx.empty("loss", &[1])?;
        let partial = ctx.empty("loss_partial", &[chunks])?;
        let dims = Dims {
            aux0: n as u32,
            aux1: LOSS_CHUNK as u32,
            ..Default::default()
        };
        let mut program = Program::default();
        for (entry, bindings, items) in [
            (
                "grad",
                vec![(1, &y.buffer), (2, &target.buffer), (3, &grad.buffer)],
                n,
            ),
            (
                "loss_partial",
                vec![(1, &y.buffer), (2, &target.buffer), (4, &partial.buffer)],
                chunks,
            ),
            (
                "loss_reduce",
                vec![(4, &partial.buffer), (5, &loss.buffer)],
                1,
            ),
        ] {
            program.steps.extend(ctx.steps(
                entry,
                &shaders::MSE,
                entry,
                dims,
                &bindings,
                items as u64,
            )?);
        }
        Ok(MsePlan {
            loss,
            partial,
            program,
        })
    }

    /// Every buffer the program writes besides the gradient.
    pub fn outputs(&self) -> [&GpuTensor; 2] {
        [&self.loss, &self.partial]
    }
}
