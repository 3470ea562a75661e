//! The WGSL forward against the CPU reference on seeded random layers and shapes (both paths:
//! training with every intermediate, and the fused inference path), plus chaining two layers in
//! one submission and the plan / pipeline caches. Shapes are small: CI runs on lavapipe, a
//! software Vulkan at about 1 GFLOP/s.

use std::sync::Arc;

use drconv::internal::rng::Rng;
use drconv::verify::FORWARD_TOL;
use drconv::ForwardTrace;
use drconv::{verify::compare, Tensor};
use drconv::{DrConv2d, DrConvConfig, DrConvParams, GpuContext, Mode};

/// Region maps are compared exactly, so every accepted case keeps each pixel's two largest
/// guide values at least this far apart. The GPU sums the guide conv in f32 and the reference in
/// f64; with at most 24 * 7 * 7 products of magnitude <= 1 the f32 reordering error stays below
/// ~4e-5, so a larger gap cannot flip the argmax, and a smaller one legitimately may.
const MIN_GUIDE_GAP: f32 = 1e-4;
/// Multiply-adds per case (correlation over all regions dominates).
const MAX_MACS: usize = 4_000_000;
const RANDOM_CASES: usize = 56;

#[derive(Debug, Clone, Copy)]
struct Case {
    config: DrConvConfig,
    input: [usize; 4],
    seed: u64,
}

fn config(
    i: usize,
    o: usize,
    k: usize,
    r: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> DrConvConfig {
    let c = DrConvConfig {
        in_channels: i,
        out_channels: o,
        kernel_size: k,
        region_num: r,
        stride,
        padding,
        dilation,
    };
    c.validate().unwrap();
    c
}

fn macs(c: &Case) -> usize {
    let s = c.config.forward_shape(&c.input).unwrap();
    let k2 = c.config.kernel_size * c.config.kernel_size;
    s.batch
        * s.out_height
        * s.out_width
        * c.config.region_num
        * (c.config.out_channels + 1)
        * c.config.in_channels
        * k2
}

/// A random case within the brief's ranges, or None when its output would be empty or it is
/// over the compute budget.
fn random_case(seed: u64) -> Option<Case> {
    let mut rng = Rng::new(seed);
    let cfg = config(
        rng.int(1, 24),
        rng.int(1, 24),
        rng.int(1, 7),
        rng.int(1, 16),
        rng.int(1, 3),
        rng.int(0, 3),
        rng.int(1, 2),
    );
    let span = cfg.dilation * (cfg.kernel_size - 1) + 1;
    // Smallest input with a non-empty output (below k when the padding allows it), up to a few
    // more output rows; height and width drawn separately.
    let min = span.saturating_sub(2 * cfg.padding).max(1);
    let mut side = || min + rng.int(0, 6 * cfg.stride);
    let (h, w) = (side(), side());
    let case = Case {
        config: cfg,
        input: [rng.int(1, 4), cfg.in_channels, h, w],
        seed,
    };
    (macs(&case) <= MAX_MACS).then_some(case)
}

/// Edge cases the random draw might miss.
fn fixed_cases() -> Vec<Case> {
    let c = |i, o, k, r, s, p, d, input: [usize; 4]| Case {
        config: config(i, o, k, r, s, p, d),
        input,
        seed: 1000 + input.iter().sum::<usize>() as u64,
    };
    vec![
        c(1, 1, 1, 1, 1, 0, 1, [1, 1, 1, 1]),    // everything 1
        c(3, 2, 7, 16, 1, 3, 1, [2, 3, 1, 2]),   // input smaller than k, r = 16
        c(24, 24, 2, 2, 1, 0, 1, [1, 24, 3, 4]), // 24 channels, even k
        c(4, 5, 4, 3, 3, 1, 2, [4, 4, 9, 13]),   // even k, stride 3, dilation 2, B = 4
        c(2, 3, 3, 4, 2, 3, 2, [1, 2, 1, 1]),    // 1x1 input, all padding
        c(5, 2, 6, 5, 1, 0, 1, [1, 5, 6, 11]),   // even k, output one row high
        c(3, 3, 5, 2, 3, 2, 1, [3, 3, 17, 5]),   // tall, stride 3
    ]
}

fn input_for(case: &Case) -> Tensor {
    let mut rng = Rng::new(case.seed ^ 0xC0FFEE);
    let n = case.input.iter().product();
    Tensor::new(&case.input, rng.normal_vec(n)).unwrap()
}

/// The smallest gap between the two largest guide values of any pixel (infinite for r = 1).
fn min_guide_gap(t: &ForwardTrace) -> f32 {
    let [b, r, ho, wo] = [
        t.guide.shape[0],
        t.guide.shape[1],
        t.guide.shape[2],
        t.guide.shape[3],
    ];
    let mut gap = f32::INFINITY;
    for p in 0..b * ho * wo {
        let (bi, pix) = (p / (ho * wo), p % (ho * wo));
        let mut v: Vec<f32> = (0..r)
            .map(|g| t.guide.data[(bi * r + g) * ho * wo + pix])
            .collect();
        v.sort_by(|a, b| b.total_cmp(a));
        if r > 1 {
            gap = gap.min(v[0] - v[1]);
        }
    }
    gap
}

fn context() -> Arc<GpuContext> {
    pollster::block_on(GpuContext::new()).expect("a GPU adapter (lavapipe on CI)")
}

/// Compares a GPU trace with the CPU one; returns one message per mismatching tensor.
fn mismatches(gpu: &ForwardTrace, cpu: &ForwardTrace) -> Vec<String> {
    let mut bad = Vec::new();
    let cpu_named = cpu.named();
    for (name, got) in gpu.named() {
        let Some((_, want)) = cpu_named.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let (err, ok) = compare(&got.data, &want.data, FORWARD_TOL.0, FORWARD_TOL.1);
        if !ok || got.shape != want.shape {
            bad.push(format!(
                "{name}: max abs err {err:e}, shapes {:?} / {:?}",
                got.shape, want.shape
            ));
        }
    }
    let flips = gpu
        .region_index
        .iter()
        .zip(&cpu.region_index)
        .filter(|(a, b)| a != b)
        .count();
    if flips > 0 || gpu.region_index.len() != cpu.region_index.len() {
        bad.push(format!("region_index: {flips} pixels differ"));
    }
    bad
}

#[test]
fn random_layers_match_cpu_forward() {
    let ctx = context();
    let mut cases = fixed_cases();
    let mut seed = 0;
    let mut rejected_gap = 0;
    while cases.len() < fixed_cases().len() + RANDOM_CASES {
        seed += 1;
        if let Some(c) = random_case(seed) {
            cases.push(c);
        }
    }
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    let start = std::time::Instant::now();
    for case in &cases {
        let params = DrConvParams::init(case.config, case.seed).unwrap();
        let x = input_for(case);
        let cpu = drconv::cpu::forward(&params, &x).unwrap();
        if min_guide_gap(&cpu) < MIN_GUIDE_GAP {
            rejected_gap += 1;
            continue;
        }
        pollster::block_on(async {
            let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
            let xg = layer.upload(&x).unwrap();
            for mode in [Mode::Training, Mode::Inference] {
                layer.plan(&xg, mode).await.unwrap().poison(&ctx);
                let gpu = layer.forward_trace(&xg, mode).await.unwrap();
                assert_eq!(gpu.corr.is_some(), mode == Mode::Training);
                for m in mismatches(&gpu, &cpu) {
                    failures.push(format!("{case:?} {mode:?}: {m}"));
                }
            }
        });
        checked.push(*case);
    }
    println!(
        "{} cases ({} rejected for a guide gap < {MIN_GUIDE_GAP}) in {:.2?}",
        checked.len(),
        rejected_gap,
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked.len() >= 50,
        "only {} cases survived the gap filter",
        checked.len()
    );

    // The draw must actually reach the ranges it claims to cover.
    let any = |f: &dyn Fn(&Case) -> bool| checked.iter().any(f);
    let c = |case: &Case| case.config;
    let coverage = [
        ("k even", any(&|x| c(x).kernel_size % 2 == 0)),
        ("k = 7", any(&|x| c(x).kernel_size == 7)),
        ("k = 1", any(&|x| c(x).kernel_size == 1)),
        ("r = 1", any(&|x| c(x).region_num == 1)),
        ("r >= 12", any(&|x| c(x).region_num >= 12)),
        ("stride 3", any(&|x| c(x).stride == 3)),
        ("dilation 2", any(&|x| c(x).dilation == 2)),
        ("padding 3", any(&|x| c(x).padding == 3)),
        ("B = 4", any(&|x| x.input[0] == 4)),
        (
            "24 channels",
            any(&|x| c(x).in_channels == 24 || c(x).out_channels == 24),
        ),
        (
            "H or W < k",
            any(&|x| x.input[2].min(x.input[3]) < c(x).kernel_size),
        ),
        ("H != W", any(&|x| x.input[2] != x.input[3])),
    ];
    let missing: Vec<_> = coverage
        .iter()
        .filter(|(_, hit)| !hit)
        .map(|(n, _)| n)
        .collect();
    assert!(missing.is_empty(), "no checked case covers {missing:?}");
}

#[test]
fn two_layers_chain_in_one_submission() {
    let ctx = context();
    let c1 = config(3, 5, 3, 4, 1, 1, 1);
    let c2 = config(5, 4, 3, 2, 2, 1, 1);
    let p1 = DrConvParams::init(c1, 11).unwrap();
    let p2 = DrConvParams::init(c2, 12).unwrap();
    let x = input_for(&Case {
        config: c1,
        input: [2, 3, 9, 7],
        seed: 13,
    });
    let cpu1 = drconv::cpu::forward(&p1, &x).unwrap();
    let cpu2 = drconv::cpu::forward(&p2, &cpu1.output).unwrap();
    // Layer 2 reads layer 1's GPU output, which differs from the CPU's by rounding; the exact
    // region map comparison needs clear winners in both layers.
    assert!(min_guide_gap(&cpu1) >= MIN_GUIDE_GAP && min_guide_gap(&cpu2) >= MIN_GUIDE_GAP);

    pollster::block_on(async {
        let mut l1 = DrConv2d::new(ctx.clone(), &p1).unwrap();
        let mut l2 = DrConv2d::new(ctx.clone(), &p2).unwrap();
        let xg = l1.upload(&x).unwrap();
        let y1 = l1.plan(&xg, Mode::Inference).await.unwrap().output.clone();
        l1.plan(&xg, Mode::Inference).await.unwrap().poison(&ctx);
        l2.plan(&y1, Mode::Inference).await.unwrap().poison(&ctx);

        let mut encoder = ctx.encoder("two layers");
        let y1_enc = l1
            .encode_forward(&mut encoder, &xg, Mode::Inference)
            .await
            .unwrap();
        assert_eq!(
            y1_enc.buffer(),
            y1.buffer(),
            "encode_forward must reuse the poisoned plan"
        );
        let y2 = l2
            .encode_forward(&mut encoder, &y1_enc, Mode::Inference)
            .await
            .unwrap();
        ctx.submit(encoder).await.unwrap();

        let got = y2.read(&ctx).await.unwrap();
        assert_eq!(got.shape, cpu2.output.shape);
        let (err, ok) = compare(&got.data, &cpu2.output.data, FORWARD_TOL.0, FORWARD_TOL.1);
        assert!(
            ok,
            "chained output differs from cpu forward(forward(x)): max abs err {err:e}"
        );
        let l1_out = y1.read(&ctx).await.unwrap();
        let (err, ok) = compare(
            &l1_out.data,
            &cpu1.output.data,
            FORWARD_TOL.0,
            FORWARD_TOL.1,
        );
        assert!(ok, "layer 1 output: max abs err {err:e}");
    });
}

#[test]
fn repeated_forwards_reuse_plans_and_pipelines() {
    let ctx = context();
    let cfg = config(4, 3, 3, 3, 1, 1, 1);
    let params = DrConvParams::init(cfg, 21).unwrap();
    let x = input_for(&Case {
        config: cfg,
        input: [1, 4, 6, 5],
        seed: 22,
    });
    pollster::block_on(async {
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let xg = layer.upload(&x).unwrap();
        let first = layer.forward(&xg, Mode::Training).await.unwrap();
        let first_inf = layer.forward(&xg, Mode::Inference).await.unwrap();
        let pipelines = ctx.pipelines().len();
        assert!(pipelines > 0);
        let reference = first.read(&ctx).await.unwrap();
        for _ in 0..3 {
            // A new plan would allocate a new output buffer.
            let again = layer.forward(&xg, Mode::Training).await.unwrap();
            assert_eq!(
                again.buffer(),
                first.buffer(),
                "same input and mode must reuse the plan"
            );
            let again_inf = layer.forward(&xg, Mode::Inference).await.unwrap();
            assert_eq!(again_inf.buffer(), first_inf.buffer());
            assert_ne!(
                again_inf.buffer(),
                again.buffer(),
                "modes have separate plans"
            );
            assert_eq!(
                again.read(&ctx).await.unwrap(),
                reference,
                "repeat must be bitwise identical"
            );
        }
        assert_eq!(
            ctx.pipelines().len(),
            pipelines,
            "repeated forwards compiled new pipelines"
        );

        // A second input buffer of the same shape reuses the plan (plans are keyed by shape);
        // a second layer shares the compiled pipelines.
        let built = layer.plans_built();
        let xg2 = layer.upload(&x).unwrap();
        let other = layer.forward(&xg2, Mode::Training).await.unwrap();
        assert_eq!(other.buffer(), first.buffer());
        assert_eq!(
            layer.plans_built(),
            built,
            "a new buffer of a seen shape built a plan"
        );
        assert_eq!(other.read(&ctx).await.unwrap(), reference);
        let mut layer2 = DrConv2d::new(ctx.clone(), &params).unwrap();
        layer2.forward(&xg, Mode::Training).await.unwrap();
        assert_eq!(
            ctx.pipelines().len(),
            pipelines,
            "a second layer recompiled pipelines"
        );
    });
}

/// Exact guide ties (a guide channel duplicated, and an all-zero guide) resolve to the first
/// maximal region on every guide kernel: scalar (I = 3) and channel-last vec4 (I = 8, CPU
/// adapters), r <= 4 and r > 4, both modes.
#[test]
fn guide_ties_pick_the_first_region_on_every_guide_kernel() {
    let ctx = context();
    pollster::block_on(async {
        // Dilation 2 keeps r <= 4 on the channel-last guide's general entry; dilation 1 there
        // takes its runs of 8 pixels (`guide_argmax4_channel_last_k3`).
        for (i, r, dil) in [(3, 4, 1), (8, 4, 1), (8, 4, 2), (8, 6, 1)] {
            let c = DrConvConfig::new(i, 4, 3, r)
                .unwrap()
                .with_padding(dil)
                .unwrap()
                .with_dilation(dil)
                .unwrap();
            for zero in [false, true] {
                let mut params = DrConvParams::init(c, 7).unwrap();
                let row = i * 9;
                let w = params.get_mut(drconv::ParamId::GuideW);
                if zero {
                    w.iter_mut().for_each(|v| *v = 0.0);
                } else {
                    // Region 2 copies region 1: wherever they lead, 1 must win.
                    let (a, b) = w.split_at_mut(2 * row);
                    b[..row].copy_from_slice(&a[row..2 * row]);
                }
                let bias = params.get_mut(drconv::ParamId::GuideB);
                if zero {
                    bias.iter_mut().for_each(|v| *v = 0.0);
                } else {
                    bias[2] = bias[1];
                }
                let x = Tensor::randn(&[1, i, 9, 9], 8);
                let cpu = drconv::cpu::forward(&params, &x).unwrap();
                let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
                let xg = layer.upload(&x).unwrap();
                for mode in [Mode::Inference, Mode::Training] {
                    let gpu = layer.forward_trace(&xg, mode).await.unwrap();
                    let what =
                        format!("I = {i}, r = {r}, dilation {dil}, zero guide {zero}, {mode:?}");
                    assert_eq!(gpu.region_index, cpu.region_index, "{what}");
                    let ties = if zero {
                        gpu.region_index.iter().all(|&g| g == 0)
                    } else {
                        gpu.region_index.contains(&1) && !gpu.region_index.contains(&2)
                    };
                    assert!(ties, "{what}: {:?}", gpu.region_index);
                }
            }
        }
    });
}
