//! Bad inputs give a `DrConvError` whose message names the offending value, never a panic:
//! configs, input shapes (CPU reference and GPU layer), weights files, and a missing adapter.

use std::collections::HashMap;
use std::sync::Arc;

use drconv::weights::{load_safetensors_bytes, save_safetensors_bytes};
use drconv::{
    ContextOptions, DrConv2d, DrConvConfig, DrConvError, DrConvParams, GpuContext, Mode, ParamId,
    Tensor,
};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// The error's message, asserting it contains every `needle`.
fn expect_err<T>(r: drconv::Result<T>, needles: &[&str]) -> DrConvError {
    let Err(e) = r else {
        panic!("expected an error mentioning {needles:?}");
    };
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
    }
    e
}

fn layer_config() -> DrConvConfig {
    DrConvConfig::new(3, 4, 3, 2)
        .unwrap()
        .with_padding(1)
        .unwrap()
}

fn params() -> DrConvParams {
    DrConvParams::init(layer_config(), 7).unwrap()
}

fn ctx() -> Arc<GpuContext> {
    pollster::block_on(GpuContext::new()).expect("a GPU adapter (lavapipe on CI)")
}

/// Runs a forward of `shape` through the CPU reference and through the GPU layer, bypassing
/// `DrConv2d::upload`'s own check, and returns both errors.
fn forward_errors(shape: &[usize]) -> (DrConvError, DrConvError) {
    let n: usize = shape.iter().product();
    let x = Tensor::new(shape, vec![0.5; n]).unwrap();
    let cpu = drconv::cpu::forward(&params(), &x).expect_err("CPU forward should fail");
    let ctx = ctx();
    let mut layer = DrConv2d::new(ctx.clone(), &params()).unwrap();
    // A view of a buffer of the right size stands in for the data: the shape check must come
    // before any use (or the view itself is refused, for shapes no tensor has).
    let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("x"),
        size: (n as u64 * 4).max(16),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let gpu = drconv::GpuTensor::from_buffer(&ctx, &buffer, 0, shape)
        .and_then(|xg| pollster::block_on(layer.forward(&xg, Mode::Inference)))
        .expect_err("GPU forward should fail");
    (cpu, gpu)
}

#[test]
fn zero_hyper_parameters_are_named() {
    expect_err(DrConvConfig::new(3, 4, 3, 0), &["region_num", "0"]);
    expect_err(DrConvConfig::new(3, 4, 0, 2), &["kernel_size", "0"]);
    expect_err(DrConvConfig::new(0, 4, 3, 2), &["in_channels"]);
    expect_err(DrConvConfig::new(3, 0, 3, 2), &["out_channels"]);
    expect_err(layer_config().with_stride(0), &["stride"]);
    expect_err(layer_config().with_dilation(0), &["dilation"]);
    // A config built by hand skips `new`; the layer constructors validate it again.
    let mut c = layer_config();
    c.region_num = 0;
    expect_err(DrConvParams::init(c, 1), &["region_num"]);
    let mut p = params();
    p.config.kernel_size = 0;
    expect_err(DrConv2d::new(ctx(), &p), &["kernel_size"]);
}

#[test]
fn channel_mismatch_is_named() {
    let (cpu, gpu) = forward_errors(&[1, 5, 8, 8]);
    for e in [cpu, gpu] {
        assert!(matches!(e, DrConvError::Shape(_)), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("5 channels") && msg.contains("in_channels = 3"),
            "{msg}"
        );
    }
    let layer = DrConv2d::new(ctx(), &params()).unwrap();
    expect_err(
        layer.upload(&Tensor::zeros(&[1, 2, 8, 8])),
        &["2 channels", "in_channels = 3"],
    );
}

#[test]
fn empty_and_non_4d_inputs_are_refused() {
    for shape in [[0, 3, 8, 8], [1, 3, 0, 8], [1, 3, 8, 0]] {
        let (cpu, gpu) = forward_errors(&shape);
        for e in [cpu, gpu] {
            assert!(matches!(e, DrConvError::Shape(_)), "{e:?}");
            assert!(e.to_string().contains("empty"), "{e}");
        }
    }
    let (cpu, gpu) = forward_errors(&[3, 8, 8]);
    for e in [cpu, gpu] {
        assert!(
            e.to_string().contains("4-D") && e.to_string().contains("[3, 8, 8]"),
            "{e}"
        );
    }
    // Data that does not fill its shape never reaches a kernel.
    expect_err(
        Tensor::new(&[1, 3, 2, 2], vec![0.0; 5]),
        &["[1, 3, 2, 2]", "12", "5"],
    );
    expect_err(ctx().empty("x", &[1, 0, 4]), &["[1, 0, 4]", "empty"]);
}

#[test]
fn output_size_not_positive_is_named() {
    // k = 3, padding 1, dilation 3: span 7 > 1 + 2 height.
    let mut c = layer_config().with_dilation(3).unwrap();
    c.padding = 1;
    let p = DrConvParams::init(c, 3).unwrap();
    let x = Tensor::zeros(&[1, 3, 1, 9]);
    expect_err(
        drconv::cpu::forward(&p, &x),
        &["height 1", "span 7", "<= 0"],
    );
    let layer = DrConv2d::new(ctx(), &p).unwrap();
    expect_err(layer.upload(&x), &["height 1", "span 7"]);
    expect_err(c.forward_shape(&[1, 3, 9, 2]), &["width 2", "span 7"]);
}

/// safetensors bytes holding `params`' tensors, minus `drop` and with `reshape` applied.
fn weights_file(
    params: &DrConvParams,
    drop: Option<ParamId>,
    reshape: Option<(ParamId, Vec<usize>)>,
) -> Vec<u8> {
    let data: Vec<(ParamId, Vec<u8>)> = ParamId::ALL
        .iter()
        .filter(|&&id| Some(id) != drop)
        .map(|&id| {
            (
                id,
                params
                    .get(id)
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(id, bytes)| {
            let shape = match &reshape {
                Some((r, s)) if r == id => s.clone(),
                _ => params.shape(*id),
            };
            (
                id.name().to_string(),
                TensorView::new(Dtype::F32, shape, bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None::<HashMap<String, String>>).unwrap()
}

#[test]
fn weights_with_a_missing_tensor_or_wrong_shape_are_named() {
    let p = params();
    let c = layer_config();
    // The well-formed file loads, so the failures below are due to the damage alone.
    assert_eq!(
        load_safetensors_bytes(&c, &weights_file(&p, None, None)).unwrap(),
        p
    );
    let saved = save_safetensors_bytes(&p).unwrap();
    assert_eq!(SafeTensors::deserialize(&saved).unwrap().len(), 6);

    let e = expect_err(
        load_safetensors_bytes(&c, &weights_file(&p, Some(ParamId::GuideB), None)),
        &["missing", "conv_guide.bias"],
    );
    assert!(matches!(e, DrConvError::Weights(_)));

    // conv_guide.weight is r x I x k x k = [2, 3, 3, 3]; same element count, wrong layout.
    let e = expect_err(
        load_safetensors_bytes(
            &c,
            &weights_file(&p, None, Some((ParamId::GuideW, vec![2, 3, 9]))),
        ),
        &["conv_guide.weight", "[2, 3, 9]", "[2, 3, 3, 3]"],
    );
    assert!(matches!(e, DrConvError::Weights(_)));

    // The right file for another layer: the shapes name the mismatch.
    let other = DrConvConfig::new(3, 4, 5, 2).unwrap();
    expect_err(
        load_safetensors_bytes(&other, &saved),
        &["conv_guide.weight", "[2, 3, 3, 3]"],
    );
    expect_err(
        load_safetensors_bytes(&c, &saved[..saved.len() / 2]),
        &["safetensors"],
    );
    expect_err(load_safetensors_bytes(&c, b""), &["safetensors"]);

    // Parameter vectors of the wrong length, through the constructor that skips files.
    let mut values = p.values.clone();
    values[ParamId::KernelB3.index()].pop();
    expect_err(
        DrConvParams::from_values(c, values),
        &["conv_kernel.3.bias", "23", "24"],
    );
}

#[test]
fn no_adapter_is_an_error() {
    // No backend at all, and Metal, which a Linux build of wgpu does not include.
    for backends in [wgpu::Backends::empty(), wgpu::Backends::METAL] {
        let r = pollster::block_on(GpuContext::with_options(
            ContextOptions::default().backends(backends),
        ));
        let e = expect_err(r, &["no GPU adapter"]);
        assert!(matches!(e, DrConvError::NoAdapter(_)), "{e:?}");
    }
}
