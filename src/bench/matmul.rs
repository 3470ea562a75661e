//! A plain GEMM on the same device, as the attainable rate the layer's kernels are judged by.

use crate::error::{DrConvError, Result};
use crate::gpu::program::{Dims, Program};
use crate::gpu::{shaders, GpuContext};
use crate::rng::Rng;
use crate::tensor::Tensor;

use super::timer::{median_of, Timer};

/// The GEMM variants of `matmul.wgsl` (beside this file): (entry point, rows per tile, columns per tile).
/// `direct4` and `nt4` are the blockings the correlation uses on CPU adapters (`nt4` with B
/// stored transposed, as the channel-last correlation reads x), so the reported attainable rate
/// (the best variant) includes them.
pub const VARIANTS: [(&str, u64, u64); 4] = [
    ("tiled", 32, 32),
    ("blocked", 32, 64),
    ("direct4", 32, 64),
    ("nt4", 32, 64),
];

/// The `n x n x n` GEMM of every variant, bound once, its inputs kept for the check.
pub struct Gemm {
    pub n: usize,
    /// (entry point, program) per variant.
    pub variants: Vec<(&'static str, Program)>,
    a: Vec<f32>,
    b: Vec<f32>,
    c: crate::gpu::GpuTensor,
}

impl Gemm {
    pub fn new(ctx: &GpuContext, n: usize) -> Result<Self> {
        let mut rng = Rng::new(7);
        let (ha, hb) = (rng.normal_vec(n * n), rng.normal_vec(n * n));
        let a = ctx.upload("matmul a", &Tensor::new(&[n, n], ha.clone())?)?;
        let b = ctx.upload("matmul b", &Tensor::new(&[n, n], hb.clone())?)?;
        let hbt: Vec<f32> = (0..n * n).map(|t| hb[(t % n) * n + t / n]).collect();
        let bt = ctx.upload("matmul b^T", &Tensor::new(&[n, n], hbt)?)?;
        let c = ctx.empty("matmul c", &[n, n])?;
        let dims = Dims::default().matmul(n);
        let mut variants = Vec::new();
        for (entry, tm, tn) in VARIANTS {
            let groups = (n as u64).div_ceil(tm) * (n as u64).div_ceil(tn);
            // `direct4` and `nt4` read A through its vec4 view (binding 4), `nt4` B transposed
            // (binding 5).
            let bindings = match entry {
                "direct4" => [("a4", &a.buffer), ("bm", &b.buffer), ("c", &c.buffer)],
                "nt4" => [("a4", &a.buffer), ("bt4", &bt.buffer), ("c", &c.buffer)],
                _ => [("a", &a.buffer), ("bm", &b.buffer), ("c", &c.buffer)],
            };
            let steps =
                ctx.group_steps("matmul", &shaders::MATMUL, entry, dims, &bindings, groups)?;
            variants.push((entry, Program { steps }));
        }
        Ok(Gemm {
            n,
            variants,
            a: ha,
            b: hb,
            c,
        })
    }

    pub fn flops(&self) -> f64 {
        2.0 * (self.n as f64).powi(3)
    }

    /// Runs variant `i` on a NaN-poisoned C and checks 64 sampled entries against f64.
    pub async fn check(&self, ctx: &GpuContext, timer: &Timer, i: usize) -> Result<()> {
        ctx.fill(&self.c, f32::NAN);
        timer.time(ctx, &self.variants[i].1).await?;
        let c = self.c.read(ctx).await?.data;
        check(
            &c,
            &self.a,
            &self.b,
            self.n,
            self.variants[i].0,
            &mut Rng::new(8),
        )
    }
}

/// GFLOP/s of one `n x n x n` GEMM per variant (median over `budget_s` seconds each), each
/// checked for a correct product.
pub async fn matmul_gflops(
    ctx: &GpuContext,
    timer: &Timer,
    gemm: &Gemm,
    budget_s: f64,
) -> Result<Vec<(&'static str, f64)>> {
    let mut out = Vec::new();
    for (i, (entry, program)) in gemm.variants.iter().enumerate() {
        let ms = median_of(1, 3, 50, budget_s, || timer.time(ctx, program))
            .await?
            .median;
        gemm.check(ctx, timer, i).await?;
        out.push((*entry, gemm.flops() / (ms * 1e-3) / 1e9));
    }
    Ok(out)
}

/// A rate is only worth reporting for a correct product: 64 sampled entries against f64.
fn check(c: &[f32], a: &[f32], b: &[f32], n: usize, entry: &str, rng: &mut Rng) -> Result<()> {
    for _ in 0..64 {
        let (i, j) = (rng.int(0, n - 1), rng.int(0, n - 1));
        let want: f64 = (0..n)
            .map(|k| a[i * n + k] as f64 * b[k * n + j] as f64)
            .sum();
        let got = c[i * n + j] as f64;
        if (got - want).abs() > 1e-3 * (n as f64).sqrt() || got.is_nan() {
            return Err(DrConvError::Gpu {
                op: format!("matmul {entry} check"),
                message: format!("C[{i}, {j}] = {got}, expected {want}"),
            });
        }
    }
    Ok(())
}
