//! The split over output rows (src/gpu/split/rows.rs): when one sample's input (or anything
//! else of one sample with one output channel) exceeds a storage binding, sub-plans take bands of
//! output rows, the pooled map comes from the whole image channel by channel, and the bands'
//! input gradients are summed where they overlap. Forward (both modes), backward and training
//! against the CPU reference on devices with 16 workgroups per dimension and small bindings;
//! stride, dilation, padding, kernel sizes, non-square images and a split over output channels
//! at the same time.

use std::sync::Arc;

mod limits_common;
use limits_common::*;

use drconv::internal::gpu::split::{self, Split};
use drconv::{DrConvConfig, GpuContext, Mode, OptimizerConfig};

fn layer(i: usize, o: usize, k: usize, r: usize) -> DrConvConfig {
    DrConvConfig::new(i, o, k, r).unwrap()
}

/// Every plan of `c` on `shape` is split over rows (one sample per sub-plan), and matches the CPU.
async fn check_rows(
    ctx: &Arc<GpuContext>,
    c: DrConvConfig,
    shape: [usize; 4],
    train: &[(OptimizerConfig, usize)],
) -> Vec<Split> {
    let s = c.forward_shape(&shape).unwrap();
    let mut splits = vec![split::backward_split(ctx.limits(), &c, &s).unwrap()];
    for mode in [Mode::Inference, Mode::Training] {
        splits.push(split::forward_split(ctx.limits(), &c, &s, mode).unwrap());
    }
    for split in &splits {
        assert!(
            split.batch == 1 && split.splits_rows(&s),
            "{shape:?}: {split:?}"
        );
    }
    let seen = check_against_cpu(ctx.clone(), c, shape, train).await;
    assert_all_checked(ctx, &format!("{c:?} on {shape:?}, {splits:?}"), &seen);
    splits
}

#[test]
fn input_over_the_binding_splits_over_rows() {
    pollster::block_on(async {
        // 8 x 48 x 48 f32 is 73728 bytes per sample, over a 64 KiB binding: bands of rows, every
        // output channel per band; two samples, trained with Adam and SGD with momentum.
        let ctx = small_ctx(64 << 10, 16).await;
        let c = layer(8, 8, 3, 4).with_padding(1).unwrap();
        let train = [
            (OptimizerConfig::adam(0.01), 2),
            (OptimizerConfig::sgd(0.05).with_momentum(0.9), 1),
        ];
        let splits = check_rows(&ctx, c, [2, 8, 48, 48], &train).await;
        assert!(splits.iter().all(|s| s.channels == 8), "{splits:?}");
    });
}

#[test]
fn row_split_with_stride_dilation_and_kernel_sizes() {
    pollster::block_on(async {
        // 8 KiB bindings: many bands, each geometry's discarded rows and zero rows at both edges.
        let ctx = small_ctx(8 << 10, 16).await;
        let sgd = [(OptimizerConfig::sgd(0.05), 1)];
        let cases = [
            (
                layer(4, 6, 3, 3)
                    .with_stride(2)
                    .unwrap()
                    .with_padding(1)
                    .unwrap(),
                [1, 4, 29, 31],
            ),
            (
                layer(4, 5, 3, 4)
                    .with_dilation(2)
                    .unwrap()
                    .with_padding(2)
                    .unwrap(),
                [2, 4, 26, 24],
            ),
            (layer(3, 4, 1, 2).with_stride(2).unwrap(), [1, 3, 34, 30]),
            (layer(3, 4, 5, 3).with_padding(2).unwrap(), [1, 3, 27, 33]),
            (
                layer(4, 4, 3, 2)
                    .with_padding(3)
                    .unwrap()
                    .with_stride(2)
                    .unwrap(),
                [1, 4, 30, 20],
            ),
        ];
        for (c, shape) in cases {
            check_rows(&ctx, c, shape, &sgd).await;
        }
    });
}

#[test]
fn rows_and_output_channels_split_together() {
    pollster::block_on(async {
        // I = O = 24, r = 4: one sample's generated kernel (82944 bytes) and its input (24 x 28
        // x 28, 75264 bytes) are both over a 64 KiB binding: bands of rows of a few output
        // channels each.
        let ctx = small_ctx(64 << 10, 16).await;
        let c = layer(24, 24, 3, 4).with_padding(1).unwrap();
        let train = [(OptimizerConfig::adam(0.01), 1)];
        let splits = check_rows(&ctx, c, [2, 24, 28, 28], &train).await;
        assert!(splits.iter().all(|s| s.channels < 24), "{splits:?}");
    });
}

#[test]
fn a_channel_plane_over_the_binding_pools_in_rows() {
    pollster::block_on(async {
        // 8 KiB bindings hold 2048 floats: one channel's 48 x 48 or 50 x 45 plane does not fit,
        // so the pooled map sums bins over chunks of rows (45 rows at a time for W = 45, where
        // k = 3's bins [0, 17), [16, 34), [33, 50) overlap and the last spans two chunks).
        let ctx = small_ctx(8 << 10, 16).await;
        let sgd = [(OptimizerConfig::sgd(0.05), 1)];
        let c = layer(4, 4, 3, 2).with_padding(1).unwrap();
        check_rows(&ctx, c, [2, 4, 48, 48], &sgd).await;
        let c = layer(3, 4, 3, 3).with_padding(1).unwrap();
        check_rows(&ctx, c, [1, 3, 50, 45], &sgd).await;
    });
}
