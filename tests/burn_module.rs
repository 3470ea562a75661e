//! `drconv::burn::DrConv2d` on every golden case, on burn's wgpu device (our kernels) and on
//! burn's CPU backend (burn's ops): the forward (training and fused inference), the region map
//! exactly, and dL/dx and every parameter's gradient through burn's autodiff.

mod burn_common;

use burn::tensor::{Int, Tensor};
use burn_common::*;
use drconv::burn::{DrConv2d, DrConv2dConfig, Path};
use drconv::golden::{load_cases, GoldenCase};
use drconv::ParamId;

fn cases() -> Vec<GoldenCase> {
    load_cases(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden")).unwrap()
}

fn param_grads(m: &DrConv2d, grads: &burn::tensor::Gradients) -> Vec<Vec<f32>> {
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

/// Forward, regions and gradients of one case on one device.
fn run_case(
    case: &GoldenCase,
    name: &str,
    device: &burn::tensor::Device,
) -> Result<String, String> {
    let m = DrConv2d::from_params(&case.params, device).map_err(|e| e.to_string())?;
    let want_out = &case.tensor("output").unwrap().data;
    // Inference (no autodiff): the fused path on wgpu.
    let y = m
        .try_forward(tensor(&case.x, device))
        .map_err(|e| e.to_string())?;
    check("inference output", &values(y), want_out, FORWARD)?;
    let regions: Vec<i64> = m
        .regions(tensor(&case.x, device))
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
        return Err(format!("{name}: region map differs"));
    }
    // Training: autodiff device, gradients of sum(y * grad_output).
    let ad = device.clone().autodiff();
    let m = DrConv2d::from_params(&case.params, &ad).map_err(|e| e.to_string())?;
    let x = tensor::<4>(&case.x, &ad).require_grad();
    let y = m.forward(x.clone());
    let gy = tensor::<4>(case.grad_output.as_ref().unwrap(), &ad);
    check("training output", &values(y.clone()), want_out, FORWARD)?;
    let grads = (y * gy).sum().backward();
    let mut worst = check(
        "grad.x",
        &values(x.grad(&grads).unwrap()),
        &case.tensor("grad.x").unwrap().data,
        GRADIENT,
    )?;
    for (id, got) in ParamId::ALL.iter().zip(param_grads(&m, &grads)) {
        let stem = format!("grad.param.{}", id.name());
        worst = worst.max(check(
            &stem,
            &got,
            &case.tensor(&stem).unwrap().data,
            GRADIENT,
        )?);
    }
    Ok(format!("worst gradient error {worst:.2e}"))
}

#[test]
fn golden_cases_on_kernels_and_burn_ops() {
    let cases = cases();
    assert_eq!(cases.len(), 10);
    let mut failures = Vec::new();
    for (name, device) in devices() {
        let path = DrConv2dConfig::new(2, 2, 3, 2).init(&device).path(&device);
        assert_eq!(
            path,
            if name == "flex" {
                Path::BurnOps
            } else {
                Path::Kernels
            },
            "{name}"
        );
        for case in &cases {
            match run_case(case, name, &device) {
                Ok(line) => println!("{name:13} {:18} ok, {line}", case.name),
                Err(e) => failures.push(format!("{name} {}: {e}", case.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bad_inputs_are_errors() {
    for (name, device) in devices() {
        let m = DrConv2dConfig::new(4, 6, 3, 2)
            .with_padding(1)
            .init(&device);
        let wrong_channels = Tensor::<4>::zeros([1, 3, 8, 8], &device);
        let e = m.try_forward(wrong_channels).unwrap_err().to_string();
        assert!(e.contains('3') && e.contains('4'), "{name}: {e}");
        let unpadded = DrConv2dConfig::new(4, 6, 5, 2).init(&device);
        let e = unpadded
            .try_forward(Tensor::<4>::zeros([1, 4, 3, 3], &device))
            .unwrap_err();
        println!("{name}: {e}");
        assert!(
            DrConv2dConfig::new(4, 6, 3, 0).try_init(&device).is_err(),
            "{name}: region_num 0"
        );
        let _: Tensor<3, Int> = m
            .regions(Tensor::<4>::zeros([2, 4, 8, 8], &device))
            .unwrap();
    }
}
