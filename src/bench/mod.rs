//! `drconv bench`: times the fused inference forward against the all-regions (training) forward
//! at the shapes, on whatever adapter wgpu picks, next to a plain GEMM on the same device.
//!
//! Each cell is the median of repeated runs after a warm-up, repeated until a per-cell time
//! budget is spent (lavapipe runs at about a GFLOP/s). Times are GPU timestamps around the
//! compute pass where the adapter has `TIMESTAMP_QUERY`, else wall time around submit + wait.
//! GFLOP/s count only the work each path must do (see [`BenchShape`]).

#[cfg(feature = "burn")]
pub mod burn_module;
mod matmul;
pub mod plan_report;
mod report;
mod shapes;
mod table;
mod targets;
mod timer;

use std::sync::Arc;

use crate::config::Mode;
use crate::error::Result;
use crate::gpu::forward::ForwardPlan;
use crate::gpu::plan;
use crate::gpu::program::Program;
use crate::gpu::GpuContext;
use crate::layer::DrConv2d;
use crate::params::DrConvParams;
use crate::rng::Rng;
use crate::tensor::Tensor;

pub use report::{
    Agreement, BenchReport, BenchRow, InputReuse, MatmulResult, ShapeVariants, StepTime,
    TargetCheck,
};
pub use shapes::{BenchShape, ALL_SHAPES, SHAPES, SHAPE_TAGS, YOLO_SHAPES};

/// The start of the progress line sent when a shape is done (the CLI's progress bar counts them).
pub const SHAPE_DONE: &str = "shape done:";
pub use table::table;
pub use timer::{median, median_of, Stats, Timer};

/// How long to measure.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// Short budgets and a smaller GEMM: a smoke run, not numbers to quote.
    pub quick: bool,
    /// 1-based indices into [`ALL_SHAPES`] to run; empty runs S1-S4 ([`SHAPES`]), and the
    /// YOLO shapes too with `yolo`.
    pub shapes: Vec<usize>,
    /// With no `shapes`, also run [`YOLO_SHAPES`] (the CLI sets it on GPUs and with `--yolo`).
    pub yolo: bool,
}

impl BenchOptions {
    /// The shapes to run, in [`ALL_SHAPES`] order.
    pub fn selected(&self) -> impl Iterator<Item = BenchShape> + '_ {
        ALL_SHAPES
            .into_iter()
            .enumerate()
            .filter(|(i, _)| match self.shapes.is_empty() {
                true => *i < SHAPES.len() || self.yolo,
                false => self.shapes.contains(&(i + 1)),
            })
            .map(|(_, s)| s)
    }

    fn budget_s(&self) -> f64 {
        if self.quick {
            0.3
        } else {
            3.0
        }
    }

    fn min_reps(&self) -> usize {
        if self.quick {
            1
        } else {
            3
        }
    }

    fn max_reps(&self) -> usize {
        if self.quick {
            5
        } else {
            50
        }
    }

    fn matmul_n(&self) -> usize {
        if self.quick {
            256
        } else {
            512
        }
    }
}

/// The 1-minute load average, where /proc/loadavg exists.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the whole benchmark; `progress` gets a line per finished cell.
pub async fn run(
    ctx: &Arc<GpuContext>,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    let timer = Timer::new(ctx);
    let summary = ctx.summary();
    let load_before = load_average();
    let n = opts.matmul_n();
    let gemm = matmul::Gemm::new(ctx, n)?;
    let mut matmul = Vec::new();
    for (variant, gflops) in matmul::matmul_gflops(ctx, &timer, &gemm, opts.budget_s()).await? {
        progress(&format!("matmul {variant} {n}^3: {gflops:.2} GFLOP/s"));
        matmul.push(MatmulResult { variant, n, gflops });
    }
    let mut rows = Vec::new();
    let mut agreement = Vec::new();
    let mut input_reuse = Vec::new();
    let mut targets = Vec::new();
    let mut variants = Vec::new();
    for shape in opts.selected() {
        let config = shape.config()?;
        let (pair, agree, reuse) = bench_shape(ctx, &timer, opts, &shape, &gemm, progress).await?;
        // The inference plan's variants: the decisions refine the layer's choice per shape.
        let fs = config.forward_shape(&shape.input_shape())?;
        let target = crate::gpu::decide::Target::of(ctx);
        let d = crate::gpu::decide::decide(&target, &config, &fs, crate::Mode::Inference, true);
        let v = format!(
            "{} per_region_uniform={}",
            d.variants,
            match ctx.per_region_uniform_choice(&config, &shape.input_shape()) {
                Some(true) => "on",
                Some(false) => "off",
                None => "n/a",
            }
        );
        progress(&format!("{}: {v}", shape.name()));
        variants.push(ShapeVariants {
            shape: shape.name(),
            variants: v,
        });
        progress(&format!("{SHAPE_DONE} {}", shape.name()));
        // The targets are S1-S4's; the YOLO shapes are measured, not judged.
        if shape.has_targets() {
            targets.extend(targets::check(&shape, &pair[0], &pair[1]));
            targets.push(targets::input_reuse(&reuse));
        }
        input_reuse.push(reuse);
        rows.extend(pair);
        agreement.push(agree);
    }
    // The GEMM again after the shapes, keeping each variant's better rate: the attainable rate
    // the correlation is judged by is then the less disturbed of two measurements.
    for (m, (_, gflops)) in matmul
        .iter_mut()
        .zip(matmul::matmul_gflops(ctx, &timer, &gemm, opts.budget_s()).await?)
    {
        m.gflops = m.gflops.max(gflops);
    }
    let beside_shapes = rows.iter().map(|r| r.matmul_gflops).fold(0.0, f64::max);
    Ok(BenchReport {
        adapter: summary.name,
        backend: summary.backend,
        device_type: summary.device_type,
        timer: timer.kind(),
        variants,
        matmul_gflops: matmul
            .iter()
            .map(|m| m.gflops)
            .fold(beside_shapes, f64::max),
        matmul,
        rows,
        agreement,
        input_reuse,
        targets,
        host_load: load_before.zip(load_average()).map(|(a, b)| [a, b]),
    })
}

/// The fused and all-regions rows of one shape, and their agreement.
async fn bench_shape(
    ctx: &Arc<GpuContext>,
    timer: &Timer,
    opts: &BenchOptions,
    shape: &BenchShape,
    gemm: &matmul::Gemm,
    progress: &mut dyn FnMut(&str),
) -> Result<([BenchRow; 2], Agreement, InputReuse)> {
    let config = shape.config()?;
    let params = DrConvParams::init(config, 1)?;
    let mut rng = Rng::new(2);
    let input = shape.input_shape();
    let x = Tensor::new(&input, rng.normal_vec(input.iter().product()))?;
    let mut layer = DrConv2d::new(ctx.clone(), &params)?;
    let xg = layer.upload(&x)?;
    let param_bytes: u64 = layer
        .gpu_params()
        .tensors
        .iter()
        .map(|t| t.buffer.size())
        .sum();
    let fwd_bwd = forward_backward_ms(ctx, timer, opts, &mut layer, &xg, progress).await;

    let name = shape.name();
    // Both paths timed in the same submissions, one pass each, alternating: the host load of a
    // shared machine (lavapipe runs on its CPUs) then moves both the same way, and their ratio
    // holds even when the absolute times drift.
    // The layer's own inference plan first: where the fused correlation could take uniform bindings per
    // (sample, region), that measures whether they pay here, and the plans below follow it.
    layer.prepare(&input, Mode::Inference).await?;
    let plans = [Mode::Inference, Mode::Training].map(|mode| {
        let plan = plan::forward(ctx, layer.config(), layer.gpu_params(), &input, mode)?;
        ctx.write(&plan.input, &x.data)?;
        Ok::<_, crate::DrConvError>(plan)
    });
    let [fused_plan, full_plan] = plans;
    let (fused_plan, full_plan) = (fused_plan?, full_plan?);
    let forward = interleaved(ctx, timer, opts, &[&fused_plan.program, &full_plan.program]).await?;
    let gemm_programs: Vec<&Program> = gemm.variants.iter().map(|(_, p)| p).collect();
    let (steps, gemm_ms) =
        step_times(ctx, timer, opts, &[&fused_plan, &full_plan], &gemm_programs).await?;
    let matmul_gflops = gemm_ms
        .iter()
        .map(|ms| gemm.flops() / (ms * 1e-3) / 1e9)
        .fold(0.0, f64::max);
    let mut rows = Vec::new();
    for (((mode, path), forward), (plan, steps)) in
        [(Mode::Inference, "fused"), (Mode::Training, "all_regions")]
            .into_iter()
            .zip(forward)
            .zip([&fused_plan, &full_plan].into_iter().zip(steps))
    {
        let forward_ms = forward.median;
        let corr_ms: f64 = steps
            .iter()
            .filter(|s| s.label.starts_with("corr"))
            .map(|s| s.ms)
            .sum();
        let (work, corr_work) = match mode {
            Mode::Inference => (shape.fused_flops()?, shape.corr_flops()?),
            Mode::Training => (
                shape.all_regions_flops()?,
                shape.r as f64 * shape.corr_flops()?,
            ),
        };
        let row = BenchRow {
            shape: name.clone(),
            path,
            forward_ms,
            forward_min_ms: forward.min,
            forward_backward_ms: fwd_bwd,
            gflops: work / (forward_ms * 1e-3) / 1e9,
            peak_bytes: plan.buffer_bytes() + param_bytes,
            corr_ms,
            corr_gflops: corr_work / (corr_ms * 1e-3) / 1e9,
            matmul_gflops,
            steps,
        };
        progress(&format!(
            "{name} {path}: forward {forward_ms:.3} ms, {:.2} GFLOP/s, correlation {corr_ms:.3} ms \
             ({:.2} GFLOP/s)",
            row.gflops, row.corr_gflops
        ));
        rows.push(row);
    }
    let agree = agreement(&mut layer, &xg, name.clone()).await?;
    let reuse = input_reuse(ctx, opts, &mut layer, &x, name).await?;
    progress(&format!(
        "{} input buffers: reused {:.3} ms, fresh {:.3} ms per forward (x{:.3}), {} plans built",
        reuse.shape, reuse.reused_ms, reuse.fresh_ms, reuse.ratio, reuse.plans_built
    ));
    let rows: [BenchRow; 2] = rows.try_into().expect("two paths");
    Ok((rows, agree, reuse))
}

/// The fused forward's per-call wall time with `x` in one reused buffer and in a fresh buffer
/// each call, alternating so that host load moves both alike; medians.
async fn input_reuse(
    ctx: &Arc<GpuContext>,
    opts: &BenchOptions,
    layer: &mut DrConv2d,
    x: &Tensor,
    shape: String,
) -> Result<InputReuse> {
    let reused = layer.upload(x)?;
    layer.forward(&reused, Mode::Inference).await?;
    ctx.poll_wait()?;
    let built = layer.plans_built();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..opts.min_reps().max(5) {
        for fresh in [false, true] {
            let input = match fresh {
                true => layer.upload(x)?,
                false => reused.clone(),
            };
            ctx.poll_wait()?;
            let t0 = std::time::Instant::now();
            layer.forward(&input, Mode::Inference).await?;
            ctx.poll_wait()?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            match fresh {
                true => b.push(ms),
                false => a.push(ms),
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (reused_ms, fresh_ms) = (median(a), median(b));
    Ok(InputReuse {
        shape,
        reused_ms,
        fresh_ms,
        ratio: fresh_ms / reused_ms,
        plans_built: layer.plans_built() - built,
    })
}

/// Median time of the training forward + backward (two passes, one submission), or `None` with
/// the reason sent to `progress` when the backward cannot run here.
async fn forward_backward_ms(
    ctx: &Arc<GpuContext>,
    timer: &Timer,
    opts: &BenchOptions,
    layer: &mut DrConv2d,
    x: &crate::gpu::GpuTensor,
    progress: &mut dyn FnMut(&str),
) -> Option<f64> {
    let result: Result<f64> = async {
        let config = *layer.config();
        let mut feed = ctx.encoder("bench input");
        let (fwd, bwd) = layer.training_plans(x, Some(&mut feed)).await?;
        ctx.submit(feed).await?;
        let gy = Rng::new(3).normal_vec(crate::tensor::numel(&fwd.shape.output(&config)));
        ctx.write(&bwd.grad_output, &gy)?;
        let (fwd, bwd) = (&fwd.program, &bwd.program);
        median_of(
            1,
            opts.min_reps(),
            opts.max_reps(),
            opts.budget_s(),
            || async { Ok(timer.time_each(ctx, &[fwd, bwd]).await?.iter().sum()) },
        )
        .await
        .map(|s| s.median)
    }
    .await;
    match result {
        Ok(ms) => Some(ms),
        Err(e) => {
            progress(&format!("forward+backward not timed: {e}"));
            None
        }
    }
}

/// Median time of each program over repeated submissions that run them all, one pass each, in
/// order (after a warm-up).
async fn interleaved(
    ctx: &Arc<GpuContext>,
    timer: &Timer,
    opts: &BenchOptions,
    programs: &[&Program],
) -> Result<Vec<Stats>> {
    timer.time_each(ctx, programs).await?; // warm-up
    let mut samples = vec![Vec::new(); programs.len()];
    let t0 = std::time::Instant::now();
    let mut reps = 0;
    while reps < opts.min_reps()
        || (reps < opts.max_reps() && t0.elapsed().as_secs_f64() < opts.budget_s())
    {
        for (s, ms) in samples
            .iter_mut()
            .zip(timer.time_each(ctx, programs).await?)
        {
            s.push(ms);
        }
        reps += 1;
    }
    Ok(samples
        .into_iter()
        .map(|mut s| Stats {
            min: s.iter().copied().fold(f64::INFINITY, f64::min),
            reps: s.len(),
            median: median(&mut s),
        })
        .collect())
}

/// Each step of each plan timed in its own pass (median per step, the plans' steps interleaved
/// in every submission), same-label dispatches of a plan summed; and the median of each of
/// `extra` (the GEMM), run in the same submissions.
async fn step_times(
    ctx: &Arc<GpuContext>,
    timer: &Timer,
    opts: &BenchOptions,
    plans: &[&ForwardPlan],
    extra: &[&Program],
) -> Result<(Vec<Vec<StepTime>>, Vec<f64>)> {
    let mut owner = Vec::new();
    let mut programs = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        for s in &plan.program.steps {
            owner.push((i, s.label));
            programs.push(Program {
                steps: vec![s.clone()],
            });
        }
    }
    let mut refs: Vec<&Program> = programs.iter().collect();
    refs.extend_from_slice(extra);
    let mut stats = interleaved(ctx, timer, opts, &refs).await?;
    let extra_ms = stats
        .split_off(owner.len())
        .into_iter()
        .map(|s| s.median)
        .collect();
    let mut out: Vec<Vec<StepTime>> = vec![Vec::new(); plans.len()];
    for ((i, label), st) in owner.into_iter().zip(stats) {
        match out[i].iter_mut().find(|t| t.label == label) {
            Some(t) => t.ms += st.median,
            None => out[i].push(StepTime {
                label,
                ms: st.median,
            }),
        }
    }
    Ok((out, extra_ms))
}

/// Runs both forwards once more and compares outputs and region maps.
async fn agreement(
    layer: &mut DrConv2d,
    x: &crate::gpu::GpuTensor,
    shape: String,
) -> Result<Agreement> {
    let fused = layer.forward_trace(x, Mode::Inference).await?;
    let full = layer.forward_trace(x, Mode::Training).await?;
    let diff = fused
        .output
        .data
        .iter()
        .zip(&full.output.data)
        .map(|(a, b)| ((a - b) as f64).abs())
        .fold(
            0.0,
            |m: f64, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
        );
    Ok(Agreement {
        shape,
        output_max_abs_diff: diff,
        region_equal: fused.region_index == full.region_index,
    })
}
