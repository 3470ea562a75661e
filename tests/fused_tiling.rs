//! The fused path (per-region pixel lists, one GEMM per region) against the all-regions path at
//! shapes that pick every tiling of `shaders/correlation.wgsl` (1, 2, 4 and 8 row groups per
//! workgroup) and both guide kernels (r <= 4 and r > 4, with a partial chunk of regions):
//! bitwise-equal outputs, guides and region maps (both paths sum each output in the same order),
//! the CPU reference within tolerance, and region lists that are a stable partition of the
//! pixels. Every correlation variant runs (weights staged in workgroup memory, the GPU default;
//! read directly; read directly as vec4s; channel-last copies, the CPU-adapter default where
//! I % 4 == 0, with the kernel rows in a uniform window where they fit and in a storage buffer),
//! whatever the adapter, each with one of the kernel generators (`main`, `main_r8`, and the
//! unrolled k = 3 kernels), and the fused grid sized on the device and on the host; the pixel
//! tiles the fused correlation runs are checked against the lists. Small shapes: CI runs on
//! lavapipe.

use std::collections::BTreeSet;
use std::sync::Arc;

use drconv::internal::gpu::correlation::CorrTiling;
use drconv::internal::gpu::variants::Correlation;
mod cases;
use cases::{context_with, forced, Case};

use drconv::verify::compare;
use drconv::verify::FORWARD_TOL;
use drconv::{DrConv2d, DrConvParams, GpuContext, Mode};

#[rustfmt::skip]
const CASES: [Case; 18] = [
    Case { i: 3, o: 8, r: 1, h: 24, w: 24, ..Case::K3 },
    Case { o: 16, r: 2, batch: 2, h: 16, w: 16, ..Case::K3 },
    Case { i: 5, o: 32, stride: 2, h: 30, w: 30, ..Case::K3 },
    Case { i: 3, o: 64, r: 8, padding: 2, dilation: 2, h: 14, w: 14, ..Case::K3 },
    Case { i: 6, o: 5, r: 12, batch: 3, h: 10, w: 9, ..Case::K3 },
    Case { i: 8, o: 40, k: 1, r: 5, padding: 0, batch: 2, h: 9, w: 7, ..Case::K3 },
    // I*k*k % 4 == 0: the vec4 weight rows of the `direct4` entries, at two more tilings.
    Case { o: 64, r: 8, padding: 2, dilation: 2, h: 14, w: 14, ..Case::K3 },
    Case { i: 8, o: 32, stride: 2, h: 30, w: 30, ..Case::K3 },
    // Small regions and O = 128: 16 row groups (128 x 16 tiles) without staging.
    Case { o: 128, r: 8, h: 10, w: 10, ..Case::K3 },
    // Batches through the unrolled k = 3 kernel generators (r = 4 and r = 8, blocks of 4
    // channels; I*O / 4 odd: one block per invocation; I % 4 != 0: no channel-last rows).
    Case { i: 8, o: 16, batch: 3, h: 10, w: 10, ..Case::K3 },
    Case { o: 16, r: 8, batch: 2, h: 9, w: 9, ..Case::K3 },
    Case { o: 5, r: 8, batch: 2, h: 9, w: 9, ..Case::K3 },
    Case { i: 2, o: 6, batch: 3, ..Case::K3 },
    // More than 64 samples: `corr_tiles` scans the batch 64 samples at a time.
    Case { o: 8, batch: 70, h: 6, w: 6, ..Case::K3 },
    // The channel-last guide's runs of 8 pixels along a row (k = 3, stride 1, r <= 4): no
    // padding (rows shorter than the input) and padding 2 (taps past both edges), runs cut short
    // at the row's end.
    Case { o: 8, r: 3, padding: 0, batch: 2, h: 13, w: 11, ..Case::K3 },
    Case { i: 8, o: 8, r: 2, padding: 2, h: 7, w: 9, ..Case::K3 },
    // Kernels over 64 KiB whose (sample, region) rows fit one: on channel-last adapters with the
    // window on, one uniform window and dispatch per (sample, region) (`selected_channel_last_per_region`).
    Case { i: 16, o: 16, batch: 4, h: 12, w: 12, ..Case::K3 },
    Case { i: 8, o: 32, r: 8, batch: 2, ..Case::K3 },
];

/// Whether a case's fused plan takes a window per (sample, region) where the variants allow:
/// the whole kernel over 64 KiB, one region's rows within it and at a uniform offset the device
/// can bind, at most 64 windows.
fn per_region_uniform(c: &Case, limits: &drconv::wgpu::Limits) -> bool {
    let (batch, kk) = (c.batch as u64, (c.k * c.k) as u64);
    let block = 4 * (c.i * c.o) as u64 * kk;
    let windows = batch * c.r as u64;
    block * windows > 65536
        && block <= 65536
        && block.is_multiple_of(limits.min_uniform_buffer_offset_alignment as u64)
        && windows <= 64
}

/// The tilings the planner picks for a case: (all-regions, fused), as `ForwardPlan::build` does.
fn tilings(c: &Case) -> (u64, u64) {
    let cfg = c.config();
    let s = cfg.forward_shape(&c.input_shape()).unwrap();
    let (hw, r, o) = ((s.out_height * s.out_width) as u64, c.r as u64, c.o as u64);
    (
        CorrTiling::dense(r * o, hw, Correlation::Staged).groups(),
        CorrTiling::per_region(o, hw, r, Correlation::Staged).groups(),
    )
}

#[test]
fn cases_cover_every_tiling_and_guide_kernel() {
    let (dense, fused): (BTreeSet<u64>, BTreeSet<u64>) = CASES.iter().map(tilings).unzip();
    let all: BTreeSet<u64> = [1, 2, 4, 8].into();
    assert_eq!(dense.union(&fused).copied().collect::<BTreeSet<_>>(), all);
    assert!(fused.len() >= 3, "fused tilings covered: {fused:?}");
    // Without staging (CPU adapters) the planner may also pick 16 row groups.
    assert!(CASES.iter().any(|c| {
        let s = c.config().forward_shape(&c.input_shape()).unwrap();
        let hw = (s.out_height * s.out_width) as u64;
        CorrTiling::per_region(c.o as u64, hw, c.r as u64, Correlation::Direct).groups() == 16
    }));
    assert!(CASES.iter().any(|c| c.r <= 4) && CASES.iter().any(|c| c.r > 4 && c.r % 8 != 0));
    // Both of the GEMM correlation's tiles, in both modes.
    let gemm = |c: &Case| {
        let s = c.config().forward_shape(&c.input_shape()).unwrap();
        let (hw, r, o) = ((s.out_height * s.out_width) as u64, c.r as u64, c.o as u64);
        let dense = CorrTiling::dense(r * o, hw, Correlation::Gemm);
        let fused = CorrTiling::per_region(o, hw, r, Correlation::Gemm);
        [(dense.rows, true), (fused.rows, false)]
    };
    let seen: BTreeSet<(u64, bool)> = CASES.iter().flat_map(gemm).collect();
    assert_eq!(seen.len(), 4, "GEMM tiles covered: {seen:?}");
}

/// Smallest gap between a pixel's two largest guide values (near-ties may legitimately flip
/// between f32 summation orders).
fn min_guide_gap(guide: &[f32], batch: usize, r: usize, hw: usize) -> f32 {
    let mut gap = f32::INFINITY;
    for b in 0..batch {
        for p in 0..hw {
            let mut v: Vec<f32> = (0..r).map(|g| guide[(b * r + g) * hw + p]).collect();
            v.sort_by(|a, b| b.total_cmp(a));
            if r > 1 {
                gap = gap.min(v[0] - v[1]);
            }
        }
    }
    gap
}

/// Asserts bitwise equality, naming the number of differing elements and the first one.
fn bitwise(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let bad: Vec<usize> = (0..a.len())
        .filter(|&i| a[i].to_bits() != b[i].to_bits())
        .collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{what}: {} of {} differ, first at {i}: {} vs {}",
            bad.len(),
            a.len(),
            a[i],
            b[i]
        );
    }
}

#[test]
fn fused_matches_all_regions_bitwise_and_the_cpu() {
    pollster::block_on(async {
        // Each correlation variant with one of the kernel generators (`Variants::choose`).
        // `channel_last` also with its kernel rows in a storage buffer (these small kernels otherwise go
        // through the uniform window) and with the fused correlation's grid sized on the host
        // (the fallback without indirect dispatch); the others as each adapter picks.
        // `gemm` unsliced (bitwise the all-regions path) and with the K slices that fill a
        // GPU (each mode's own: within tolerance of each other where they differ).
        for (corr, kernel_gen, indirect, ubo, slices) in [
            ("gemm", "registers", true, true, Some(1)),
            ("gemm", "blocked", false, true, None),
            ("staged", "blocked", true, true, None),
            ("direct", "registers", true, true, None),
            ("direct4", "unrolled_k3", true, true, None),
            ("channel_last", "unrolled_k3", true, true, None),
            ("channel_last", "unrolled_k3", false, false, None),
        ] {
            let mut variants = forced(Some(corr), Some(kernel_gen), None);
            variants.device_grid = Some(indirect);
            variants.uniform_kernel = Some(ubo);
            variants.k_slices = slices;
            let ctx = context_with(variants).await;
            let variant =
                format!("{corr}/{kernel_gen}/ubo={ubo}/indirect={indirect}/slices={slices:?}");
            check_cases(&ctx, &variant).await;
        }
    });
}

async fn check_cases(ctx: &Arc<GpuContext>, variant: &str) {
    let windowed = CASES.iter().filter(|c| per_region_uniform(c, ctx.limits()));
    assert!(windowed.count() >= 2, "cases with a window per region");
    for (n, case) in CASES.iter().enumerate() {
        let cfg = case.config();
        let params = DrConvParams::init(cfg, 40 + n as u64).unwrap();
        let x = case.input(n as u64);
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let xg = layer.upload(&x).unwrap();
        layer.plan(&xg, Mode::Training).await.unwrap().poison(ctx);
        layer.plan(&xg, Mode::Inference).await.unwrap().poison(ctx);
        let full = layer.forward_trace(&xg, Mode::Training).await.unwrap();
        let fused = layer.forward_trace(&xg, Mode::Inference).await.unwrap();
        let what = format!("{variant} case {n} {case:?}, tilings {:?}", tilings(case));
        let v = ctx.variants(&cfg);
        let windowed = layer
            .plan(&xg, Mode::Inference)
            .await
            .unwrap()
            .decisions
            .per_region_uniform
            .is_some();
        let want_windows = per_region_uniform(case, ctx.limits())
            && v.channel_last()
            && v.uniform_kernel
            && v.device_grid;
        assert_eq!(windowed, want_windows, "{what}: windows per region");
        // The same K slices in both modes sum every output in the same order.
        let trained = layer.plan(&xg, Mode::Training).await.unwrap();
        let train_slices = trained.decisions.corr.slices;
        let inferred = layer.plan(&xg, Mode::Inference).await.unwrap();
        let slices = (train_slices, inferred.decisions.corr.slices);
        if slices.0 == slices.1 {
            bitwise(
                &fused.output.data,
                &full.output.data,
                &format!("{what}: outputs"),
            );
        } else {
            let (a, b) = (&fused.output.data, &full.output.data);
            let (err, ok) = compare(a, b, FORWARD_TOL.0, FORWARD_TOL.1);
            assert!(
                ok,
                "{what}: outputs, K slices {slices:?}: max abs err {err:e}"
            );
        }
        bitwise(
            &fused.guide.data,
            &full.guide.data,
            &format!("{what}: guides"),
        );
        assert!(
            fused.region_index == full.region_index,
            "{what}: region maps differ"
        );

        let cpu = drconv::cpu::forward(&params, &x).unwrap();
        let (err, ok) = compare(
            &full.output.data,
            &cpu.output.data,
            FORWARD_TOL.0,
            FORWARD_TOL.1,
        );
        assert!(ok, "{what}: output vs CPU, max abs err {err:e}");
        let s = cfg.forward_shape(&case.input_shape()).unwrap();
        let hw = s.out_height * s.out_width;
        if min_guide_gap(&cpu.guide.data, s.batch, cfg.region_num, hw) >= 1e-4 {
            assert_eq!(
                full.region_index, cpu.region_index,
                "{what}: regions vs CPU"
            );
        }

        check_lists(ctx, &mut layer, &xg, &fused.region_index, case, &what).await;
    }
}

/// The fused plan's lists: per sample, region g's pixels ascending, every pixel exactly once;
/// and the correlation's tiles over them, and its grid where the device sizes it.
async fn check_lists(
    ctx: &Arc<GpuContext>,
    layer: &mut DrConv2d,
    xg: &drconv::GpuTensor,
    region_index: &[i32],
    case: &Case,
    what: &str,
) {
    let cfg = case.config();
    let s = cfg.forward_shape(&case.input_shape()).unwrap();
    let hw = s.out_height * s.out_width;
    // The lists: per sample, region g's pixels ascending, every pixel exactly once.
    let plan = layer.plan(xg, Mode::Inference).await.unwrap();
    let lists = plan
        .lists
        .as_ref()
        .expect("the fused plan has region lists");
    let order = lists.order.read_i32(ctx).await.unwrap();
    let starts = lists.starts.read_i32(ctx).await.unwrap();
    let r = cfg.region_num;
    for b in 0..s.batch {
        let st = &starts[b * (r + 1)..(b + 1) * (r + 1)];
        assert_eq!(
            (st[0], st[r]),
            (0, hw as i32),
            "{what}: sample {b} starts {st:?}"
        );
        let mut seen = vec![false; hw];
        for g in 0..r {
            let run = &order[b * hw + st[g] as usize..b * hw + st[g + 1] as usize];
            assert!(
                run.windows(2).all(|w| w[0] < w[1]),
                "{what}: region {g} order"
            );
            for &p in run {
                assert_eq!(region_index[b * hw + p as usize], g as i32);
                assert!(!seen[p as usize], "{what}: pixel {p} listed twice");
                seen[p as usize] = true;
            }
        }
        assert!(seen.iter().all(|&v| v), "{what}: a pixel is missing");
    }

    // The correlation's tiles: every (sample, region) tile with pixels, in order, nothing
    // else; and the grid sized to them where the device sizes it.
    let (t, slices) = (
        plan.decisions.corr.tiling,
        plan.decisions.corr.slices as u32,
    );
    let tile_px = t.pixels as usize;
    let mut want = vec![0i32];
    for b in 0..s.batch {
        for g in 0..r {
            let (s0, s1) = (starts[b * (r + 1) + g], starts[b * (r + 1) + g + 1]);
            for f in (s0..s1).step_by(tile_px) {
                want.extend([(b * r + g) as i32, f, (s1 - f).min(tile_px as i32)]);
            }
        }
    }
    want[0] = (want.len() as i32 - 1) / 3;
    let tiles = lists.tiles.read_i32(ctx).await.unwrap();
    if plan.decisions.lists_block.is_some() {
        return check_tile_slots(&tiles, &want, plan.decisions.corr.slots, (s.batch, r), what);
    }
    assert_eq!(&tiles[..want.len()], &want[..], "{what}: tile list");
    if ctx.variants(&cfg).device_grid {
        let args = ctx.read_bytes(&lists.tile_args, 0, 12).await.unwrap();
        let args: &[u32] = bytemuck::cast_slice(&args);
        let row_tiles = cfg.out_channels.div_ceil(t.rows as usize) as u32;
        let groups = want[0] as u32 * row_tiles * slices;
        assert!(
            args[0] * args[1] >= groups && args[0] * (args[1] - 1) < groups && args[2] == 1,
            "{what}: grid {args:?} for {groups} workgroups"
        );
        // Each (sample, region)'s own grid: its tiles times the row tiles (at least one
        // workgroup, which exits at once for an empty region).
        let windows = s.batch * r;
        let bytes = ctx
            .read_bytes(&lists.tile_args, 16, 16 * windows as u64)
            .await
            .unwrap();
        let own: &[u32] = bytemuck::cast_slice(&bytes);
        for j in 0..windows {
            let n = (1..want.len())
                .step_by(3)
                .filter(|&i| want[i] == j as i32)
                .count();
            let groups = n as u32 * row_tiles * slices;
            let a = &own[4 * j..4 * j + 3];
            assert!(
                a[0] * a[1] >= groups.max(1) && a[0] * (a[1] - 1) < groups.max(1) && a[2] == 1,
                "{what}: window {j}'s grid {a:?} for {groups} workgroups"
            );
        }
    }
}

/// The GPU family's tile slots (`lists_blocks`): each sample's tiles (`want`'s entries after the
/// count, in order) from slot b * slots on, then empty slots (count 0).
fn check_tile_slots(
    tiles: &[i32],
    want: &[i32],
    slots: usize,
    (batch, r): (usize, usize),
    what: &str,
) {
    for b in 0..batch {
        let mine: Vec<i32> = (want[1..].chunks(3))
            .filter(|e| e[0] as usize / r == b)
            .flatten()
            .copied()
            .collect();
        let got = &tiles[1 + 3 * b * slots..1 + 3 * (b + 1) * slots];
        assert_eq!(
            &got[..mine.len()],
            &mine[..],
            "{what}: sample {b}'s tile slots"
        );
        assert!(
            got[mine.len()..].chunks(3).all(|e| e[2] == 0),
            "{what}: sample {b}'s empty slots"
        );
    }
}

/// Where the shape rule gives the fused correlation a window per (sample, region) and nothing
/// forces `uniform_kernel`, the first inference plan of a (configuration, shape) times the plan
/// with the windows against the one without and keeps the faster (they pay on some hosts and
/// cost on others): the choice is recorded on the context, the kept plan follows it, a second
/// layer of the same key follows it without measuring again, and the output is bitwise the
/// all-regions path's either way. A forced `uniform_kernel` is never measured.
#[test]
fn the_per_region_uniform_are_measured_once_per_shape() {
    pollster::block_on(async {
        let ctx = context_with(forced(Some("channel_last"), Some("unrolled_k3"), None)).await;
        let cases = CASES.iter().filter(|c| per_region_uniform(c, ctx.limits()));
        let mut measured = 0;
        for (n, case) in cases.enumerate() {
            let cfg = case.config();
            assert_eq!(
                ctx.per_region_uniform_choice(&cfg, &case.input_shape()),
                None,
                "not yet measured"
            );
            let x = case.input(n as u64);
            let mut choice = None;
            for seed in [60, 61] {
                let params = DrConvParams::init(cfg, seed + n as u64).unwrap();
                let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
                let xg = layer.upload(&x).unwrap();
                let fused = layer.forward_trace(&xg, Mode::Inference).await.unwrap();
                let on = ctx.per_region_uniform_choice(&cfg, &case.input_shape());
                assert!(
                    on.is_some(),
                    "case {case:?}: the first plan measured the windows"
                );
                assert!(
                    choice.is_none() || choice == on,
                    "case {case:?}: the choice stands"
                );
                choice = on;
                let plan = layer.plan(&xg, Mode::Inference).await.unwrap();
                assert_eq!(
                    plan.decisions.per_region_uniform.is_some(),
                    on.unwrap(),
                    "case {case:?}"
                );
                assert_eq!(layer.plans_built(), 1, "case {case:?}: one plan kept");
                let full = layer.forward_trace(&xg, Mode::Training).await.unwrap();
                bitwise(
                    &fused.output.data,
                    &full.output.data,
                    &format!("case {case:?}"),
                );
            }
            measured += 1;
        }
        assert!(measured >= 2, "cases with a window per region");

        let mut on = forced(Some("channel_last"), Some("unrolled_k3"), None);
        on.uniform_kernel = Some(true);
        let ctx = context_with(on).await;
        let case = CASES
            .iter()
            .find(|c| per_region_uniform(c, ctx.limits()))
            .unwrap();
        let cfg = case.config();
        let params = DrConvParams::init(cfg, 62).unwrap();
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let xg = layer.upload(&case.input(0)).unwrap();
        let plan = layer.plan(&xg, Mode::Inference).await.unwrap();
        assert!(
            plan.decisions.per_region_uniform.is_some(),
            "forced windows are taken"
        );
        assert_eq!(
            ctx.per_region_uniform_choice(&cfg, &case.input_shape()),
            Some(true)
        );
    });
}
