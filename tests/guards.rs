//! Every dispatch stays inside its tensors. Vulkan drivers drop out-of-range stores and WebGPU
//! clamps them onto a tensor's last element, so a shader with too many invocations can be right
//! on lavapipe and wrong in a browser (it happened to the backward's kernel transpose). With
//! `GpuContext::set_guard` every tensor gets a sentinel-filled second half that shaders see as
//! part of the binding: forward (both modes) and backward, under every kernel variant, must leave
//! every guard intact and still match the CPU reference (a shader that relied on out-of-range
//! reads returning zero would now read the sentinel, a NaN).

mod cases;
use cases::{context_with, forced, Case};

use drconv::verify::{BACKWARD_TOL, FORWARD_TOL};
use drconv::{cpu, DrConv2d, DrConvParams, Mode};
use drconv::{verify::compare, Tensor};

#[rustfmt::skip]
const CASES: [Case; 6] = [
    Case { i: 8, o: 8, batch: 2, h: 9, w: 9, ..Case::K3 },
    Case { o: 16, r: 8, h: 10, w: 11, ..Case::K3 },
    Case { o: 12, r: 8, stride: 2, h: 11, w: 10, ..Case::K3 },
    Case { i: 3, o: 5, r: 12, batch: 2, h: 7, w: 6, ..Case::K3 },
    Case { i: 8, k: 1, r: 3, padding: 0, batch: 3, h: 6, w: 7, ..Case::K3 },
    Case { o: 8, k: 5, r: 2, padding: 2, dilation: 2, h: 12, w: 12, ..Case::K3 },
];

/// (correlation, kernel generator, backward): the adapter's defaults, then the other entries.
const VARIANTS: [[Option<&str>; 3]; 5] = [
    [None, None, None],
    [Some("gemm"), Some("registers"), None],
    [Some("staged"), Some("blocked"), Some("gather")],
    [Some("direct"), Some("registers"), Some("gather")],
    [Some("direct4"), Some("unrolled_k3"), None],
];

fn close(what: &str, got: &[f32], want: &[f32], tol: (f64, f64)) {
    let (err, ok) = compare(got, want, tol.0, tol.1);
    assert!(ok, "{what}: max error {err:e}");
}

#[test]
fn every_dispatch_stays_inside_its_tensors() {
    pollster::block_on(async {
        for variant in VARIANTS {
            let ctx = context_with(forced(variant[0], variant[1], variant[2])).await;
            ctx.set_guard(true);
            for (n, c) in CASES.iter().enumerate() {
                let config = c.config();
                let what = format!("{variant:?} case {n} {c:?}");
                let params = DrConvParams::init(config, 70 + n as u64).unwrap();
                let x = c.input(n as u64);
                let want = cpu::forward(&params, &x).unwrap();
                let gy = Tensor::randn(&want.output.shape, 80 + n as u64);
                let want_grads = cpu::backward(&params, &x, &want, &gy).unwrap();
                let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
                let xg = layer.upload(&x).unwrap();
                let gyg = ctx.upload("gy", &gy).unwrap();
                for mode in [Mode::Inference, Mode::Training] {
                    layer.plan(&xg, mode).await.unwrap().poison(&ctx);
                    let got = layer.forward_trace(&xg, mode).await.unwrap();
                    assert_eq!(
                        got.region_index, want.region_index,
                        "{what} {mode:?}: regions"
                    );
                    close(
                        &format!("{what} {mode:?}: output"),
                        &got.output.data,
                        &want.output.data,
                        FORWARD_TOL,
                    );
                    for t in layer.plan(&xg, mode).await.unwrap().outputs() {
                        let intact = ctx.guard_intact(t).await.unwrap();
                        assert!(intact, "{what} {mode:?}: a store past {:?}", t.shape());
                    }
                }
                layer.backward_plan(&xg).await.unwrap().poison(&ctx);
                let grads = layer.backward_trace(&xg, &gyg).await.unwrap();
                close(
                    &format!("{what}: grad.x"),
                    &grads.x.data,
                    &want_grads.x.data,
                    BACKWARD_TOL,
                );
                for t in layer.backward_plan(&xg).await.unwrap().outputs() {
                    let intact = ctx.guard_intact(t).await.unwrap();
                    assert!(intact, "{what}: a backward store past {:?}", t.shape());
                }
            }
        }
    });
}
