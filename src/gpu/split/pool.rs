//! The pooled map of a row split, and the pool's share of `grad.x`, computed from the whole
//! image a few input channels at a time (a channel's plane is contiguous in x, so a chunk of
//! channels is one copy), since no band sees the whole image.

use crate::config::{DrConvConfig, ForwardShape};
use crate::error::Result;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::gpu::limits::{self, TensorSpec};
use crate::gpu::program::{Dims, Step};
use crate::gpu::shaders;

/// The pool stage: chunks of `nc` input channels of one sample go through `xc` (input or
/// `grad.x`) and `pc` (pooled or its gradient).
pub(super) struct PoolStage {
    /// B x I x k x k: every sample's pooled map, copied into each band's sub-plan.
    pub pooled: GpuTensor,
    xc: GpuTensor,
    pc: GpuTensor,
    /// Per channel chunk `(c0, n)`: the pool's steps and the pool backward's for `n` channels.
    chunks: Vec<(usize, usize, Vec<Step>, Vec<Step>)>,
    plane: u64,
    kk: u64,
    channels: u64,
}

impl PoolStage {
    /// Buffers and steps for `s`, with the most channels per chunk that one binding holds.
    pub fn build(ctx: &GpuContext, c: &DrConvConfig, s: &ForwardShape) -> Result<Self> {
        let (h, w, k) = (s.height, s.width, c.kernel_size);
        let plane_spec = |n: usize| TensorSpec::new("input channels to pool", &[1, n, h, w]);
        limits::check_bound(&ctx.limits, &plane_spec(1))?;
        let nc = limits::largest(c.in_channels, |n| {
            limits::check_bound(&ctx.limits, &plane_spec(n)).is_ok()
        });
        let xc = ctx.empty("input channels to pool", &[1, nc, h, w])?;
        let pc = ctx.empty("pooled channels", &[1, nc, k, k])?;
        let pooled = ctx.empty_stored("pooled", &s.pooled(c))?;
        let mut chunks = Vec::new();
        for c0 in (0..c.in_channels).step_by(nc) {
            let n = nc.min(c.in_channels - c0);
            let dims = Dims::new(
                &DrConvConfig {
                    in_channels: n,
                    ..*c
                },
                &ForwardShape { batch: 1, ..*s },
            );
            let fwd = ctx.steps(
                "adaptive_pool",
                &shaders::ADAPTIVE_POOL,
                "main",
                dims,
                &[(1, &xc.buffer), (2, &pc.buffer)],
                (n * k * k) as u64,
            )?;
            let bwd = ctx.steps(
                "pool_input_grad",
                &shaders::ADAPTIVE_POOL_BWD,
                "main",
                dims,
                &[(1, &pc.buffer), (2, &xc.buffer)],
                (n * h * w) as u64,
            )?;
            chunks.push((c0, n, fwd, bwd));
        }
        Ok(PoolStage {
            pooled,
            xc,
            pc,
            chunks,
            plane: (h * w) as u64 * 4,
            kk: (k * k) as u64 * 4,
            channels: c.in_channels as u64,
        })
    }

    /// Every sample's pooled map of `x` into [`PoolStage::pooled`].
    pub fn forward(&self, x: &GpuTensor) -> Vec<Step> {
        let mut steps = Vec::new();
        for b in 0..x.shape[0] as u64 {
            for (c0, n, fwd, _) in &self.chunks {
                let (c0, n) = (b * self.channels + *c0 as u64, *n as u64);
                let (xc, pc) = (&self.xc.buffer, &self.pc.buffer);
                let (plane, kk) = (self.plane, self.kk);
                steps.push(Step::copy(
                    "pool input in",
                    &x.buffer,
                    c0 * plane,
                    xc,
                    0,
                    n * plane,
                ));
                steps.extend(fwd.iter().cloned());
                let pooled = &self.pooled.buffer;
                steps.push(Step::copy("pooled out", pc, 0, pooled, c0 * kk, n * kk));
            }
        }
        steps
    }

    /// Adds the pool's share of sample `b`'s input gradient, from its pooled map's gradient
    /// `dpooled` (1 x I x k x k), into `grad_x`.
    pub fn backward(&self, b: usize, dpooled: &GpuTensor, grad_x: &GpuTensor) -> Vec<Step> {
        let mut steps = Vec::new();
        let (xc, pc, dx) = (&self.xc.buffer, &self.pc.buffer, &grad_x.buffer);
        let (plane, kk) = (self.plane, self.kk);
        for (c0, n, _, bwd) in &self.chunks {
            let (c0, n) = (*c0 as u64, *n as u64);
            let at = (b as u64 * self.channels + c0) * plane;
            steps.push(Step::copy(
                "grad.pooled in",
                &dpooled.buffer,
                c0 * kk,
                pc,
                0,
                n * kk,
            ));
            steps.push(Step::copy("grad.x channels in", dx, at, xc, 0, n * plane));
            steps.extend(bwd.iter().cloned());
            steps.push(Step::copy("grad.x channels out", xc, 0, dx, at, n * plane));
        }
        steps
    }
}
