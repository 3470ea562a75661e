//! Helpers of the small-limits tests (`limits_split.rs`, `limits_rows.rs`): contexts with
//! deliberately small limits and the full check of a layer against the CPU reference.
#![allow(dead_code)]

use std::sync::Arc;

use drconv::verify::compare;
use drconv::verify::{BACKWARD_TOL, FORWARD_TOL};
use drconv::{
    cpu, ContextOptions, DrConv2d, DrConvConfig, DrConvParams, GpuContext, Mode, OptimizerConfig,
    OptimizerState, ParamId, Tensor, Trainer, VariantOverrides,
};

/// A context on the default adapter with its limits, except the binding size and grid width.
pub async fn small_ctx(binding: u64, max_dim: u32) -> Arc<GpuContext> {
    small_ctx_with(binding, max_dim, VariantOverrides::default()).await
}

/// [`small_ctx`] running the `variants` forced.
pub async fn small_ctx_with(
    binding: u64,
    max_dim: u32,
    variants: VariantOverrides,
) -> Arc<GpuContext> {
    let instance = drconv::internal::gpu::context::instance(None);
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions::default())
        .await
        .expect("a GPU adapter");
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: binding,
        max_compute_workgroups_per_dimension: max_dim,
        ..adapter.limits()
    };
    let opts = ContextOptions::default().limits(limits).variants(variants);
    GpuContext::with_options(opts).await.unwrap()
}

pub fn random(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, seed)
}

pub fn close(what: &str, got: &[f32], want: &[f32], tol: (f64, f64)) {
    let (err, ok) = compare(got, want, tol.0, tol.1);
    assert!(ok, "{what}: max error {err:e}");
}

/// Forward (both modes), backward and, for each `(optimizer, steps)` of `train`, that many
/// training steps on `ctx`, each against the CPU reference (the region map exactly). Returns
/// whether each plan was split ("... split: true") and what ran.
pub async fn check_against_cpu(
    ctx: Arc<GpuContext>,
    c: DrConvConfig,
    shape: [usize; 4],
    train: &[(OptimizerConfig, usize)],
) -> Vec<String> {
    let params = DrConvParams::init(c, 21).unwrap();
    let x = random(&shape, 22);
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

    // Backward of the training forward, every gradient poisoned first.
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

    let target_host = random(&want.output.shape, 24);
    let target = ctx.upload("target", &target_host).unwrap();
    for &(opt, steps) in train {
        let mut cpu_params = params.clone();
        let mut state = OptimizerState::new(opt).unwrap();
        let mut trainer = Trainer::new(ctx.clone(), &params, opt).await.unwrap();
        let gx = trainer.layer().upload(&x).unwrap();
        for step in 0..steps {
            let cpu_loss = cpu::train_step(&mut cpu_params, &mut state, &x, &target_host).unwrap();
            let loss = trainer.step(&gx, &target, true).await.unwrap().unwrap();
            assert!(
                (loss - cpu_loss).abs() <= 1e-5 + 1e-4 * cpu_loss.abs(),
                "{opt:?} step {step}: loss {loss} vs {cpu_loss}"
            );
        }
        let after = trainer.params().await.unwrap();
        for id in ParamId::ALL {
            close(
                &format!("{} after {steps} steps of {opt:?}", id.name()),
                after.get(id),
                cpu_params.get(id),
                BACKWARD_TOL,
            );
        }
        seen.push(format!("{steps} steps of {opt:?} match"));
    }
    seen
}

/// Live buffers on the device (wgpu's "counters" feature).
pub fn live_buffers(ctx: &GpuContext) -> isize {
    ctx.device().get_internal_counters().hal.buffers.read()
}

/// Every plan `check_*` reported split as expected ("true") or matched the CPU ("match"), and the
/// device recorded no error.
pub fn assert_all_checked(ctx: &GpuContext, what: &str, seen: &[String]) {
    println!("{what} {seen:#?}");
    assert!(
        seen.iter()
            .all(|s| s.ends_with("true") || s.ends_with("match")),
        "{what} {seen:?}"
    );
    ctx.check("end").unwrap();
}
