//! The golden cases through `drconv::burn::DrConv2d`: forward (inference and training), the
//! region map, and every gradient through burn's autodiff, within a tolerance.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Tensor};
use drconv::burn::DrConv2d;
use drconv::golden::{load_cases, GoldenCase};
use drconv::ParamId;

use super::{check, tensor, values, FORWARD, GRADIENT};

pub fn cases() -> Vec<GoldenCase> {
    load_cases(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden")).unwrap()
}

pub fn param_grads(m: &DrConv2d, grads: &burn::tensor::Gradients) -> Vec<Vec<f32>> {
    let k1 = m.conv_kernel[1].as_ref().unwrap();
    let k3 = m.conv_kernel[3].as_ref().unwrap();
    let g = &m.conv_guide;
    let w = |p: &burn::module::Param<Tensor<4>>| values(p.grad(grads).expect("a weight gradient"));
    let b = |p: &Option<burn::module::Param<Tensor<1>>>| {
        values(p.as_ref().unwrap().grad(grads).expect("a bias gradient"))
    };
    vec![
        w(&k1.weight),
        b(&k1.bias),
        w(&k3.weight),
        b(&k3.bias),
        w(&g.weight),
        b(&g.bias),
    ]
}

/// The module's parameters in `dtype` (leaves that require gradients on an autodiff device).
pub struct CastParams(DType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        p.map(|t| {
            let t = t.cast(self.0);
            if t.is_autodiff() {
                t.detach().require_grad()
            } else {
                t
            }
        })
    }
}

/// The case's layer on `device`, its parameters in `dtype`.
pub fn layer(case: &GoldenCase, device: &Device, dtype: DType) -> Result<DrConv2d, String> {
    let m = DrConv2d::from_params(&case.params, device).map_err(|e| e.to_string())?;
    Ok(match dtype {
        DType::F32 => m,
        _ => m.map(&mut CastParams(dtype)),
    })
}

/// How close a run must come to the golden values: per value `atol + rtol * |want|`, with `atol`
/// in units of the tensor's largest |value| where `scaled`.
pub struct Tolerance {
    pub forward: (f64, f64),
    pub gradient: (f64, f64),
    /// f16's rounding errors scale with the terms of each sum, i.e. with the tensor's magnitude:
    /// a gradient summing terms of both signs to near zero is off by the terms' rounding.
    pub scaled: bool,
}

pub const F32: Tolerance = Tolerance {
    forward: FORWARD,
    gradient: GRADIENT,
    scaled: false,
};

impl Tolerance {
    /// `check` within this tolerance; the worst error, in units of the scale where `scaled`.
    fn check(&self, what: &str, got: &[f32], want: &[f32]) -> Result<f64, String> {
        let (atol, rtol) = if what.starts_with("grad") {
            self.gradient
        } else {
            self.forward
        };
        let scale = match self.scaled {
            true => want.iter().fold(0f64, |m, w| m.max(w.abs() as f64)),
            false => 1.0,
        };
        check(what, got, want, (atol * scale, rtol)).map(|err| err / scale)
    }
}

/// Forward, regions and gradients of one case on one device, in `dtype`, within `tolerance` of
/// the golden values.
pub fn run_case(
    case: &GoldenCase,
    device: &Device,
    dtype: DType,
    tolerance: &Tolerance,
) -> Result<String, String> {
    let m = layer(case, device, dtype)?;
    let input = |d: &Device| tensor::<4>(&case.x, d).cast(dtype);
    let want_out = &case.tensor("output").unwrap().data;
    // Inference (no autodiff): the fused path on wgpu.
    let y = m.try_forward(input(device)).map_err(|e| e.to_string())?;
    if y.dtype() != dtype {
        return Err(format!("the output is {:?}, want {dtype:?}", y.dtype()));
    }
    let mut worst = tolerance.check("inference output", &values(y), want_out)?;
    let regions: Vec<i64> = m
        .regions(input(device))
        .unwrap()
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    let want_regions: Vec<i64> = case
        .region_index
        .as_ref()
        .unwrap()
        .iter()
        .map(|&r| r as i64)
        .collect();
    if regions != want_regions {
        return Err("region map differs".into());
    }
    // Training: autodiff device, gradients of sum(y * grad_output).
    let ad = device.clone().autodiff();
    let m = layer(case, &ad, dtype)?;
    let x = input(&ad).require_grad();
    let y = m.forward(x.clone());
    let gy = tensor::<4>(case.grad_output.as_ref().unwrap(), &ad).cast(dtype);
    worst = worst.max(tolerance.check("training output", &values(y.clone()), want_out)?);
    let grads = (y * gy).sum().backward();
    let gx = x.grad(&grads).unwrap();
    if gx.dtype() != dtype {
        return Err(format!("dL/dx is {:?}, want {dtype:?}", gx.dtype()));
    }
    let mut worst_grad =
        tolerance.check("grad.x", &values(gx), &case.tensor("grad.x").unwrap().data)?;
    for (id, got) in ParamId::ALL.iter().zip(param_grads(&m, &grads)) {
        let stem = format!("grad.param.{}", id.name());
        worst_grad =
            worst_grad.max(tolerance.check(&stem, &got, &case.tensor(&stem).unwrap().data)?);
    }
    Ok(format!(
        "worst output error {worst:.2e}, worst gradient error {worst_grad:.2e}"
    ))
}

/// f16 against the f32 golden values, in units of each tensor's largest |value|: f16 keeps 11
/// significant bits (rounding u = 4.9e-4), x and the parameters are rounded to it, and every value
/// sums tens to hundreds of f16 products (I*k*k per output, more per gradient). Measured worst on
/// flex and lavapipe: 1.6e-3 (3.3u) forward, 5.1e-3 (10u) gradients; this allows about 3x that.
pub const F16: Tolerance = Tolerance {
    forward: (5e-3, 0.0),
    gradient: (1.5e-2, 0.0),
    scaled: true,
};
