//! The pooled map of a row split, and the pool's share of `grad.x`, computed from the whole
//! image: a few input channels at a time (a channel's plane is contiguous in x, so a chunk of
//! channels is one copy), or, when one channel's plane exceeds a binding, a channel at a time in
//! chunks of rows whose bin sums add up (`pool_rows` in shaders/adaptive_pool.wgsl). No band sees
//! the whole image.

use crate::config::{DrConvConfig, ForwardShape};
use crate::error::Result;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::limits::{self, TensorSpec};
use crate::gpu::program::{Dims, Step};
use crate::gpu::shaders;

/// How the stage walks a sample.
enum Walk {
    /// Chunks `(c0, n)` of whole channel planes, with the pool's and the pool backward's steps
    /// for `n` channels.
    Planes(Vec<(usize, usize, Vec<Step>, Vec<Step>)>),
    /// One channel at a time, in chunks `(y0, ny)` of rows, with their steps, then `finish`
    /// (sums into means).
    Rows {
        chunks: Vec<(usize, usize, Vec<Step>, Vec<Step>)>,
        finish: Vec<Step>,
    },
}

/// The pool stage: a chunk of one sample's input (or `grad.x`) goes through `xc`, its pooled
/// values (or their gradient) through `pc`.
pub(super) struct PoolStage {
    /// B x I x k x k: every sample's pooled map, copied into each band's sub-plan.
    pub pooled: GpuTensor,
    xc: GpuTensor,
    pc: GpuTensor,
    walk: Walk,
    /// Bytes of a row, a plane and a k x k map.
    row: u64,
    plane: u64,
    kk: u64,
    channels: u64,
}

impl PoolStage {
    /// Buffers and steps for `s`: the most whole planes one binding holds, else the most rows.
    pub fn build(ctx: &GpuContext, c: &DrConvConfig, s: &ForwardShape) -> Result<Self> {
        let (h, w, k) = (s.height, s.width, c.kernel_size);
        let fits = |shape: &[usize]| {
            let spec = TensorSpec::new("input rows to pool", shape);
            limits::check_bound(&ctx.limits, &spec)
        };
        fits(&[1, 1, 1, w])?;
        let one = ForwardShape { batch: 1, ..*s };
        let dims_for = |channels: usize| {
            let cc = DrConvConfig {
                in_channels: channels,
                ..*c
            };
            Dims::new(&cc, &one)
        };
        let (walk, xc, pc) = if fits(&[1, 1, h, w]).is_ok() {
            let nc = super::plan::largest(c.in_channels, |n| fits(&[1, n, h, w]).is_ok());
            let xc = ctx.empty("input channels to pool", &[1, nc, h, w])?;
            let pc = ctx.empty("pooled channels", &[1, nc, k, k])?;
            let mut chunks = Vec::new();
            for c0 in (0..c.in_channels).step_by(nc) {
                let n = nc.min(c.in_channels - c0);
                let entries = ("main", "main");
                let (fwd, bwd) = pool_steps(ctx, dims_for(n), h, &xc, &pc, entries)?;
                chunks.push((c0, n, fwd, bwd));
            }
            (Walk::Planes(chunks), xc, pc)
        } else {
            let nr = super::plan::largest(h, |n| fits(&[1, 1, n, w]).is_ok());
            let xc = ctx.empty("input rows to pool", &[1, 1, nr, w])?;
            let pc = ctx.empty("pooled channel", &[1, 1, k, k])?;
            let mut chunks = Vec::new();
            for y0 in (0..h).step_by(nr) {
                let ny = nr.min(h - y0);
                let dims = dims_for(1).pool_rows(y0, ny);
                let entries = ("pool_rows", "rows");
                let (fwd, bwd) = pool_steps(ctx, dims, ny, &xc, &pc, entries)?;
                chunks.push((y0, ny, fwd, bwd));
            }
            let finish = ctx.steps(
                "adaptive_pool",
                &shaders::ADAPTIVE_POOL,
                "pool_finish",
                dims_for(1),
                &[("pooled", &pc.buffer)],
                (k * k) as u64,
            )?;
            (Walk::Rows { chunks, finish }, xc, pc)
        };
        Ok(PoolStage {
            pooled: ctx.empty_stored("pooled", &s.pooled(c))?,
            xc,
            pc,
            walk,
            row: w as u64 * 4,
            plane: (h * w) as u64 * 4,
            kk: (k * k) as u64 * 4,
            channels: c.in_channels as u64,
        })
    }

    /// Every sample's pooled map of `x` into [`PoolStage::pooled`].
    pub fn forward(&self, x: &GpuTensor) -> Vec<Step> {
        let (xc, pc, pooled) = (&self.xc.buffer, &self.pc.buffer, &self.pooled.buffer);
        let (row, plane, kk) = (self.row, self.plane, self.kk);
        let mut steps = Vec::new();
        for b in 0..x.shape[0] as u64 {
            let first = b * self.channels;
            match &self.walk {
                Walk::Planes(chunks) => {
                    for (c0, n, fwd, _) in chunks {
                        let (c0, n) = (first + *c0 as u64, *n as u64);
                        steps.push(Step::copy(
                            "pool input in",
                            &x.buffer,
                            c0 * plane,
                            xc,
                            0,
                            n * plane,
                        ));
                        steps.extend(fwd.iter().cloned());
                        steps.push(Step::copy("pooled out", pc, 0, pooled, c0 * kk, n * kk));
                    }
                }
                Walk::Rows { chunks, finish } => {
                    for ch in first..first + self.channels {
                        steps.push(Step::clear("pooled sums zeros", pc, 0, kk));
                        for (y0, ny, fwd, _) in chunks {
                            let at = ch * plane + *y0 as u64 * row;
                            let size = *ny as u64 * row;
                            steps.push(Step::copy("pool rows in", &x.buffer, at, xc, 0, size));
                            steps.extend(fwd.iter().cloned());
                        }
                        steps.extend(finish.iter().cloned());
                        steps.push(Step::copy("pooled out", pc, 0, pooled, ch * kk, kk));
                    }
                }
            }
        }
        steps
    }

    /// Adds the pool's share of sample `b`'s input gradient, from its pooled map's gradient
    /// `dpooled` (1 x I x k x k), into `grad_x`.
    pub fn backward(&self, b: usize, dpooled: &GpuTensor, grad_x: &GpuTensor) -> Vec<Step> {
        let (xc, pc, dx) = (&self.xc.buffer, &self.pc.buffer, &grad_x.buffer);
        let (row, plane, kk) = (self.row, self.plane, self.kk);
        let first = b as u64 * self.channels;
        let dp = &dpooled.buffer;
        let mut steps = Vec::new();
        match &self.walk {
            Walk::Planes(chunks) => {
                for (c0, n, _, bwd) in chunks {
                    let (c0, n) = (*c0 as u64, *n as u64);
                    let at = (first + c0) * plane;
                    steps.push(Step::copy("grad.pooled in", dp, c0 * kk, pc, 0, n * kk));
                    steps.push(Step::copy("grad.x channels in", dx, at, xc, 0, n * plane));
                    steps.extend(bwd.iter().cloned());
                    steps.push(Step::copy("grad.x channels out", xc, 0, dx, at, n * plane));
                }
            }
            Walk::Rows { chunks, .. } => {
                for c in 0..self.channels {
                    steps.push(Step::copy("grad.pooled in", dp, c * kk, pc, 0, kk));
                    for (y0, ny, _, bwd) in chunks {
                        let at = (first + c) * plane + *y0 as u64 * row;
                        let size = *ny as u64 * row;
                        steps.push(Step::copy("grad.x rows in", dx, at, xc, 0, size));
                        steps.extend(bwd.iter().cloned());
                        steps.push(Step::copy("grad.x rows out", xc, 0, dx, at, size));
                    }
                }
            }
        }
        steps
    }
}

/// The pool's and the pool backward's steps (`entries`: forward, backward) over `xc` and `pc`
/// for `dims`, with `rows` rows of each of the `dims.cin` channels in `xc`.
fn pool_steps(
    ctx: &GpuContext,
    dims: Dims,
    rows: usize,
    xc: &GpuTensor,
    pc: &GpuTensor,
    (fwd_entry, bwd_entry): (&'static str, &'static str),
) -> Result<(Vec<Step>, Vec<Step>)> {
    let (k, w, n, rows) = (dims.k as u64, dims.w as u64, dims.cin as u64, rows as u64);
    let buffers = [("x", &xc.buffer), ("pooled", &pc.buffer)];
    let fwd = ctx.steps(
        "adaptive_pool",
        &shaders::ADAPTIVE_POOL,
        fwd_entry,
        dims,
        &buffers,
        n * k * k,
    )?;
    let bwd = ctx.steps(
        "pool_input_grad",
        &shaders::ADAPTIVE_POOL_BWD,
        bwd_entry,
        dims,
        &[("dpooled", &pc.buffer), ("dx", &xc.buffer)],
        n * rows * w,
    )?;
    Ok((fwd, bwd))
}
