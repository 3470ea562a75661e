//! The GPU backward against the CPU reference on seeded random configurations: batch 1-4,
//! channels 1-24, kernel 1-7 (even sizes included), regions 1-16, stride 1-3, dilation 1-2,
//! padding 0-3, non-square inputs, inputs smaller than the kernel. Every gradient (x, the six
//! parameters, every intermediate) must be within the golden backward tolerance.
//!
//! f32 (GPU) and f64-accumulated (CPU) guides can order a near-tie differently, so inputs whose
//! CPU guide has a top-2 gap below 1e-4 anywhere are redrawn; the region maps must then agree.

use std::collections::BTreeMap;

use drconv::cpu;
use drconv::internal::rng::Rng;
use drconv::verify::BACKWARD_TOL;
use drconv::{DrConv2d, DrConvConfig, DrConvParams, ForwardTrace, GpuContext, Mode, Tensor};

const CONFIGS: usize = 60;
/// Multiply-adds of the all-region correlation per configuration (lavapipe does ~1 GFLOP/s).
const MAX_WORK: usize = 300_000;

struct Case {
    params: DrConvParams,
    x: Tensor,
    gy: Tensor,
    trace: ForwardTrace,
}

fn random_config(rng: &mut Rng) -> (DrConvConfig, [usize; 4]) {
    loop {
        let c = DrConvConfig {
            in_channels: rng.int(1, 24),
            out_channels: rng.int(1, 24),
            kernel_size: rng.int(1, 7),
            region_num: rng.int(1, 16),
            stride: rng.int(1, 3),
            padding: rng.int(0, 3),
            dilation: rng.int(1, 2),
        };
        let shape = [rng.int(1, 4), c.in_channels, rng.int(1, 14), rng.int(1, 14)];
        let Ok(s) = c.forward_shape(&shape) else {
            continue;
        };
        let work = s.batch
            * c.region_num
            * c.in_channels
            * c.out_channels
            * c.kernel_size.pow(2)
            * s.out_height
            * s.out_width;
        if work <= MAX_WORK {
            return (c, shape);
        }
    }
}

/// Smallest gap between the largest and second-largest guide channel over all positions.
fn min_top2_gap(trace: &ForwardTrace, r: usize) -> f32 {
    if r < 2 {
        return f32::INFINITY;
    }
    let hw = trace.shape.out_height * trace.shape.out_width;
    let mut gap = f32::INFINITY;
    for b in 0..trace.shape.batch {
        for p in 0..hw {
            let mut v: Vec<f32> = (0..r)
                .map(|g| trace.guide.data[(b * r + g) * hw + p])
                .collect();
            v.sort_by(|a, b| b.total_cmp(a));
            gap = gap.min(v[0] - v[1]);
        }
    }
    gap
}

fn make_case(rng: &mut Rng, seed: u64) -> Case {
    loop {
        let (c, shape) = random_config(rng);
        let params = DrConvParams::init(c, seed).unwrap();
        for _ in 0..5 {
            let n: usize = shape.iter().product();
            let x = Tensor::new(&shape, rng.normal_vec(n)).unwrap();
            let trace = cpu::forward(&params, &x).unwrap();
            if min_top2_gap(&trace, c.region_num) < 1e-4 {
                continue;
            }
            let gy =
                Tensor::new(&trace.output.shape, rng.normal_vec(trace.output.numel())).unwrap();
            return Case {
                params,
                x,
                gy,
                trace,
            };
        }
    }
}

/// Largest `|a - b| / (atol + rtol |b|)`: at most 1 means within tolerance.
fn tolerance_used(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (atol, rtol) = BACKWARD_TOL;
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let err = (x as f64 - y as f64).abs();
            if err.is_nan() {
                f64::INFINITY
            } else {
                err / (atol + rtol * (y as f64).abs())
            }
        })
        .fold(0.0, f64::max)
}

#[test]
fn gpu_backward_matches_cpu_on_random_configs() {
    pollster::block_on(async {
        let ctx = GpuContext::new()
            .await
            .expect("a GPU adapter (lavapipe on CI)");
        let mut rng = Rng::new(0xD2C0);
        let mut worst: BTreeMap<String, (f64, String)> = BTreeMap::new();
        let mut failures = Vec::new();
        let mut seen = BTreeMap::<&str, usize>::new();
        for n in 0..CONFIGS {
            let case = make_case(&mut rng, 7000 + n as u64);
            let c = case.params.config;
            let s = case.trace.shape;
            let label = format!(
                "#{n} B{} I{} O{} k{} r{} s{} p{} d{} {}x{}",
                s.batch,
                c.in_channels,
                c.out_channels,
                c.kernel_size,
                c.region_num,
                c.stride,
                c.padding,
                c.dilation,
                s.height,
                s.width
            );
            for (what, hit) in [
                ("even k", c.kernel_size.is_multiple_of(2)),
                ("stride > 1", c.stride > 1),
                ("dilation 2", c.dilation == 2),
                (
                    "input smaller than k",
                    s.height < c.kernel_size || s.width < c.kernel_size,
                ),
                ("non-square", s.height != s.width),
                ("r >= 8", c.region_num >= 8),
                ("batch > 1", s.batch > 1),
            ] {
                *seen.entry(what).or_default() += hit as usize;
            }
            let want = cpu::backward(&case.params, &case.x, &case.trace, &case.gy).unwrap();

            let mut layer = DrConv2d::new(ctx.clone(), &case.params).unwrap();
            let x = layer.upload(&case.x).unwrap();
            let gy = ctx.upload("grad_output", &case.gy).unwrap();
            layer.plan(&x, Mode::Training).await.unwrap().poison(&ctx);
            let fwd = layer.forward_trace(&x, Mode::Training).await.unwrap();
            assert_eq!(
                fwd.region_index, case.trace.region_index,
                "{label}: region maps differ"
            );
            layer.backward_plan(&x).await.unwrap().poison(&ctx);
            let got = layer.backward_trace(&x, &gy).await.unwrap();

            let want_named: BTreeMap<String, Tensor> = want.named().into_iter().collect();
            for (name, t) in got.named() {
                let used = tolerance_used(&t.data, &want_named[&name].data);
                if used > 1.0 {
                    failures.push(format!("{label} {name}: {used:.2} x tolerance"));
                }
                let w = worst.entry(name).or_insert((0.0, String::new()));
                if used > w.0 {
                    *w = (used, label.clone());
                }
            }
        }
        for (name, (used, label)) in &worst {
            println!("{name:<34} worst {used:.3} of tolerance ({label})");
        }
        println!("coverage: {seen:?}");
        assert!(failures.is_empty(), "failures: {failures:#?}");
        for (what, count) in &seen {
            assert!(*count >= 3, "only {count} configurations with {what}");
        }
    });
}
