//! The golden suite on wgpu's GL backend, requested explicitly (on CI: Mesa llvmpipe through
//! EGL, headless, GL 4.5 core). Training forward with every intermediate, backward with every
//! gradient, and the fused inference path, all buffers poisoned with NaN first.
//!
//! No GL adapter is a failure, so CI cannot pass without testing GL. On a developer machine
//! without Mesa's EGL (libegl1 libegl-mesa0 libgl1-mesa-dri) set `DRCONV_SKIP_GL=1` to skip.

use std::sync::Arc;

use drconv::golden::{list_cases, GoldenCase};
use drconv::verify::compare;
use drconv::verify::{compare_case, FORWARD_TOL};
use drconv::{ContextOptions, DrConv2d, GpuContext, Mode};

fn gl_context() -> Option<Arc<GpuContext>> {
    let opts = ContextOptions::default().backends(wgpu::Backends::GL);
    match pollster::block_on(GpuContext::with_options(opts)) {
        Ok(ctx) => {
            assert_eq!(ctx.info().backend, wgpu::Backend::Gl, "asked for GL, got {:?}", ctx.info());
            Some(ctx)
        }
        Err(e) if std::env::var("DRCONV_SKIP_GL").as_deref() == Ok("1") => {
            eprintln!("DRCONV_SKIP_GL=1: skipping the GL suite ({e})");
            None
        }
        Err(e) => panic!(
            "no GL adapter: {e}\nInstall Mesa's EGL and GL drivers (Debian: apt-get install libegl1 \
             libegl-mesa0 libgl1-mesa-dri) or set DRCONV_SKIP_GL=1 to skip this suite"
        ),
    }
}

// One test, one GL context for every case.
#[test]
fn golden_cases_on_gl() {
    let Some(ctx) = gl_context() else { return };
    eprintln!("GL adapter: {:?}", ctx.summary());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    let cases: Vec<GoldenCase> = list_cases(root)
        .unwrap()
        .into_iter()
        .map(|d| GoldenCase::load(d).unwrap())
        .collect();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    pollster::block_on(async {
        for case in &cases {
            let mut layer = DrConv2d::new(ctx.clone(), &case.params).unwrap();
            let x = layer.upload(&case.x).unwrap();
            let gy = ctx
                .upload("grad_output", case.grad_output.as_ref().unwrap())
                .unwrap();

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
            // Every golden tensor, gradients included, must be produced and in tolerance.
            failures.extend(
                report
                    .tensors
                    .iter()
                    .filter(|(_, t)| t.ok != Some(true))
                    .map(|(name, t)| format!("{} {name}: {:?}", case.name, t.max_abs_err)),
            );

            layer.plan(&x, Mode::Inference).await.unwrap().poison(&ctx);
            let fused = layer.forward_trace(&x, Mode::Inference).await.unwrap();
            let gold = case.tensor("output").unwrap();
            let (err, ok) = compare(&fused.output.data, &gold.data, FORWARD_TOL.0, FORWARD_TOL.1);
            if !ok || Some(&fused.region_index) != case.region_index.as_ref() {
                failures.push(format!(
                    "{} fused inference output: max abs err {err:e}",
                    case.name
                ));
            }
        }
    });
    assert!(failures.is_empty(), "GL failures:\n{}", failures.join("\n"));
}
