//! Every golden case's backward on the GPU: forward and all gradients (x, the six parameters and
//! every intermediate, dcorr included) against the PyTorch files, tie cases included, with every
//! forward and gradient buffer poisoned with NaN first.

use drconv::golden::{load_cases, GoldenCase};
use drconv::verify::compare_case;
use drconv::{DrConv2d, GpuContext, Mode};

fn cases() -> Vec<GoldenCase> {
    load_cases(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden")).unwrap()
}

#[test]
fn golden_backward_gpu() {
    pollster::block_on(async {
        let ctx = GpuContext::new()
            .await
            .expect("a GPU adapter (lavapipe on CI)");
        let cases = cases();
        assert_eq!(cases.len(), 10, "README lists 10 cases");
        let mut failures = Vec::new();
        let mut worst_grad = (0.0f64, String::new());
        for case in &cases {
            let gy_host = case.grad_output.as_ref().expect("golden grad_output");
            let mut layer = DrConv2d::new(ctx.clone(), &case.params).unwrap();
            let x = layer.upload(&case.x).unwrap();
            let gy = ctx.upload("grad_output", gy_host).unwrap();
            layer.plan(&x, Mode::Training).await.unwrap().poison(&ctx);
            let trace = layer.forward_trace(&x, Mode::Training).await.unwrap();
            {
                let plan = layer.backward_plan(&x).await.unwrap();
                plan.materialise_corr(&ctx, &case.config).unwrap();
                plan.poison(&ctx);
            }
            let grads = layer.backward_trace(&x, &gy).await.unwrap();
            let report = compare_case(case, &trace, Some(&grads));
            println!("{}", report.summary_line());
            // Every golden tensor must be produced: grad.* included.
            for (name, t) in &report.tensors {
                if t.ok != Some(true) {
                    failures.push(format!("{} {name}: {:?}", case.name, t.max_abs_err));
                }
                if name.starts_with("grad.") {
                    let e = t.max_abs_err.unwrap_or(f64::INFINITY);
                    if e > worst_grad.0 {
                        worst_grad = (e, format!("{} {name}", case.name));
                    }
                }
            }
            assert!(report.tensors.keys().any(|k| k == "grad.inter.corr"));
            if !report.ok {
                failures.push(format!("{} not ok", case.name));
            }
        }
        println!(
            "worst gradient abs error {:.2e} ({})",
            worst_grad.0, worst_grad.1
        );
        assert!(failures.is_empty(), "failures: {failures:#?}");
    });
}

/// `backward` without a training forward of that input is an error, not garbage.
#[test]
fn backward_needs_training_forward() {
    pollster::block_on(async {
        let ctx = GpuContext::new().await.expect("a GPU adapter");
        let case = &cases()[0];
        let mut layer = DrConv2d::new(ctx.clone(), &case.params).unwrap();
        let x = layer.upload(&case.x).unwrap();
        let gy = ctx
            .upload("gy", case.grad_output.as_ref().unwrap())
            .unwrap();
        let err = layer.backward(&x, &gy).await.unwrap_err();
        assert!(err.to_string().contains("training forward"), "{err}");
        // An inference forward does not save what the backward needs either.
        layer.forward(&x, Mode::Inference).await.unwrap();
        assert!(layer.backward(&x, &gy).await.is_err());
        // Wrong grad_output shape names both shapes.
        layer.forward(&x, Mode::Training).await.unwrap();
        let bad = ctx
            .upload("bad", &drconv::Tensor::zeros(&[1, 1, 1, 1]))
            .unwrap();
        let err = layer.backward(&x, &bad).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("grad_output has shape [1, 1, 1, 1]"),
            "{err}"
        );
    });
}
