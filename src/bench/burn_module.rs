//! `drconv bench --burn`: the burn module on our kernels against the same layer written in
//! burn's own tensor ops (the reference's all-regions algorithm), at the benchmark shapes, on one
//! burn wgpu device shared with drconv.
//!
//! Times are wall clock around a call and `Device::sync` (burn's queue, which also carries our
//! submissions). Each rep runs both paths back to back, so that the host load of a shared machine
//! (a software adapter runs on its CPUs) moves both alike and their ratio holds. The first call
//! of each path at each shape is timed apart: it builds our plan, or compiles and autotunes
//! burn's kernels for that shape.

use std::time::Instant;

use ::burn::backend::wgpu::WgpuDevice;
use ::burn::tensor::{Device, Distribution, Gradients, Tensor};
use serde::Serialize;

use super::report::TargetCheck;
use super::shapes::BenchShape;
use super::targets::{at_least, at_most};
use super::timer::median;
use super::BenchOptions;
use crate::burn::{context, init_wgpu, DrConv2d};
use crate::error::{DrConvError, Result};
use crate::params::DrConvParams;

/// One (shape, path) cell.
#[derive(Debug, Clone, Serialize)]
pub struct BurnRow {
    pub shape: String,
    /// `"drconv_burn"` (our kernels) or `"burn_ops"` (burn's tensor ops).
    pub path: &'static str,
    /// Median inference forward (no gradient tracked).
    pub forward_ms: f64,
    /// Median training forward + `backward()` on the autodiff device.
    pub forward_backward_ms: f64,
    /// The first inference forward at this shape.
    pub first_call_ms: f64,
    /// The first forward + backward at this shape.
    pub first_forward_backward_ms: f64,
}

/// Whether both paths compute the same layer at a shape.
#[derive(Debug, Clone, Serialize)]
pub struct BurnAgreement {
    pub shape: String,
    pub output_max_abs_diff: f64,
    pub input_grad_max_abs_diff: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BurnReport {
    pub adapter: String,
    pub backend: String,
    /// Always `"wall"`: call + `Device::sync`.
    pub timer: &'static str,
    pub rows: Vec<BurnRow>,
    pub agreement: Vec<BurnAgreement>,
    pub targets: Vec<TargetCheck>,
}

/// The two implementations of one layer on one device (plain and autodiff).
struct Paths {
    plain: DrConv2d,
    trained: DrConv2d,
}

#[derive(Clone, Copy)]
enum Which {
    Ours,
    BurnOps,
}

impl Which {
    const BOTH: [Which; 2] = [Which::Ours, Which::BurnOps];

    fn name(self) -> &'static str {
        match self {
            Which::Ours => "drconv_burn",
            Which::BurnOps => "burn_ops",
        }
    }
}

impl Paths {
    fn forward(&self, which: Which, x: Tensor<4>, trained: bool) -> Result<Tensor<4>> {
        let m = if trained { &self.trained } else { &self.plain };
        match which {
            Which::Ours => m.try_forward(x),
            Which::BurnOps => m.forward_burn_ops(x),
        }
    }
}

/// The tensors one shape's calls take.
struct Inputs {
    x: Tensor<4>,
    x_tracked: Tensor<4>,
    /// dL/dy of the timed backward (L = sum(y * g)).
    g: Tensor<4>,
}

fn sync(device: &Device) -> Result<()> {
    device
        .sync()
        .map_err(|e| DrConvError::DeviceLost(format!("burn's device sync failed: {e:?}")))
}

fn forward_ms(paths: &Paths, which: Which, inputs: &Inputs, device: &Device) -> Result<f64> {
    let t = Instant::now();
    let y = paths.forward(which, inputs.x.clone(), false)?;
    sync(device)?;
    drop(y);
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// The training forward and `backward()` of L = sum(y * g) on one path.
fn backward(paths: &Paths, which: Which, inputs: &Inputs) -> Result<Gradients> {
    let y = paths.forward(which, inputs.x_tracked.clone(), true)?;
    Ok((y * inputs.g.clone()).sum().backward())
}

fn forward_backward_ms(
    paths: &Paths,
    which: Which,
    inputs: &Inputs,
    device: &Device,
) -> Result<f64> {
    let t = Instant::now();
    let grads = backward(paths, which, inputs)?;
    sync(device)?;
    drop(grads);
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// The loss of the timed backward, L = sum(z * g), and its `backward()` on a tracked tensor z of
/// the output's shape alone: burn compiles these kernels once for both paths, so they are run
/// (and timed) before either path's first call, which then times the layer alone.
fn loss_alone_ms(inputs: &Inputs, tracked: &Device, device: &Device) -> Result<f64> {
    let z = Tensor::<4>::random(inputs.g.dims(), Distribution::Normal(0.0, 1.0), tracked)
        .require_grad();
    sync(device)?;
    let t = Instant::now();
    let grads = (z * inputs.g.clone()).sum().backward();
    sync(device)?;
    drop(grads);
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> Result<f64> {
    let d = (a - b).abs().max().into_data();
    let v = d
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| DrConvError::DeviceLost(format!("reading a result back: {e:?}")))?;
    Ok(v.first().copied().unwrap_or(f32::NAN) as f64)
}

/// Runs both paths once and compares their output and dL/dx.
fn agreement(shape: &BenchShape, paths: &Paths, inputs: &Inputs) -> Result<BurnAgreement> {
    let [ours, theirs] = Which::BOTH.map(|w| paths.forward(w, inputs.x.clone(), false));
    let output = max_abs_diff(ours?, theirs?)?;
    let grad = |w: Which| -> Result<Tensor<4>> {
        let grads = backward(paths, w, inputs)?;
        inputs
            .x_tracked
            .grad(&grads)
            .ok_or_else(|| DrConvError::Config("burn's autodiff produced no gradient for x".into()))
    };
    let input_grad = max_abs_diff(grad(Which::Ours)?, grad(Which::BurnOps)?)?;
    Ok(BurnAgreement {
        shape: shape.name(),
        output_max_abs_diff: output,
        input_grad_max_abs_diff: input_grad,
    })
}

fn inputs(shape: &BenchShape, device: &Device, tracked: &Device) -> Result<Inputs> {
    let dims = shape.input_shape();
    let config = shape.config()?;
    let out = config.forward_shape(&dims)?.output(&config);
    let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), device);
    let g = Tensor::<4>::random(out, Distribution::Normal(0.0, 1.0), tracked);
    let x_tracked = Tensor::<4>::from_data(x.to_data(), tracked).require_grad();
    Ok(Inputs { x, x_tracked, g })
}

/// Times one shape: both paths' first calls, warm-up, then alternating reps until the budget.
fn bench_shape(
    shape: &BenchShape,
    opts: &BenchOptions,
    device: &Device,
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<BurnRow>, BurnAgreement)> {
    let tracked = device.clone().autodiff();
    let params = DrConvParams::init(shape.config()?, 1)?;
    let paths = Paths {
        plain: DrConv2d::from_params(&params, device)?,
        trained: DrConv2d::from_params(&params, &tracked)?,
    };
    let inputs = inputs(shape, device, &tracked)?;
    sync(device)?;
    let loss_ms = loss_alone_ms(&inputs, &tracked, device)?;
    progress(&format!(
        "{}: the loss sum(y * g) and its backward alone (burn's kernels, shared by both paths), first call {loss_ms:.1} ms",
        shape.name()
    ));
    let mut first = [[0.0; 2]; 2];
    for (i, w) in Which::BOTH.into_iter().enumerate() {
        first[i] = [
            forward_ms(&paths, w, &inputs, device)?,
            forward_backward_ms(&paths, w, &inputs, device)?,
        ];
        progress(&format!(
            "{} {}: first forward {:.1} ms, first forward+backward {:.1} ms",
            shape.name(),
            w.name(),
            first[i][0],
            first[i][1]
        ));
    }
    for _ in 0..opts.min_reps().min(2) {
        for w in Which::BOTH {
            forward_ms(&paths, w, &inputs, device)?;
            forward_backward_ms(&paths, w, &inputs, device)?;
        }
    }
    let mut times = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    // Four cells per rep: the budget of four.
    let start = Instant::now();
    while times[0][0].len() < opts.min_reps()
        || (start.elapsed().as_secs_f64() < 4.0 * opts.budget_s()
            && times[0][0].len() < opts.max_reps())
    {
        for (i, w) in Which::BOTH.into_iter().enumerate() {
            times[i][0].push(forward_ms(&paths, w, &inputs, device)?);
            times[i][1].push(forward_backward_ms(&paths, w, &inputs, device)?);
        }
    }
    let rows = Which::BOTH
        .into_iter()
        .enumerate()
        .map(|(i, w)| BurnRow {
            shape: shape.name(),
            path: w.name(),
            forward_ms: median(&mut times[i][0]),
            forward_backward_ms: median(&mut times[i][1]),
            first_call_ms: first[i][0],
            first_forward_backward_ms: first[i][1],
        })
        .collect();
    Ok((rows, agreement(shape, &paths, &inputs)?))
}

/// The targets at one shape: forward >= 10x and forward + backward >= 3x faster than
/// burn's ops, no first call of ours over 2 s.
fn targets(ours: &BurnRow, theirs: &BurnRow) -> Vec<TargetCheck> {
    let first = ours.first_call_ms.max(ours.first_forward_backward_ms);
    vec![
        at_least(
            "burn_ops / drconv_burn forward ms",
            &ours.shape,
            theirs.forward_ms / ours.forward_ms,
            10.0,
        ),
        at_least(
            "burn_ops / drconv_burn fwd+bwd ms",
            &ours.shape,
            theirs.forward_backward_ms / ours.forward_backward_ms,
            3.0,
        ),
        at_most("drconv_burn first call ms", &ours.shape, first, 2000.0),
    ]
}

/// Runs the burn benchmark on burn's default wgpu device (`WGPU_BACKEND` is read by the CLI's
/// caller through wgpu's own environment handling), shared with drconv.
pub fn run(opts: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<BurnReport> {
    let device = init_wgpu(&WgpuDevice::default())?;
    let summary = context(&device)
        .ok_or_else(|| DrConvError::NoAdapter("burn's wgpu device has no drconv context".into()))?
        .summary();
    let mut report = BurnReport {
        adapter: summary.name,
        backend: summary.backend,
        timer: "wall",
        rows: Vec::new(),
        agreement: Vec::new(),
        targets: Vec::new(),
    };
    for shape in opts.selected() {
        let (rows, agree) = bench_shape(&shape, opts, &device, progress)?;
        progress(&format!("{} {}", super::SHAPE_DONE, shape.name()));
        report.targets.extend(targets(&rows[0], &rows[1]));
        report.rows.extend(rows);
        report.agreement.push(agree);
    }
    Ok(report)
}

/// The report as a fixed-width table, with the ratios and the targets under it.
pub fn table(r: &BurnReport) -> String {
    let mut s = format!(
        "adapter: {} ({}), timer: {} (call + sync)\n{:<26} {:<12} {:>10} {:>12} {:>12} {:>14}\n",
        r.adapter,
        r.backend,
        r.timer,
        "shape",
        "path",
        "fwd ms",
        "fwd+bwd ms",
        "first fwd ms",
        "first f+b ms"
    );
    for row in &r.rows {
        s += &format!(
            "{:<26} {:<12} {:>10.3} {:>12.3} {:>12.1} {:>14.1}\n",
            row.shape,
            row.path,
            row.forward_ms,
            row.forward_backward_ms,
            row.first_call_ms,
            row.first_forward_backward_ms
        );
    }
    for a in &r.agreement {
        s += &format!(
            "agreement {:<26} output max |diff| {:.2e}, dL/dx max |diff| {:.2e}\n",
            a.shape, a.output_max_abs_diff, a.input_grad_max_abs_diff
        );
    }
    s + &super::targets::lines(&r.targets)
}
