//! Plans on devices with deliberately small limits: tiny storage bindings force the split over
//! the batch (src/gpu/split.rs), a tiny workgroup grid forces every job into many dispatches
//! (`GpuContext::steps`). Results must still match the CPU reference: region maps exactly,
//! outputs within the forward tolerance, gradients within the backward tolerance. The device
//! enforces the requested limits, so a binding over the limit would be a validation error.

use std::sync::Arc;

use drconv::gpu::limits;
use drconv::tensor::compare;
use drconv::verify::{BACKWARD_TOL, FORWARD_TOL};
use drconv::{
    cpu, DrConv2d, DrConvConfig, DrConvError, DrConvParams, GpuContext, Mode, OptimizerConfig,
    OptimizerState, ParamId, Tensor, Trainer,
};

/// A context on the default adapter with its limits, except the binding size and grid width.
async fn small_ctx(binding: u64, max_dim: u32) -> Arc<GpuContext> {
    let instance = drconv::gpu::context::instance(None);
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions::default())
        .await
        .expect("a GPU adapter");
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: binding,
        max_compute_workgroups_per_dimension: max_dim,
        ..adapter.limits()
    };
    GpuContext::from_adapter(adapter, Some(limits))
        .await
        .unwrap()
}

/// I = 4, O = 8, k = 3, r = 3, padding 1 on 12 x 12: per sample the training correlation is
/// 13824 bytes, the output 4608, the generated kernel 3456.
fn config() -> DrConvConfig {
    DrConvConfig::new(4, 8, 3, 3)
        .unwrap()
        .with_padding(1)
        .unwrap()
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, seed)
}

fn close(what: &str, got: &[f32], want: &[f32], tol: (f64, f64)) {
    let (err, ok) = compare(got, want, tol.0, tol.1);
    assert!(ok, "{what}: max error {err:e}");
}

/// Forward (both modes), backward and, where `train`, one SGD step on `ctx`, each against the
/// CPU reference. Returns the sample count per chunk of each plan (None: not split).
async fn check_against_cpu(ctx: Arc<GpuContext>, batch: usize, train: bool) -> Vec<String> {
    let c = config();
    let params = DrConvParams::init(c, 21).unwrap();
    let x = random(&[batch, 4, 12, 12], 22);
    let want = cpu::forward(&params, &x).unwrap();
    let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
    let gx = layer.upload(&x).unwrap();
    let mut seen = Vec::new();
    for mode in [Mode::Inference, Mode::Training] {
        let plan = layer.plan(&gx, mode).await.unwrap();
        plan.poison(&ctx);
        seen.push(format!(
            "{mode:?} forward split: {}",
            plan.program.has_copies()
        ));
        let y = layer.forward(&gx, mode).await.unwrap();
        let got = y.read(&ctx).await.unwrap();
        close(
            &format!("{mode:?} output"),
            &got.data,
            &want.output.data,
            FORWARD_TOL,
        );
        let plan = layer.plan(&gx, mode).await.unwrap();
        let region = plan.region.read_i32(&ctx).await.unwrap();
        assert_eq!(region, want.region_index, "{mode:?} region map");
        let guide = plan.guide.read(&ctx).await.unwrap();
        close(
            &format!("{mode:?} guide"),
            &guide.data,
            &want.guide.data,
            FORWARD_TOL,
        );
    }

    // Backward of the training forward.
    let gy_host = random(&want.output.shape, 23);
    let grads_want = cpu::backward(&params, &x, &want, &gy_host).unwrap();
    let gy = ctx.upload("gy", &gy_host).unwrap();
    layer.forward(&gx, Mode::Training).await.unwrap();
    let bwd = layer.backward_plan(&gx).await.unwrap();
    bwd.poison(&ctx);
    seen.push(format!("backward split: {}", bwd.program.has_copies()));
    let grads = layer.backward(&gx, &gy).await.unwrap();
    let dx = grads.x.read(&ctx).await.unwrap();
    close("grad.x", &dx.data, &grads_want.x.data, BACKWARD_TOL);
    for id in ParamId::ALL {
        let got = grads.params[id.index()].read(&ctx).await.unwrap();
        close(
            id.name(),
            &got.data,
            &grads_want.params[id.index()],
            BACKWARD_TOL,
        );
    }

    if train {
        let target_host = random(&want.output.shape, 24);
        let opt = OptimizerConfig::sgd(0.05);
        let mut cpu_params = params.clone();
        let mut state = OptimizerState::new(opt).unwrap();
        let cpu_loss = cpu::train_step(&mut cpu_params, &mut state, &x, &target_host).unwrap();
        let mut trainer = Trainer::new(ctx.clone(), &params, opt).await.unwrap();
        let target = ctx.upload("target", &target_host).unwrap();
        let loss = trainer.step(&gx, &target, true).await.unwrap().unwrap();
        assert!(
            (loss - cpu_loss).abs() <= 1e-5 + 1e-4 * cpu_loss.abs(),
            "{loss} vs {cpu_loss}"
        );
        let after = trainer.params().await.unwrap();
        for id in ParamId::ALL {
            close(
                &format!("{} after a step", id.name()),
                after.get(id),
                cpu_params.get(id),
                BACKWARD_TOL,
            );
        }
        seen.push("training step matches".into());
    }
    seen
}

#[test]
fn batch_split_matches_cpu_with_remainder_chunks() {
    pollster::block_on(async {
        // 28 KiB bindings: training runs 2 + 2 + 1 samples (corr), inference is not split.
        let ctx = small_ctx(28 << 10, 16).await;
        let s = config().forward_shape(&[5, 4, 12, 12]).unwrap();
        assert_eq!(
            limits::forward_chunk(&ctx.limits, &config(), &s, Mode::Training).unwrap(),
            2
        );
        assert_eq!(
            limits::forward_chunk(&ctx.limits, &config(), &s, Mode::Inference).unwrap(),
            5
        );
        assert_eq!(
            limits::backward_chunk(&ctx.limits, &config(), &s).unwrap(),
            2
        );
        let seen = check_against_cpu(ctx.clone(), 5, true).await;
        println!("{seen:#?}");
        assert!(seen.contains(&"Training forward split: true".to_string()));
        assert!(seen.contains(&"backward split: true".to_string()));
        ctx.check("end").unwrap();
    });
}

#[test]
fn batch_split_of_one_sample_chunks_and_inference() {
    pollster::block_on(async {
        // 16 KiB: inference 3 + 2 samples (output), training one sample per chunk.
        let ctx = small_ctx(16 << 10, 16).await;
        let s = config().forward_shape(&[5, 4, 12, 12]).unwrap();
        assert_eq!(
            limits::forward_chunk(&ctx.limits, &config(), &s, Mode::Inference).unwrap(),
            3
        );
        assert_eq!(
            limits::forward_chunk(&ctx.limits, &config(), &s, Mode::Training).unwrap(),
            1
        );
        // The loss binds the whole output (23 KiB), so no training step at this limit.
        let seen = check_against_cpu(ctx.clone(), 5, false).await;
        println!("{seen:#?}");
        assert!(seen.iter().all(|s| s.ends_with("true")), "{seen:?}");
        let params = DrConvParams::init(config(), 5).unwrap();
        let mut trainer = Trainer::new(ctx.clone(), &params, OptimizerConfig::sgd(0.1))
            .await
            .unwrap();
        let x = ctx.upload("x", &random(&[5, 4, 12, 12], 6)).unwrap();
        let t = ctx.upload("t", &random(&[5, 8, 12, 12], 7)).unwrap();
        match trainer.step(&x, &t, true).await {
            Err(DrConvError::TooLarge { what, .. }) => assert!(what.contains("MSE"), "{what}"),
            other => panic!("expected TooLarge from the loss, got {other:?}"),
        }
        ctx.check("end").unwrap();
    });
}

#[test]
fn dispatch_split_over_a_two_by_two_grid_matches_cpu() {
    pollster::block_on(async {
        // At most 2 x 2 workgroups of 64 per dispatch: every job over 256 items is split into
        // several dispatches (Dims::base), each folded into y.
        let ctx = small_ctx(adapter_binding().await, 2).await;
        let seen = check_against_cpu(ctx.clone(), 3, true).await;
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
    let instance = drconv::gpu::context::instance(None);
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions::default())
        .await
        .expect("a GPU adapter");
    adapter.limits().max_storage_buffer_binding_size
}

#[test]
fn what_no_batch_split_can_fit_is_refused_before_allocating() {
    pollster::block_on(async {
        // 8 KiB: one sample's training correlation (13824 bytes) cannot fit one binding.
        let ctx = small_ctx(8 << 10, 16).await;
        let params = DrConvParams::init(config(), 3).unwrap();
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let x = layer.upload(&random(&[2, 4, 12, 12], 4)).unwrap();
        match layer.forward(&x, Mode::Training).await {
            Err(DrConvError::TooLarge { what, size, limit }) => {
                assert!(
                    what.contains("`corr`") && what.contains("one sample"),
                    "{what}"
                );
                assert_eq!((size, limit), (13824, 8 << 10));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        // Inference has no correlation tensor: it runs, one sample at a time.
        let y = layer.forward(&x, Mode::Inference).await.unwrap();
        let want = cpu::forward(&params, &x.read(&ctx).await.unwrap()).unwrap();
        close(
            "output",
            &y.read(&ctx).await.unwrap().data,
            &want.output.data,
            FORWARD_TOL,
        );
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
        limits::forward_chunk(&l, &c, &s, Mode::Inference).unwrap(),
        7
    );
    assert_eq!(
        limits::forward_chunk(&l, &c, &s, Mode::Training).unwrap(),
        7
    );
    // A 2048 x 2048 image is 4 GiB of input per sample: refused, naming the tensor.
    let s = c.forward_shape(&[1, 256, 2048, 2048]).unwrap();
    match limits::forward_chunk(&l, &c, &s, Mode::Inference) {
        Err(DrConvError::TooLarge { what, .. }) => assert!(what.contains("`input`"), "{what}"),
        other => panic!("{other:?}"),
    }
}
