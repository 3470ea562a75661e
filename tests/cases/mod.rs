//! Layer cases by name, shared by the tests that run every kernel variant over a list of them
//! (`fused_tiling.rs`, `guards.rs`, `backward_variants.rs`), and gradients as bits for bitwise
//! comparisons (also `determinism.rs`).
#![allow(dead_code)]

use std::sync::Arc;

use drconv::internal::rng::Rng;
use drconv::Tensor;
use drconv::{ContextOptions, DrConvConfig, GpuContext, Gradients, VariantOverrides};

/// The variants by name (as `Correlation`, `KernelGen` and `Backward` print them) (`None`: the adapter's choice).
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

/// A layer and its input, by name; presets fill what a case does not say
/// (`Case { o: 64, r: 8, ..Case::K3 }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub i: usize,
    pub o: usize,
    pub k: usize,
    pub r: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub batch: usize,
    pub h: usize,
    pub w: usize,
}

impl Case {
    /// The common layer: k = 3, stride 1, padding 1 (same size), dilation 1; 4 -> 4 channels,
    /// r = 4, one 8 x 8 sample.
    pub const K3: Case = Case {
        i: 4,
        o: 4,
        k: 3,
        r: 4,
        stride: 1,
        padding: 1,
        dilation: 1,
        batch: 1,
        h: 8,
        w: 8,
    };

    /// The case's layer, validated.
    pub fn config(&self) -> DrConvConfig {
        let cfg = DrConvConfig {
            in_channels: self.i,
            out_channels: self.o,
            kernel_size: self.k,
            region_num: self.r,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        };
        cfg.validate().unwrap();
        cfg
    }

    /// B x I x H x W.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.i, self.h, self.w]
    }

    /// The case's input, N(0, 1) from `seed`.
    pub fn input(&self, seed: u64) -> Tensor {
        let shape = self.input_shape();
        Tensor::new(&shape, Rng::new(seed).normal_vec(shape.iter().product())).unwrap()
    }
}

/// Every gradient's values as bits, by name.
pub fn bits(g: &Gradients) -> Vec<(String, Vec<u32>)> {
    g.named()
        .into_iter()
        .map(|(n, t)| (n, t.data.iter().map(|v| v.to_bits()).collect()))
        .collect()
}
