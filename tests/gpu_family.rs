//! The GPU family (the GEMM correlation and kernel gradient with their K slices, the split
//! reductions, the shared dispatches, the gather backward) forced on the adapters here, which
//! would otherwise run the CPU family: lavapipe (Vulkan) and llvmpipe (GL). Every golden case
//! (training forward, every gradient, fused inference) on both; seeded random layers (k = 1 to
//! 7, r = 1 to 16, stride, dilation, padding, odd sizes, more than 64 samples, more than one row
//! tile, many inner chunks, a large image) against the CPU reference in both modes and backward,
//! unsliced, with the slices that fill a GPU, with the most the shape allows, for a small GPU,
//! with WebGPU's default limits (the logits in a dispatch of their own) and on GL; the split
//! plans under tiny limits; the unsliced kernel gradient bitwise the gather one; and
//! bitwise-equal results across runs.

use std::sync::Arc;

mod limits_common;

use drconv::golden::{list_cases, GoldenCase};
use drconv::internal::rng::Rng;
use drconv::verify::{compare, compare_case, BACKWARD_TOL, FORWARD_TOL};
use drconv::{cpu, ContextOptions, DrConv2d, DrConvConfig, DrConvParams, GpuContext, Mode};
use drconv::{ForwardTrace, Tensor, VariantOverrides};

/// The GPU family with `slices` forced (`None`: as many as fill a GPU) and the compute units
/// it fills (`None`: the default, 128).
fn gpu_family(slices: Option<u32>, units: Option<u32>) -> VariantOverrides {
    let mut v = VariantOverrides::default();
    v.correlation = Some("gemm".parse().unwrap());
    v.k_slices = slices;
    v.compute_units = units;
    v
}

async fn context(backends: wgpu::Backends, v: VariantOverrides) -> Option<Arc<GpuContext>> {
    context_limited(backends, v, false).await
}

/// [`context`], with WebGPU's default limits where `webgpu` (8 storage buffers per stage: the
/// logits keep their own dispatch).
async fn context_limited(
    backends: wgpu::Backends,
    v: VariantOverrides,
    webgpu: bool,
) -> Option<Arc<GpuContext>> {
    let mut opts = ContextOptions::default().backends(backends).variants(v);
    if webgpu {
        opts = opts.limits(wgpu::Limits::default());
    }
    match GpuContext::with_options(opts).await {
        Ok(ctx) => Some(ctx),
        // GL is checked (and required) by `golden_gl.rs`; here it is skipped the same way.
        Err(e) if backends == wgpu::Backends::GL => {
            assert_eq!(
                std::env::var("DRCONV_SKIP_GL").as_deref(),
                Ok("1"),
                "no GL: {e}"
            );
            None
        }
        Err(e) => panic!("a GPU adapter (lavapipe on CI): {e}"),
    }
}

#[test]
fn golden_cases_on_vulkan_and_gl() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    let cases: Vec<GoldenCase> = list_cases(root)
        .unwrap()
        .into_iter()
        .map(|d| GoldenCase::load(d).unwrap())
        .collect();
    assert!(cases.len() >= 8);
    pollster::block_on(async {
        for backends in [wgpu::Backends::VULKAN, wgpu::Backends::GL] {
            let Some(ctx) = context(backends, gpu_family(None, None)).await else {
                continue;
            };
            let mut failures = Vec::new();
            for case in &cases {
                let mut layer = DrConv2d::new(ctx.clone(), &case.params).unwrap();
                assert!(layer.variants().gemm(), "{}", layer.variants());
                let x = layer.upload(&case.x).unwrap();
                let gy = ctx
                    .upload("gy", case.grad_output.as_ref().unwrap())
                    .unwrap();
                layer.plan(&x, Mode::Training).await.unwrap().poison(&ctx);
                let trace = layer.forward_trace(&x, Mode::Training).await.unwrap();
                layer.backward_plan(&x).await.unwrap().poison(&ctx);
                let grads = layer.backward_trace(&x, &gy).await.unwrap();
                let report = compare_case(case, &trace, Some(&grads));
                failures.extend(
                    (report.tensors.iter())
                        .filter(|(_, t)| t.ok != Some(true))
                        .map(|(name, t)| format!("{} {name}: {:?}", case.name, t.max_abs_err)),
                );
                layer.plan(&x, Mode::Inference).await.unwrap().poison(&ctx);
                // Every tensor of the inference trace (the logits, sigmoid and kernel its
                // generator may compute itself included).
                let fused = layer.forward_trace(&x, Mode::Inference).await.unwrap();
                let report = compare_case(case, &fused, None);
                let forward = |n: &str| !n.starts_with("grad.") && n != "inter.corr";
                failures.extend(
                    (report.tensors.iter())
                        .filter(|(n, t)| forward(n) && t.ok != Some(true))
                        .map(|(name, t)| {
                            format!("{} fused {name}: {:?}", case.name, t.max_abs_err)
                        }),
                );
            }
            let adapter = ctx.summary();
            assert!(failures.is_empty(), "{adapter:?}: {failures:#?}");
        }
    });
}

/// A layer and its input.
#[derive(Debug, Clone, Copy)]
struct Layer {
    config: DrConvConfig,
    input: [usize; 4],
}

fn layer(i: usize, o: usize, k: usize, r: usize, spd: [usize; 3], input: [usize; 3]) -> Layer {
    let config = DrConvConfig {
        in_channels: i,
        out_channels: o,
        kernel_size: k,
        region_num: r,
        stride: spd[0],
        padding: spd[1],
        dilation: spd[2],
    };
    config.validate().unwrap();
    Layer {
        config,
        input: [input[0], i, input[1], input[2]],
    }
}

/// Work of the all-regions correlation, in multiply-adds.
fn work(l: &Layer) -> usize {
    let c = l.config;
    let s = c.forward_shape(&l.input).unwrap();
    s.batch
        * c.region_num
        * c.out_channels
        * c.in_channels
        * c.kernel_size.pow(2)
        * s.out_height
        * s.out_width
}

/// Seeded random layers, then the shapes the draw rarely reaches: more than 64 samples, two
/// row tiles of 64, many inner chunks, r = 16, k = 7, I*O over 1024, a large image.
fn layers() -> Vec<Layer> {
    let mut rng = Rng::new(0x6E33);
    let mut v = Vec::new();
    while v.len() < 24 {
        let (k, s, p, d) = (rng.int(1, 7), rng.int(1, 3), rng.int(0, 3), rng.int(1, 2));
        let span = d * (k - 1) + 1;
        let min = span.saturating_sub(2 * p).max(1);
        let hw = [rng.int(1, 3), min + rng.int(0, 9), min + rng.int(0, 9)];
        let l = layer(
            rng.int(1, 24),
            rng.int(1, 40),
            k,
            rng.int(1, 16),
            [s, p, d],
            hw,
        );
        if work(&l) <= 1_500_000 {
            v.push(l);
        }
    }
    v.extend([
        layer(3, 8, 3, 4, [1, 1, 1], [70, 6, 5]),
        layer(6, 100, 3, 3, [1, 1, 1], [2, 9, 11]),
        layer(40, 12, 3, 2, [1, 1, 1], [1, 10, 9]),
        layer(5, 7, 7, 16, [1, 3, 1], [2, 8, 8]),
        layer(8, 16, 5, 8, [2, 2, 2], [1, 15, 13]),
        layer(4, 33, 1, 5, [1, 0, 1], [3, 12, 12]),
        // I*O = 2048: the sigmoid gradient in 2 chunks of channels.
        layer(32, 64, 1, 2, [1, 0, 1], [1, 6, 7]),
        // 10,000 pixels: the fused lists in 20 blocks of 512, two passes of 256 each.
        layer(2, 4, 1, 3, [1, 0, 1], [1, 100, 100]),
    ]);
    v
}

/// Smallest gap between a pixel's two largest guide values (infinite for r = 1): below 1e-4 the
/// f32 and f64 sums may legitimately pick different regions.
fn guide_gap(t: &ForwardTrace) -> f32 {
    let (b, r) = (t.guide.shape[0], t.guide.shape[1]);
    let hw = t.guide.shape[2] * t.guide.shape[3];
    let mut gap = f32::INFINITY;
    for p in 0..b * hw {
        let mut v: Vec<f32> = (0..r)
            .map(|g| t.guide.data[((p / hw) * r + g) * hw + p % hw])
            .collect();
        v.sort_by(|a, b| b.total_cmp(a));
        if r > 1 {
            gap = gap.min(v[0] - v[1]);
        }
    }
    gap
}

/// Every tensor of `got` within `tol` of `want`'s namesake.
fn check(what: &str, got: Vec<(String, Tensor)>, want: Vec<(String, Tensor)>, tol: (f64, f64)) {
    for (name, t) in got {
        let Some((_, w)) = want.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let (err, ok) = compare(&t.data, &w.data, tol.0, tol.1);
        assert!(
            ok && t.shape == w.shape,
            "{what} {name}: max abs err {err:e}"
        );
    }
}

fn owned(named: Vec<(&'static str, &Tensor)>) -> Vec<(String, Tensor)> {
    named
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect()
}

#[test]
fn random_layers_match_the_cpu_in_every_slicing() {
    pollster::block_on(async {
        let (mut sliced, mut guide_px) = (0, std::collections::BTreeSet::new());
        let mut chunked = 0;
        // Inference plans whose generator computes the logits, and those with a logits dispatch.
        let mut gen_logits = [0, 0];
        // Unsliced; as many slices as fill 128 compute units; the most the shape allows; for a
        // GPU of 2 units: wide guide tiles, the register generator; WebGPU's default limits
        // (the logits apart); and on GL (llvmpipe).
        let (vulkan, gl) = (wgpu::Backends::VULKAN, wgpu::Backends::GL);
        for (backend, slices, units, webgpu) in [
            (vulkan, Some(1), None, false),
            (vulkan, None, None, false),
            (vulkan, Some(32), None, false),
            (vulkan, None, Some(2), false),
            (vulkan, None, None, true),
            (gl, None, None, false),
        ] {
            let v = gpu_family(slices, units);
            let Some(ctx) = context_limited(backend, v, webgpu).await else {
                continue;
            };
            for (n, l) in layers().iter().enumerate() {
                let params = DrConvParams::init(l.config, 500 + n as u64).unwrap();
                let mut rng = Rng::new(900 + n as u64);
                let x = Tensor::new(&l.input, rng.normal_vec(l.input.iter().product())).unwrap();
                let want = cpu::forward(&params, &x).unwrap();
                if guide_gap(&want) < 1e-4 {
                    continue;
                }
                let gy = Tensor::new(&want.output.shape, rng.normal_vec(want.output.numel()));
                let gy = gy.unwrap();
                let want_grads = cpu::backward(&params, &x, &want, &gy).unwrap();
                let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
                let xg = layer.upload(&x).unwrap();
                for mode in [Mode::Training, Mode::Inference] {
                    let plan = layer.plan(&xg, mode).await.unwrap();
                    sliced += (plan.decisions.corr.slices > 1) as usize;
                    guide_px.insert(plan.decisions.guide_split);
                    chunked += (plan.decisions.sigmoid_chunks > Some(1)) as usize;
                    if mode == Mode::Inference {
                        gen_logits[plan.decisions.gen_with_logits.is_none() as usize] += 1;
                    }
                    plan.poison(&ctx);
                    let got = layer.forward_trace(&xg, mode).await.unwrap();
                    let what = format!(
                        "{backend:?} slices {slices:?} units {units:?} webgpu {webgpu} {l:?} \
                         {mode:?}"
                    );
                    assert_eq!(got.region_index, want.region_index, "{what}: region maps");
                    check(&what, owned(got.named()), owned(want.named()), FORWARD_TOL);
                }
                layer.backward_plan(&xg).await.unwrap().poison(&ctx);
                let gyg = ctx.upload("gy", &gy).unwrap();
                let grads = layer.backward_trace(&xg, &gyg).await.unwrap();
                let what = format!("{backend:?} slices {slices:?} units {units:?} {l:?} backward");
                check(&what, grads.named(), want_grads.named(), BACKWARD_TOL);
            }
        }
        assert!(sliced >= 40, "only {sliced} plans ran in K slices");
        assert!(
            guide_px.len() >= 5,
            "guide pixels per workgroup: {guide_px:?}"
        );
        assert!(chunked >= 2, "sigmoid gradients in chunks: {chunked}");
        assert!(
            gen_logits[0] >= 100 && gen_logits[1] >= 24,
            "inference with the logits in the generator / apart: {gen_logits:?}"
        );
    });
}

#[test]
fn sliced_results_are_bitwise_the_same_every_run() {
    pollster::block_on(async {
        let ctx = context(wgpu::Backends::VULKAN, gpu_family(None, None)).await;
        let ctx = ctx.unwrap();
        let l = layer(24, 40, 3, 8, [1, 1, 1], [2, 13, 11]);
        let params = DrConvParams::init(l.config, 3).unwrap();
        let x = Tensor::new(&l.input, Rng::new(4).normal_vec(l.input.iter().product())).unwrap();
        let run = || async {
            let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
            let xg = layer.upload(&x).unwrap();
            let mut bits = Vec::new();
            for mode in [Mode::Inference, Mode::Training] {
                assert!(layer.plan(&xg, mode).await.unwrap().decisions.corr.slices > 1);
                let t = layer.forward_trace(&xg, mode).await.unwrap();
                bits.extend(t.output.data.iter().map(|v| v.to_bits()));
            }
            let gy = Tensor::new(&[2, 40, 13, 11], vec![0.5; 2 * 40 * 13 * 11]).unwrap();
            let gy = ctx.upload("gy", &gy).unwrap();
            let grads = layer.backward_trace(&xg, &gy).await.unwrap();
            for (_, t) in grads.named() {
                bits.extend(t.data.iter().map(|v| v.to_bits()));
            }
            bits
        };
        let first = run().await;
        for _ in 0..3 {
            assert!(run().await == first, "a run differs from the first");
        }
    });
}

/// Unsliced, the kernel gradient's GEMM sums every element over its region's pixels in
/// ascending order, as the gather entry does: bitwise the same gradient (the region maps agree).
#[test]
fn the_unsliced_kernel_gradient_is_bitwise_the_gather_one() {
    pollster::block_on(async {
        let gemm = context(wgpu::Backends::VULKAN, gpu_family(Some(1), None)).await;
        let mut staged = VariantOverrides::default();
        staged.correlation = Some("staged".parse().unwrap());
        let gather = context(wgpu::Backends::VULKAN, staged).await;
        for (n, l) in layers().iter().enumerate().step_by(3) {
            let params = DrConvParams::init(l.config, 700 + n as u64).unwrap();
            let mut rng = Rng::new(800 + n as u64);
            let x = Tensor::new(&l.input, rng.normal_vec(l.input.iter().product())).unwrap();
            let want = cpu::forward(&params, &x).unwrap();
            if guide_gap(&want) < 1e-4 {
                continue;
            }
            let gy = Tensor::new(&want.output.shape, rng.normal_vec(want.output.numel())).unwrap();
            let mut got = Vec::new();
            for ctx in [gemm.clone().unwrap(), gather.clone().unwrap()] {
                let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
                let xg = layer.upload(&x).unwrap();
                let t = layer.forward_trace(&xg, Mode::Training).await.unwrap();
                assert_eq!(t.region_index, want.region_index, "{l:?}");
                let gyg = ctx.upload("gy", &gy).unwrap();
                let grads = layer.backward_trace(&xg, &gyg).await.unwrap();
                got.push(
                    grads
                        .kernel
                        .data
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                );
            }
            assert!(got[0] == got[1], "{l:?}: the kernel gradients differ");
        }
    });
}

/// The split plans (chunks of samples, output channels, rows) under tiny binding and grid
/// limits, forward, backward and training steps against the CPU reference, on the GPU family.
#[test]
fn split_plans_under_tiny_limits() {
    use drconv::OptimizerConfig;
    pollster::block_on(async {
        let sgd = [(OptimizerConfig::sgd(0.05), 1)];
        let cases = [
            // Samples: 28 KiB bindings split training over the batch.
            (28 << 10, 16, layer(4, 4, 3, 4, [1, 1, 1], [5, 12, 12])),
            // Output channels and rows: an 8 KiB binding, a 16-wide grid.
            (8 << 10, 16, layer(3, 20, 3, 3, [1, 1, 1], [2, 10, 10])),
            (64 << 10, 16, layer(8, 8, 3, 4, [1, 1, 1], [2, 48, 48])),
        ];
        for (binding, grid, l) in cases {
            for slices in [None, Some(1)] {
                let v = gpu_family(slices, None);
                let ctx = limits_common::small_ctx_with(binding, grid, v).await;
                let seen = limits_common::check_against_cpu(ctx, l.config, l.input, &sgd).await;
                let split = seen.iter().filter(|s| s.ends_with("split: true")).count();
                assert!(
                    split >= 1,
                    "{l:?} slices {slices:?}: nothing split: {seen:?}"
                );
            }
        }
    });
}
