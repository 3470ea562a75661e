//! Plans on devices with deliberately small limits: tiny storage bindings force the split over
//! the batch and, when one sample is already too large, over output channels (src/gpu/split/;
//! the split over output rows is tested in `limits_rows.rs`),
//! and the optimizer and loss to work in windows of their tensors; a tiny workgroup grid forces
//! every job into many dispatches (`GpuContext::steps`). Results must still match the CPU reference: region maps exactly,
//! outputs within the forward tolerance, gradients within the backward tolerance. The device
//! enforces the requested limits, so a binding over the limit would be a validation error.

use std::sync::Arc;

mod limits_common;
use limits_common::*;

use drconv::internal::gpu::limits;
use drconv::internal::gpu::split::{self, Split};
use drconv::{
    DrConv2d, DrConvConfig, DrConvError, DrConvParams, GpuContext, Mode, OptimizerConfig, ParamId,
    Trainer,
};

/// I = 4, O = 8, k = 3, r = 3, padding 1 on 12 x 12: per sample the training correlation is
/// 13824 bytes, the output 4608, the generated kernel 3456.
fn config() -> DrConvConfig {
    DrConvConfig::new(4, 8, 3, 3)
        .unwrap()
        .with_padding(1)
        .unwrap()
}

/// The default test layer's checks on `B x 4 x 12 x 12`, with one SGD step where `train`.
async fn check_default(ctx: Arc<GpuContext>, batch: usize, train: bool) -> Vec<String> {
    let steps = match train {
        true => vec![(OptimizerConfig::sgd(0.05), 1)],
        false => Vec::new(),
    };
    check_against_cpu(ctx, config(), [batch, 4, 12, 12], &steps).await
}

#[test]
fn batch_split_matches_cpu_with_remainder_chunks() {
    pollster::block_on(async {
        // 28 KiB bindings: training runs 2 + 2 + 1 samples (corr), inference is not split.
        let ctx = small_ctx(28 << 10, 16).await;
        let s = config().forward_shape(&[5, 4, 12, 12]).unwrap();
        assert_eq!(
            split::forward_chunk(ctx.limits(), &config(), &s, Mode::Training).unwrap(),
            2
        );
        assert_eq!(
            split::forward_chunk(ctx.limits(), &config(), &s, Mode::Inference).unwrap(),
            5
        );
        assert_eq!(
            split::backward_chunk(ctx.limits(), &config(), &s).unwrap(),
            2
        );
        let seen = check_default(ctx.clone(), 5, true).await;
        println!("{seen:#?}");
        assert!(seen.contains(&"Training forward split: true".to_string()));
        assert!(seen.contains(&"backward split: true".to_string()));
        ctx.check("end").unwrap();
    });
}

#[test]
fn batch_split_of_one_sample_chunks_and_inference() {
    pollster::block_on(async {
        // 16 KiB: inference 3 + 2 samples (output), training one sample per chunk. The MSE loss
        // binds the 23 KiB output in two windows.
        let ctx = small_ctx(16 << 10, 16).await;
        let s = config().forward_shape(&[5, 4, 12, 12]).unwrap();
        assert_eq!(
            split::forward_chunk(ctx.limits(), &config(), &s, Mode::Inference).unwrap(),
            3
        );
        assert_eq!(
            split::forward_chunk(ctx.limits(), &config(), &s, Mode::Training).unwrap(),
            1
        );
        let seen = check_default(ctx.clone(), 5, true).await;
        assert_all_checked(&ctx, "", &seen);
    });
}

#[test]
fn dispatch_split_over_a_two_by_two_grid_matches_cpu() {
    pollster::block_on(async {
        // At most 2 x 2 workgroups of 64 per dispatch: every job over 256 items is split into
        // several dispatches (Dims::base), each folded into y.
        let ctx = small_ctx(adapter_binding().await, 2).await;
        let seen = check_default(ctx.clone(), 3, true).await;
        println!("{seen:#?}");
        // The same plans have more dispatches than on the default device (jobs over 256 items).
        let wide = small_ctx(adapter_binding().await, 65535).await;
        for mode in [Mode::Inference, Mode::Training] {
            let mut steps = Vec::new();
            for ctx in [&ctx, &wide] {
                let params = DrConvParams::init(config(), 1).unwrap();
                let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
                let x = layer.upload(&random(&[3, 4, 12, 12], 2)).unwrap();
                let plan = layer.plan(&x, mode).await.unwrap();
                assert!(!plan.program.has_copies());
                steps.push(plan.program.len());
            }
            println!(
                "{mode:?}: {} dispatches on the 2 x 2 grid, {} on 65535",
                steps[0], steps[1]
            );
            assert!(steps[0] > steps[1], "{mode:?}: {steps:?}");
        }
        ctx.check("end").unwrap();
    });
}

async fn adapter_binding() -> u64 {
    let instance = drconv::internal::gpu::context::instance(None);
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions::default())
        .await
        .expect("a GPU adapter");
    adapter.limits().max_storage_buffer_binding_size
}

#[test]
fn training_correlation_over_the_binding_splits_over_channels() {
    pollster::block_on(async {
        // 8 KiB: one sample's training correlation (13824 bytes) exceeds one binding, so training
        // runs one sample and 4 of the 8 output channels per sub-plan; inference (no correlation
        // tensor) runs whole samples.
        let ctx = small_ctx(8 << 10, 16).await;
        let s = config().forward_shape(&[2, 4, 12, 12]).unwrap();
        let split = |mode| split::forward_split(ctx.limits(), &config(), &s, mode).unwrap();
        assert_eq!(
            split(Mode::Training),
            Split {
                batch: 1,
                channels: 4,
                rows: 12,
            }
        );
        assert_eq!(
            split(Mode::Inference),
            Split {
                batch: 1,
                channels: 8,
                rows: 12,
            }
        );
        let seen = check_default(ctx.clone(), 2, true).await;
        println!("{seen:#?}");
        assert!(seen.contains(&"backward split: true".to_string()));
        ctx.check("end").unwrap();
    });
}

#[test]
fn what_no_split_can_fit_is_refused_before_allocating() {
    pollster::block_on(async {
        // 8 KiB bindings. A row split needs one output row of one output channel to fit: 4 x 4 x
        // 700 has one output row's input band (3 rows of 4 channels, 33600 bytes) over the
        // binding.
        let ctx = small_ctx(8 << 10, 16).await;
        let params = DrConvParams::init(config(), 3).unwrap();
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let cases = [([1, 4, 4, 700], "`input`", "one output row", 33600)];
        for (shape, tensor, why, size_want) in cases {
            let x = layer.upload(&random(&shape, 4)).unwrap();
            for mode in [Mode::Inference, Mode::Training] {
                let before = live_buffers(&ctx);
                match layer.forward(&x, mode).await {
                    Err(DrConvError::TooLarge { what, size, limit }) => {
                        assert!(what.contains(tensor) && what.contains(why), "{what}");
                        assert_eq!((size, limit), (size_want, 8 << 10), "{what}");
                    }
                    other => panic!("expected TooLarge, got {other:?}"),
                }
                assert_eq!(
                    live_buffers(&ctx),
                    before,
                    "{mode:?}: allocated before refusing"
                );
            }
        }
        ctx.check("end").unwrap();
    });
}

#[test]
fn webgpu_default_limits_split_the_large_layer() {
    // in = out = 256, r = 8, k = 3: 18 MiB of generated kernels per sample, 288 MiB at batch
    // 16, above WebGPU's 128 MiB binding: runs as chunks of 7 samples (7 + 7 + 2).
    let l = wgpu::Limits::default();
    let c = DrConvConfig::new(256, 256, 3, 8)
        .unwrap()
        .with_padding(1)
        .unwrap();
    let s = c.forward_shape(&[16, 256, 32, 32]).unwrap();
    let kernel = limits::TensorSpec::new("kernel", &s.kernel(&c));
    assert_eq!(kernel.bytes(), 16 * 8 * 256 * 256 * 9 * 4);
    assert!(limits::check_forward(&l, &c, &s, Mode::Inference).is_err());
    assert_eq!(
        split::forward_chunk(&l, &c, &s, Mode::Inference).unwrap(),
        7
    );
    assert_eq!(split::forward_chunk(&l, &c, &s, Mode::Training).unwrap(), 7);
    // A 2048 x 2048 image is 4 GiB of input per sample: refused, naming the tensor.
    let s = c.forward_shape(&[1, 256, 2048, 2048]).unwrap();
    match split::forward_chunk(&l, &c, &s, Mode::Inference) {
        Err(DrConvError::TooLarge { what, .. }) => assert!(what.contains("`input`"), "{what}"),
        other => panic!("{other:?}"),
    }
}

/// I = O = 32, k = 3, r = 4, padding 1: one sample's generated kernel is 4*32*32*9*4 = 147456
/// bytes, over a 64 KiB binding (conv_kernel.3's weight is exactly 64 KiB and fits).
fn wide() -> DrConvConfig {
    DrConvConfig::new(32, 32, 3, 4)
        .unwrap()
        .with_padding(1)
        .unwrap()
}

/// Checks the split of `c` on `shape` (the same for both forwards and the backward), then
/// everything against the CPU, and that every plan was split.
async fn check_channel_split(
    ctx: &Arc<GpuContext>,
    c: DrConvConfig,
    shape: [usize; 4],
    want: Split,
    train: &[(OptimizerConfig, usize)],
) {
    let s = c.forward_shape(&shape).unwrap();
    for mode in [Mode::Inference, Mode::Training] {
        let got = split::forward_split(ctx.limits(), &c, &s, mode).unwrap();
        assert_eq!(got, want, "{mode:?} on {shape:?}");
    }
    assert_eq!(split::backward_split(ctx.limits(), &c, &s).unwrap(), want);
    let seen = check_against_cpu(ctx.clone(), c, shape, train).await;
    assert_all_checked(ctx, &format!("{shape:?}"), &seen);
}

#[test]
fn one_sample_over_the_binding_splits_over_output_channels() {
    pollster::block_on(async {
        // 64 KiB bindings, 16 workgroups per dimension: 14 output channels per sub-plan (4608
        // bytes of kernel each), chunks of 14 + 14 + 4, one sample at a time.
        let ctx = small_ctx(64 << 10, 16).await;
        let want = Split {
            batch: 1,
            channels: 14,
            rows: 12,
        };
        let momentum = OptimizerConfig::sgd(0.05).with_momentum(0.9);
        check_channel_split(&ctx, wide(), [1, 32, 12, 12], want, &[(momentum, 2)]).await;
        let adam = OptimizerConfig::adam(0.01);
        check_channel_split(&ctx, wide(), [3, 32, 12, 12], want, &[(adam, 2)]).await;
    });
}

#[test]
fn channel_split_16x16_with_an_output_over_the_binding() {
    pollster::block_on(async {
        // 3 x 32 x 16 x 16: the output (96 KiB, kept whole) is bound by the loss in windows.
        let ctx = small_ctx(64 << 10, 16).await;
        let want = Split {
            batch: 1,
            channels: 14,
            rows: 16,
        };
        let train = [
            (OptimizerConfig::adam(0.01).with_weight_decay(0.01), 2),
            (OptimizerConfig::sgd(0.05), 1),
        ];
        check_channel_split(&ctx, wide(), [3, 32, 16, 16], want, &train).await;
    });
}

#[test]
fn conv_kernel3_over_the_binding_is_split_and_trained_in_windows() {
    pollster::block_on(async {
        // I = O = 48, r = 4: conv_kernel.3's weight is 48*48*4*4*4 = 147456 bytes, its gradient
        // and Adam's moments too: the plans copy it in row slices (9 outputs per sub-plan: 6912
        // bytes of kernel each, chunks 5 x 9 + 3), the optimizer updates it in windows.
        let ctx = small_ctx(64 << 10, 16).await;
        let c = DrConvConfig::new(48, 48, 3, 4)
            .unwrap()
            .with_padding(1)
            .unwrap();
        let w3 = limits::TensorSpec::new("w3", &c.param_shape(ParamId::KernelW3));
        assert_eq!(w3.bytes(), 147456);
        let want = Split {
            batch: 1,
            channels: 9,
            rows: 8,
        };
        let train = [
            (OptimizerConfig::adam(0.01), 2),
            (OptimizerConfig::sgd(0.05).with_momentum(0.9), 2),
        ];
        // 8 x 8 keeps the guide weight's gradient (sums of hundreds of terms up to ~600 with much
        // cancellation) within the f32 tolerance; at 10 x 10 the unsplit plan misses it too.
        check_channel_split(&ctx, c, [2, 48, 8, 8], want, &train).await;
    });
}

#[test]
fn windows_cover_the_tensor_at_aligned_offsets() {
    let l = wgpu::Limits {
        max_storage_buffer_binding_size: 4096,
        min_storage_buffer_offset_alignment: 256,
        ..wgpu::Limits::default()
    };
    assert_eq!(limits::ranges(&l, "t", 1024, 1).unwrap(), vec![(0, 1024)]);
    assert_eq!(
        limits::ranges(&l, "t", 2500, 1).unwrap(),
        vec![(0, 1024), (1024, 1024), (2048, 452)]
    );
    // Whole blocks of 256 elements: 1024 is a multiple already; 384-element blocks give 768.
    assert_eq!(
        limits::ranges(&l, "t", 2000, 384).unwrap(),
        vec![(0, 768), (768, 768), (1536, 464)]
    );
    let tiny = wgpu::Limits {
        max_storage_buffer_binding_size: 128,
        ..l
    };
    match limits::ranges(&tiny, "t", 2000, 1) {
        Err(DrConvError::TooLarge { what, .. }) => assert!(what.contains("`t`"), "{what}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn most_storage_bindings_matches_the_shaders() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let mut counts = Vec::new();
    for shader in drconv::internal::gpu::shaders::ALL {
        let module = naga::front::wgsl::parse_str(&shader.source()).unwrap();
        let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap();
        for (i, ep) in module.entry_points.iter().enumerate() {
            let uses = info.get_entry_point(i);
            let storage = module
                .global_variables
                .iter()
                .filter(|(h, g)| {
                    matches!(g.space, naga::AddressSpace::Storage { .. }) && !uses[*h].is_empty()
                })
                .count() as u32;
            counts.push((format!("{}::{}", shader.name, ep.name), storage));
        }
    }
    // Over the required most: only the generator-and-lists entries, which plans take where the
    // device allows them.
    let (entry, n) = limits::MOST_STORAGE_BINDINGS;
    let over: Vec<_> = counts.iter().filter(|c| c.1 > n).collect();
    let shared = |c: &&(String, u32)| match c.0.as_str() {
        "gen_lists::logits_gen_lists" => c.1 == limits::LOGITS_GEN_LISTS_STORAGE_BINDINGS,
        e => e.starts_with("gen_lists::gen_lists_") && c.1 == limits::GEN_LISTS_STORAGE_BINDINGS,
    };
    assert!(over.iter().all(shared), "{over:?}");
    assert_eq!(over.len(), 4, "{over:?}");
    let most = counts
        .iter()
        .filter(|c| c.1 <= n)
        .map(|c| c.1)
        .max()
        .unwrap();
    assert_eq!(n, most, "{counts:?}");
    assert!(counts.contains(&(entry.to_string(), n)), "{counts:?}");
}

#[test]
fn too_few_storage_buffers_per_stage_is_refused_before_allocating() {
    pollster::block_on(async {
        let instance = drconv::internal::gpu::context::instance(None);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions::default())
            .await
            .expect("a GPU adapter");
        let few = wgpu::Limits {
            max_storage_buffers_per_shader_stage: 4,
            ..adapter.limits()
        };
        let ctx = GpuContext::from_adapter(adapter, Some(few)).await.unwrap();
        let params = DrConvParams::init(config(), 3).unwrap();
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let x = layer.upload(&random(&[1, 4, 12, 12], 4)).unwrap();
        let before = live_buffers(&ctx);
        match layer.forward(&x, Mode::Inference).await {
            Err(DrConvError::TooLarge { what, size, limit }) => {
                assert!(
                    what.contains("max_storage_buffers_per_shader_stage"),
                    "{what}"
                );
                assert_eq!((size, limit), (limits::MOST_STORAGE_BINDINGS.1 as u64, 4));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(live_buffers(&ctx), before);
        let err = Trainer::new(ctx.clone(), &params, OptimizerConfig::adam(0.01))
            .await
            .err()
            .expect("refused");
        assert!(
            err.to_string()
                .contains("max_storage_buffers_per_shader_stage"),
            "{err}"
        );
    });
}

#[test]
fn channel_split_with_several_samples_per_chunk_and_remainders() {
    pollster::block_on(async {
        // k = 1, r = 4, I = 32, O = 40: conv_kernel.3's weight (r*r*I*O f32, 80 KiB) is over
        // the 64 KiB binding whatever the batch, so 32 output channels per sub-plan (32 + 8),
        // and then as many samples as fit: 3 + 2 in training (corr, 18 KiB a sample), 4 + 1 in
        // inference (kernel, 16 KiB a sample).
        let ctx = small_ctx(64 << 10, 16).await;
        let c = DrConvConfig::new(32, 40, 1, 4).unwrap();
        let shape = [5, 32, 6, 6];
        let s = c.forward_shape(&shape).unwrap();
        let split = |batch, channels| Split {
            batch,
            channels,
            rows: 6,
        };
        let l = ctx.limits();
        assert_eq!(
            split::forward_split(l, &c, &s, Mode::Training).unwrap(),
            split(3, 32)
        );
        assert_eq!(
            split::forward_split(l, &c, &s, Mode::Inference).unwrap(),
            split(4, 32)
        );
        assert_eq!(split::backward_split(l, &c, &s).unwrap(), split(3, 32));
        let train = [
            (OptimizerConfig::adam(0.01), 2),
            (OptimizerConfig::sgd(0.05).with_momentum(0.9), 2),
        ];
        let seen = check_against_cpu(ctx.clone(), c, shape, &train).await;
        assert_all_checked(&ctx, "", &seen);
    });
}
