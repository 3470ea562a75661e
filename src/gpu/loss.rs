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
        crate::gpu::limits::check_storage_bindings(&ctx.limits)?;
        for (what, t) in [("output", y), ("target", target), ("gradient", grad)] {
            t.check_holds(what)?;
        }
        let n = y.numel();
        // u32 element counts in the shader.
        if n as u64 > crate::gpu::limits::MAX_ITEMS {
            return Err(DrConvError::TooLarge {
                what: format!("MSE loss over the output of shape {:?}: elements", y.shape),
                size: n as u64,
                limit: crate::gpu::limits::MAX_ITEMS,
            });
        }
        let chunks = n.div_ceil(LOSS_CHUNK);
        let loss = ctx.empty("loss", &[1])?;
        let partial = ctx.empty("loss_partial", &[chunks])?;
        let dims = Dims::default().loss(n, LOSS_CHUNK);
        // Outputs larger than one storage binding (a plan split over the batch or channels keeps
        // them whole) are bound in ranges of whole chunks.
        let ranges = crate::gpu::limits::ranges(&ctx.limits, "MSE loss output", n, LOSS_CHUNK)?;
        let mut program = Program::default();
        for (start, len) in ranges {
            // This range's elements and first chunk.
            let mut win = dims;
            win.cin = len as u32;
            win.cout = (start / LOSS_CHUNK) as u32;
            let whole = wgpu::BufferBinding {
                buffer: &partial.buffer,
                offset: 0,
                size: None,
            };
            program.steps.extend(ctx.steps_ranged(
                "mse grad",
                &shaders::MSE,
                "grad",
                win,
                &[
                    ("y", y.range((start, len))),
                    ("tgt", target.range((start, len))),
                    ("gy", grad.range((start, len))),
                ],
                len as u64,
            )?);
            program.steps.extend(ctx.steps_ranged(
                "mse loss_partial",
                &shaders::MSE,
                "loss_partial",
                win,
                &[
                    ("y", y.range((start, len))),
                    ("tgt", target.range((start, len))),
                    ("partial", whole),
                ],
                len.div_ceil(LOSS_CHUNK) as u64,
            )?);
        }
        program.steps.extend(ctx.steps(
            "mse loss_reduce",
            &shaders::MSE,
            "loss_reduce",
            dims,
            &[("partial", &partial.buffer), ("loss", &loss.buffer)],
            1,
        )?);
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
