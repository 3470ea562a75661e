//! The plan report's dispatch list (`drconv::internal::gpu::cost`, computed from a plan's
//! decisions without a device) against the steps real plans record, dispatch by dispatch: the
//! same labels, entries, workgroup counts and indirect grids, forward and backward, in both
//! variant families. Keeps `drconv plan` honest as the kernels change.

mod cases;
use cases::{context_with, forced, Case};

use drconv::internal::gpu::cost;
use drconv::internal::gpu::program::Step;
use drconv::{DrConv2d, DrConvParams, Mode};

#[rustfmt::skip]
const CASES: [Case; 6] = [
    Case { i: 8, o: 16, r: 8, batch: 2, h: 10, w: 9, ..Case::K3 },
    Case { i: 3, o: 5, r: 12, stride: 2, h: 11, w: 10, ..Case::K3 },
    Case { i: 8, o: 4, k: 1, r: 3, padding: 0, batch: 3, h: 6, w: 7, ..Case::K3 },
    Case { o: 8, k: 5, r: 2, padding: 2, dilation: 2, h: 12, w: 12, ..Case::K3 },
    // Kernels over 64 KiB: per-region uniform bindings on CPU adapters.
    Case { i: 16, o: 16, batch: 4, h: 12, w: 12, ..Case::K3 },
    Case { i: 8, o: 32, r: 8, batch: 2, ..Case::K3 },
];

/// (label, entry, workgroups, indirect) of every dispatch.
fn recorded(steps: &[Step]) -> Vec<(&'static str, &'static str, u64, bool)> {
    steps
        .iter()
        .filter_map(|s| s.workgroups().map(|(n, ind)| (s.label, s.entry, n, ind)))
        .collect()
}

fn reported(list: &[cost::Dispatch]) -> Vec<(&'static str, &'static str, u64, bool)> {
    list.iter()
        .map(|d| (d.label, d.entry, d.workgroups, d.indirect))
        .collect()
}

#[test]
fn the_report_lists_every_dispatch_the_plans_record() {
    pollster::block_on(async {
        // The adapter's family (CPU on lavapipe), the GPU family, and the CPU family's other
        // correlations and generators.
        for variants in [
            forced(None, None, None),
            forced(Some("gemm"), None, None),
            forced(Some("staged"), None, None),
            forced(Some("direct4"), Some("blocked"), Some("gather")),
            forced(Some("direct"), Some("registers"), None),
        ] {
            let ctx = context_with(variants).await;
            for (n, case) in CASES.iter().enumerate() {
                let config = case.config();
                let params = DrConvParams::init(config, n as u64).unwrap();
                let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
                let x = layer.upload(&case.input(n as u64)).unwrap();
                for mode in [Mode::Inference, Mode::Training] {
                    let plan = layer.plan(&x, mode).await.unwrap();
                    let (d, s) = (plan.decisions, plan.shape);
                    let what = format!("{variants:?} {case:?} {mode:?}: {d}");
                    let want = reported(&cost::forward(&d, &config, &s));
                    assert_eq!(recorded(&plan.program.steps), want, "{what}");
                    if mode == Mode::Training {
                        layer.forward(&x, mode).await.unwrap();
                        let bwd = layer.backward_plan(&x).await.unwrap();
                        let want = reported(&cost::backward(&d, &config, &s));
                        assert_eq!(recorded(&bwd.program.steps), want, "{what}: backward");
                    }
                }
            }
        }
    });
}

#[test]
fn every_dispatch_counts_its_work() {
    let case = CASES[0];
    let config = case.config();
    let s = config.forward_shape(&case.input_shape()).unwrap();
    let target = drconv::internal::gpu::profile::GpuProfile::named("h100")
        .unwrap()
        .target(Default::default());
    let d = drconv::internal::gpu::decide::decide(&target, &config, &s, Mode::Training, true);
    let list = cost::dispatches(&d, &config, &s);
    // Every dispatch moves bytes; the convolutions' FLOPs are exact: 2 B r O I k^2 H'W' for
    // the all-regions correlation, 2 B r I k^2 H'W' for the guide.
    assert!(list.iter().all(|d| d.bytes > 0 && d.workgroups > 0));
    let flops = |label: &str| list.iter().find(|d| d.label == label).unwrap().flops;
    assert_eq!(flops("corr_all_regions"), 2 * 2 * 8 * 16 * 8 * 9 * 90);
    // The GPU family runs the guide beside the pool (B I H W additions).
    assert_eq!(flops("pool_guide"), 2 * 2 * 8 * 8 * 9 * 90 + 2 * 8 * 90);
}

/// The GPU family on an H100 (the `h100` profile: 132 compute units) at every benchmark shape,
/// inference and training (forward and backward): every dispatch over 4 MFLOP launches at least
/// 2 workgroups per compute unit, or is a GEMM in as many K slices as its inner dimension
/// allows; inference takes 3 dispatches, 4 where its correlation runs in K slices.
#[test]
fn the_gpu_family_fills_an_h100_at_every_benchmark_shape() {
    use drconv::internal::bench::plan_report::plan_report;
    use drconv::internal::bench::{ALL_SHAPES, SHAPE_TAGS};
    let p = drconv::internal::gpu::profile::GpuProfile::named("h100").unwrap();
    let target = p.target(Default::default());
    for (tag, shape) in SHAPE_TAGS.iter().zip(ALL_SHAPES) {
        let config = shape.config().unwrap();
        for mode in [Mode::Inference, Mode::Training] {
            let input = shape.input_shape();
            let r = plan_report(&target, Some(&p), (tag, &config, &input), mode).unwrap();
            assert!(r.decisions.contains("correlation=gemm"), "{}", r.decisions);
            assert!(
                r.underfilled.is_empty(),
                "{tag} {mode:?}: {:?} under 2 workgroups per compute unit",
                r.underfilled
            );
            // Inference: pool + guide, logits + generator + lists, correlation, and where the
            // correlation runs in K slices their sum.
            if mode == Mode::Inference {
                let sliced = r.dispatches.iter().any(|d| d.dispatch.entry == "slice_sum");
                let most = 3 + sliced as usize;
                assert!(
                    r.dispatches.len() <= most,
                    "{tag}: {} dispatches",
                    r.dispatches.len()
                );
            }
        }
    }
}
