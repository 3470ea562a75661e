//! Every golden case on the GPU (whatever adapter wgpu picks; `WGPU_BACKEND=gl` for GL), both the
//! training path (all regions) and the fused inference path, outputs poisoned with NaN first.

use drconv::golden::{load_cases, GoldenCase};
use drconv::verify::{compare_case, FORWARD_TOL};
use drconv::{DrConv2d, GpuContext, Mode};

fn cases() -> Vec<GoldenCase> {
    load_cases(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden")).unwrap()
}

#[test]
fn golden_forward_gpu() {
    pollster::block_on(async {
        let ctx = GpuContext::new()
            .await
            .expect("a GPU adapter (lavapipe on CI)");
        let mut failures = Vec::new();
        for case in cases() {
            let mut layer = DrConv2d::new(ctx.clone(), &case.params).unwrap();
            let x = layer.upload(&case.x).unwrap();
            // Training path: every intermediate, corr included.
            layer.plan(&x, Mode::Training).await.unwrap().poison(&ctx);
            let trace = layer.forward_trace(&x, Mode::Training).await.unwrap();
            let report = compare_case(&case, &trace, None);
            println!("{}", report.summary_line());
            for (name, t) in &report.tensors {
                if t.ok == Some(false) {
                    failures.push(format!("{} {name} (training path)", case.name));
                }
            }
            // Fused inference path: same output and region map, no corr tensor.
            layer.plan(&x, Mode::Inference).await.unwrap().poison(&ctx);
            let fused = layer.forward_trace(&x, Mode::Inference).await.unwrap();
            assert!(fused.corr.is_none());
            let gold = case.tensor("output").unwrap();
            let (err, ok) = drconv::verify::compare(
                &fused.output.data,
                &gold.data,
                FORWARD_TOL.0,
                FORWARD_TOL.1,
            );
            if !ok || Some(&fused.region_index) != case.region_index.as_ref() {
                failures.push(format!("{} fused output err {err:e}", case.name));
            }
        }
        assert!(failures.is_empty(), "failures: {failures:#?}");
    });
}
