//! A PyTorch model with two DRConv2d blocks (scripts/export_burn_neck.py) loaded into its burn
//! twin (examples/burn_neck/model.rs) from `neck.pt` and from `neck.safetensors`, on burn's wgpu
//! device (our kernels) and on burn's CPU backend: the eval-mode output, then a train-mode
//! forward and every gradient through the whole model against PyTorch's; and no readback to the
//! host inside our forwards and backwards.

mod burn_common;
#[allow(dead_code)]
#[path = "../examples/burn_neck/model.rs"]
mod model;

use std::collections::HashMap;

use burn::module::Param;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};
use burn::tensor::{Device, Tensor};
use burn_common::*;
use drconv::burn::PYTORCH_KEEP_INDICES;
use model::Neck;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/burn_neck");

/// PyTorch's tensors of `neck_io.safetensors` by name.
fn io() -> HashMap<String, drconv::Tensor> {
    let bytes = std::fs::read(format!("{DIR}/neck_io.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data: Vec<f32> = bytemuck::pod_collect_to_vec(view.data());
            (name, drconv::Tensor::new(view.shape(), data).unwrap())
        })
        .collect()
}

fn load_pt(device: &Device) -> Neck {
    let mut model = Neck::new(device);
    let mut store = PytorchStore::from_file(format!("{DIR}/neck.pt"))
        .map_indices_contiguous_except(PYTORCH_KEEP_INDICES)
        .allow_partial(true);
    let result = model.load_from(&mut store).expect("neck.pt loads");
    // Every PyTorch tensor but BN's step counters lands in the model.
    assert!(
        result
            .unused
            .iter()
            .all(|k| k.ends_with("num_batches_tracked")),
        "unused: {:?}",
        result.unused
    );
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    for key in [
        "block1.drconv.conv_kernel.3.weight",
        "block2.drconv.conv_guide.bias",
    ] {
        assert!(
            result.applied.iter().any(|k| k == key),
            "{key} not applied: {:?}",
            result.applied
        );
    }
    model
}

fn load_safetensors(device: &Device) -> Neck {
    let mut model = Neck::new(device);
    let mut store = SafetensorsStore::from_file(format!("{DIR}/neck.safetensors"))
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true);
    let result = model.load_from(&mut store).expect("neck.safetensors loads");
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert!(
        result.applied.len() >= 26,
        "applied only {:?}",
        result.applied
    );
    model
}

/// The model's parameters under their PyTorch names.
fn named_params(m: &Neck) -> Vec<(String, Param<Tensor<4>>)> {
    let mut out = vec![("stem.conv.weight".to_string(), m.stem.conv.weight.clone())];
    for (name, b) in [("block1", &m.block1), ("block2", &m.block2)] {
        let d = &b.drconv;
        for (i, conv) in [(1, &d.conv_kernel[1]), (3, &d.conv_kernel[3])] {
            out.push((
                format!("{name}.drconv.conv_kernel.{i}.weight"),
                conv.as_ref().unwrap().weight.clone(),
            ));
        }
        out.push((
            format!("{name}.drconv.conv_guide.weight"),
            d.conv_guide.weight.clone(),
        ));
    }
    out.push(("head.weight".to_string(), m.head.weight.clone()));
    out
}

fn named_biases(m: &Neck) -> Vec<(String, Param<Tensor<1>>)> {
    let mut out = vec![
        (
            "stem.conv.bias".to_string(),
            m.stem.conv.bias.clone().unwrap(),
        ),
        ("stem.bn.weight".to_string(), m.stem.bn.gamma.clone()),
        ("stem.bn.bias".to_string(), m.stem.bn.beta.clone()),
    ];
    for (name, b) in [("block1", &m.block1), ("block2", &m.block2)] {
        let d = &b.drconv;
        for (i, conv) in [(1, &d.conv_kernel[1]), (3, &d.conv_kernel[3])] {
            out.push((
                format!("{name}.drconv.conv_kernel.{i}.bias"),
                conv.as_ref().unwrap().bias.clone().unwrap(),
            ));
        }
        out.push((
            format!("{name}.drconv.conv_guide.bias"),
            d.conv_guide.bias.clone().unwrap(),
        ));
        out.push((format!("{name}.bn.weight"), b.bn.gamma.clone()));
        out.push((format!("{name}.bn.bias"), b.bn.beta.clone()));
    }
    out.push(("head.bias".to_string(), m.head.bias.clone().unwrap()));
    out
}

fn eval_matches(
    model: &Neck,
    device: &Device,
    io: &HashMap<String, drconv::Tensor>,
) -> Result<f64, String> {
    let y = model.forward(tensor(&io["x"], device));
    check("y_eval", &values(y), &io["y_eval"].data, FORWARD)
}

#[test]
fn pytorch_state_dicts_load_and_match() {
    let io = io();
    let mut failures = Vec::new();
    for (name, device) in devices() {
        for (file, model) in [
            ("neck.pt", load_pt(&device)),
            ("neck.safetensors", load_safetensors(&device)),
        ] {
            match eval_matches(&model, &device, &io) {
                Ok(e) => {
                    println!("{name:13} {file:17} eval output matches PyTorch (max error {e:.2e})")
                }
                Err(e) => failures.push(format!("{name} {file}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A train-mode forward (batch statistics) and every gradient through the whole model.
fn gradients_match(device: &Device, io: &HashMap<String, drconv::Tensor>) -> Result<f64, String> {
    let ad = device.clone().autodiff();
    let model = load_pt(&ad);
    let x = tensor::<4>(&io["x"], &ad).require_grad();
    let y = model.forward(x.clone());
    check("y_train", &values(y.clone()), &io["y_train"].data, FORWARD)?;
    let grads = (y * tensor::<4>(&io["grad_y"], &ad)).sum().backward();
    let mut worst = check(
        "grad.x",
        &values(x.grad(&grads).unwrap()),
        &io["grad.x"].data,
        GRADIENT,
    )?;
    for (key, p) in named_params(&model) {
        let got = values(p.grad(&grads).ok_or(format!("{key}: no gradient"))?);
        worst = worst.max(check(
            &key,
            &got,
            &io[&format!("grad.{key}")].data,
            GRADIENT,
        )?);
    }
    for (key, p) in named_biases(&model) {
        let got = values(p.grad(&grads).ok_or(format!("{key}: no gradient"))?);
        worst = worst.max(check(
            &key,
            &got,
            &io[&format!("grad.{key}")].data,
            GRADIENT,
        )?);
    }
    Ok(worst)
}

#[test]
fn gradients_through_the_model_match_pytorch() {
    let io = io();
    let mut failures = Vec::new();
    for (name, device) in devices() {
        match gradients_match(&device, &io) {
            Ok(e) => println!("{name:13} every gradient matches PyTorch (max error {e:.2e})"),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn no_readback_inside_forward_and_backward() {
    let device = wgpu().autodiff();
    let ctx = drconv::burn::context(&device).expect("registered");
    let io = io();
    let model = load_pt(&device);
    let before = ctx.readbacks();
    let mut outputs = Vec::new();
    for _ in 0..5 {
        let x = tensor::<4>(&io["x"], &device).require_grad();
        let y = model.forward(x.clone());
        let grads = (y.clone() * tensor::<4>(&io["grad_y"], &device))
            .sum()
            .backward();
        outputs.push(x.grad(&grads).unwrap());
    }
    assert_eq!(
        ctx.readbacks(),
        before,
        "our forwards and backwards read nothing back"
    );
    // They were ours: burn compiles its own kernels through cubecl, never on our context.
    assert!(ctx.pipelines_compiled() > 0, "drconv's pipelines ran");
    // The values are still right after the five rounds.
    for g in outputs {
        check("grad.x", &values(g), &io["grad.x"].data, GRADIENT).unwrap();
    }
}
