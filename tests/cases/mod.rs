//! Layer cases as tuples, shared by the tests that run every kernel variant over a list of them
//! (`fused_tiling.rs`, `guards.rs`, `backward_variants.rs`), and gradients as bits for bitwise
//! comparisons (also `determinism.rs`).
#![allow(dead_code)]

use std::sync::Arc;

use drconv::internal::rng::Rng;
use drconv::Tensor;
use drconv::{ContextOptions, DrConvConfig, GpuContext, Gradients, VariantOverrides};

/// The variants named as the CLI's switches spell them (`None`: the adapter's choice).
pub fn forced(corr: Option<&str>, kernel_gen: Option<&str>, bwd: Option<&str>) -> VariantOverrides {
    let mut o = VariantOverrides::default();
    o.correlation = corr.map(|v| v.parse().unwrap());
    o.kernel_gen = kernel_gen.map(|v| v.parse().unwrap());
    o.backward = bwd.map(|v| v.parse().unwrap());
    o
}

/// A context on the default adapter running the `variants` forced.
pub async fn context_with(variants: VariantOverrides) -> Arc<GpuContext> {
    let opts = ContextOptions::default().variants(variants);
    GpuContext::with_options(opts)
        .await
        .expect("a GPU adapter (lavapipe on CI)")
}

/// (in, out, k, r, stride, padding, dilation, input shape)
pub type Case = (usize, usize, usize, usize, usize, usize, usize, [usize; 4]);

/// The case's layer, validated.
pub fn config(c: &Case) -> DrConvConfig {
    let cfg = DrConvConfig {
        in_channels: c.0,
        out_channels: c.1,
        kernel_size: c.2,
        region_num: c.3,
        stride: c.4,
        padding: c.5,
        dilation: c.6,
    };
    cfg.validate().unwrap();
    cfg
}

/// The case's input, N(0, 1) from `seed`.
pub fn input(c: &Case, seed: u64) -> Tensor {
    Tensor::new(&c.7, Rng::new(seed).normal_vec(c.7.iter().product())).unwrap()
}

/// Every gradient's values as bits, by name.
pub fn bits(g: &Gradients) -> Vec<(String, Vec<u32>)> {
    g.named()
        .into_iter()
        .map(|(n, t)| (n, t.data.iter().map(|v| v.to_bits()).collect()))
        .collect()
}
