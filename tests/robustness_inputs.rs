//! The bad-input catalogue: every malformed input is a clear `DrConvError` naming the value and
//! the limit, never a panic, an overflow or a GPU validation error; absurd sizes are refused
//! before anything is allocated. NaN and Inf inputs are not errors: they follow PyTorch
//! (argmax takes the first NaN channel as the maximum), checked against the CPU reference.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use drconv::internal::gpu::limits;
use drconv::verify::compare;
use drconv::weights::load_safetensors_bytes;
use drconv::{
    cpu, DrConv2d, DrConvConfig, DrConvError, DrConvParams, GpuContext, GpuTensor, Mode,
    OptimizerConfig, ParamId, Tensor, Trainer,
};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn ctx() -> Arc<GpuContext> {
    static CTX: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| pollster::block_on(GpuContext::new()).expect("a GPU adapter"))
        .clone()
}

fn config() -> DrConvConfig {
    DrConvConfig::new(2, 3, 3, 3)
        .unwrap()
        .with_padding(1)
        .unwrap()
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, seed)
}

/// The error's message, after checking its variant with `want`.
fn err<T>(r: drconv::Result<T>, want: fn(&DrConvError) -> bool) -> String {
    match r {
        Err(e) if want(&e) => e.to_string(),
        Err(e) => panic!("wrong error variant: {e:?}"),
        Ok(_) => panic!("bad input accepted"),
    }
}
fn shape_err(e: &DrConvError) -> bool {
    matches!(e, DrConvError::Shape(_))
}
fn view_err(e: &DrConvError) -> bool {
    matches!(e, DrConvError::View(_))
}
fn config_err(e: &DrConvError) -> bool {
    matches!(e, DrConvError::Config(_))
}
fn too_large(e: &DrConvError) -> bool {
    matches!(e, DrConvError::TooLarge { .. })
}
fn weights_err(e: &DrConvError) -> bool {
    matches!(e, DrConvError::Weights(_))
}

fn has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should mention {p:?}");
    }
}

// ---- configuration and shapes (host-side checks) ----

#[test]
fn zero_hyper_parameters_are_refused_by_name() {
    for (args, name) in [
        ((0, 3, 3, 2), "in_channels"),
        ((2, 0, 3, 2), "out_channels"),
        ((2, 3, 0, 2), "kernel_size"),
        ((2, 3, 3, 0), "region_num"),
    ] {
        let m = err(
            DrConvConfig::new(args.0, args.1, args.2, args.3),
            config_err,
        );
        has(&m, &[name, "is 0"]);
    }
    has(&err(config().with_stride(0), config_err), &["stride"]);
    has(&err(config().with_dilation(0), config_err), &["dilation"]);
}

#[test]
fn wrong_rank_channels_and_empty_inputs_are_refused() {
    let c = config();
    has(
        &err(c.forward_shape(&[2, 5, 5]), shape_err),
        &["4-D", "[2, 5, 5]"],
    );
    has(
        &err(c.forward_shape(&[1, 4, 5, 5]), shape_err),
        &["4 channels", "in_channels = 2"],
    );
    for s in [[0, 2, 5, 5], [1, 2, 0, 5], [1, 2, 5, 0]] {
        has(&err(c.forward_shape(&s), shape_err), &["empty"]);
    }
}

#[test]
fn output_size_zero_or_negative_is_refused() {
    // No padding: a 2 x 2 input is smaller than the 3 x 3 kernel.
    let c = DrConvConfig::new(2, 3, 3, 2).unwrap();
    has(
        &err(c.forward_shape(&[1, 2, 2, 9]), shape_err),
        &["height 2", "<= 0"],
    );
    // Dilation 4 spans 9 pixels.
    let c = c.with_dilation(4).unwrap();
    has(
        &err(c.forward_shape(&[1, 2, 9, 8]), shape_err),
        &["width 8", "span 9"],
    );
}

#[test]
fn absurd_hyper_parameters_overflow_into_errors_not_panics() {
    let c = DrConvConfig::new(1, 1, usize::MAX, 1);
    has(&err(c, too_large), &["parameter tensors"]);
    let c = DrConvConfig::new(1 << 20, 1 << 20, 3, 8);
    has(&err(c, too_large), &["in=1048576"]);
    let c = DrConvConfig::new(2, 3, 3, 2).unwrap();
    let huge_dil = c.with_dilation(usize::MAX).unwrap();
    has(
        &err(huge_dil.forward_shape(&[1, 2, 9, 9]), too_large),
        &["dilation"],
    );
    let huge_pad = c.with_padding(usize::MAX).unwrap();
    has(
        &err(huge_pad.forward_shape(&[1, 2, 9, 9]), too_large),
        &["padding"],
    );
    // Input dims at usize::MAX: the shape is fine arithmetic-wise, the limits refuse it.
    let s = c.forward_shape(&[usize::MAX, 2, usize::MAX, 9]).unwrap();
    let m = err(
        limits::check_forward(&unlimited(), &c, &s, Mode::Inference),
        too_large,
    );
    has(&m, &["input"]);
}

/// Limits with every buffer and binding size maxed out, so only u32 indexing can refuse.
fn unlimited() -> wgpu::Limits {
    wgpu::Limits {
        max_buffer_size: u64::MAX,
        max_storage_buffer_binding_size: u64::MAX,
        ..wgpu::Limits::default()
    }
}

#[test]
fn element_counts_beyond_u32_are_refused_naming_the_tensor() {
    // 256 x 256 channels, r = 8: the training correlation of a 192 x 192 image has
    // 8 * 256 * 192 * 192 = 75.5 M elements per sample, 4.8 G (> u32) at batch 64.
    let c = DrConvConfig::new(256, 256, 3, 8)
        .unwrap()
        .with_padding(1)
        .unwrap();
    let s = c.forward_shape(&[64, 256, 192, 192]).unwrap();
    let m = err(
        limits::check_forward(&unlimited(), &c, &s, Mode::Training),
        too_large,
    );
    has(&m, &["corr", "u32"]);
    match limits::check_forward(&unlimited(), &c, &s, Mode::Training) {
        Err(DrConvError::TooLarge { size, limit, .. }) => {
            assert_eq!(size, 64 * 8 * 256 * 192 * 192);
            assert_eq!(limit, limits::MAX_ITEMS);
        }
        other => panic!("{other:?}"),
    }
    // Padded rows are addressed as i32.
    let c2 = DrConvConfig::new(1, 1, 1, 1)
        .unwrap()
        .with_padding(1 << 30)
        .unwrap();
    let s2 = c2.forward_shape(&[1, 1, 1, 1]).unwrap();
    let m = err(
        limits::check_forward(&unlimited(), &c2, &s2, Mode::Inference),
        too_large,
    );
    has(&m, &["padded input height", "i32"]);
}

#[test]
fn tensors_beyond_the_binding_and_buffer_limits_are_refused() {
    // WebGPU's default limits: 128 MiB per storage binding, 256 MiB per buffer.
    let l = wgpu::Limits::default();
    let c = DrConvConfig::new(256, 256, 3, 8)
        .unwrap()
        .with_padding(1)
        .unwrap();
    // One 2048 x 2048 image: the input alone is 4 GiB, beyond max_buffer_size.
    let s = c.forward_shape(&[1, 256, 2048, 2048]).unwrap();
    let m = err(
        limits::check_forward(&l, &c, &s, Mode::Inference),
        too_large,
    );
    has(&m, &["`input`", "max_buffer_size"]);
    // Workgroups wider than the device allows.
    let tiny = wgpu::Limits {
        max_compute_workgroup_size_x: 32,
        ..wgpu::Limits::default()
    };
    let s = c.forward_shape(&[1, 256, 8, 8]).unwrap();
    let m = err(
        limits::check_forward(&tiny, &c, &s, Mode::Inference),
        too_large,
    );
    has(&m, &["workgroup size 64", "max_compute_workgroup_size_x"]);
    let small_shared = wgpu::Limits {
        max_compute_workgroup_storage_size: 4096,
        ..wgpu::Limits::default()
    };
    let m = err(
        limits::check_forward(&small_shared, &c, &s, Mode::Inference),
        too_large,
    );
    has(&m, &["max_compute_workgroup_storage_size"]);
}

// ---- the GPU layer: refusals before allocation, shape mismatches ----

#[test]
fn gpu_forward_refuses_absurd_shapes_before_allocating() {
    pollster::block_on(async {
        let ctx = ctx();
        // A 4-byte buffer viewed as a 64 x 70000 x 70000 input: the shape is checked against
        // the device before the buffer, so the refusal says the shape is too large.
        let tiny = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("tiny"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let m = err(
            GpuTensor::from_buffer(&ctx, &tiny, 0, &[1, 64, 70000, 70000]),
            too_large,
        );
        has(&m, &["view", "70000"]);
        // The same for a host tensor: upload checks before allocating.
        let m = err(ctx.check_tensor_size("x", 1 << 40), too_large);
        has(&m, &["x"]);
        ctx.check("after the refusals").unwrap();
    });
}

#[test]
fn gpu_input_whose_buffer_is_smaller_than_its_shape_is_refused() {
    pollster::block_on(async {
        let ctx = ctx();
        let layer = DrConv2d::new(ctx.clone(), &DrConvParams::init(config(), 2).unwrap()).unwrap();
        let small = layer.upload(&random(&[1, 2, 5, 5], 3)).unwrap();
        let lying = GpuTensor::from_buffer(&ctx, small.buffer(), 0, &[4, 2, 5, 5]);
        let m = err(lying, view_err);
        has(&m, &["800 bytes", "200 bytes"]);
    });
}

#[test]
fn gpu_channel_mismatch_is_refused() {
    pollster::block_on(async {
        let ctx = ctx();
        let mut layer =
            DrConv2d::new(ctx.clone(), &DrConvParams::init(config(), 2).unwrap()).unwrap();
        has(
            &err(layer.upload(&random(&[1, 3, 5, 5], 1)), shape_err),
            &["3 channels", "in_channels = 2"],
        );
        let x = ctx.upload("x", &random(&[1, 3, 5, 5], 1)).unwrap();
        has(
            &err(layer.forward(&x, Mode::Inference).await, shape_err),
            &["3 channels"],
        );
    });
}

#[test]
fn backward_grad_output_mismatch_is_refused() {
    let c = config();
    let params = DrConvParams::init(c, 4).unwrap();
    let x = random(&[2, 2, 5, 5], 5);
    // CPU reference.
    let trace = cpu::forward(&params, &x).unwrap();
    for bad in [[1, 3, 5, 5], [2, 4, 5, 5], [2, 3, 4, 5]] {
        let gy = random(&bad, 6);
        has(
            &err(cpu::backward(&params, &x, &trace, &gy), shape_err),
            &["grad_output"],
        );
    }
    // GPU.
    pollster::block_on(async {
        let ctx = ctx();
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let gx = layer.upload(&x).unwrap();
        layer.forward(&gx, Mode::Training).await.unwrap();
        for bad in [[1, 3, 5, 5], [2, 4, 5, 5], [2, 3, 4, 5]] {
            let gy = ctx.upload("gy", &random(&bad, 6)).unwrap();
            let m = err(layer.backward(&gx, &gy).await, shape_err);
            has(&m, &["grad_output", &format!("{bad:?}")]);
        }
        // A backward without its training forward is a clear error too.
        let other = layer.upload(&x).unwrap();
        let gy = ctx.upload("gy", &random(&[2, 3, 5, 5], 6)).unwrap();
        let m = err(layer.backward(&other, &gy).await, config_err);
        has(&m, &["training forward"]);
        ctx.check("after the refusals").unwrap();
    });
}

#[test]
fn training_target_mismatch_is_refused() {
    let c = config();
    let mut params = DrConvParams::init(c, 7).unwrap();
    let x = random(&[2, 2, 5, 5], 8);
    let bad = random(&[1, 3, 5, 5], 9);
    let mut state = drconv::OptimizerState::new(OptimizerConfig::sgd(0.1)).unwrap();
    has(
        &err(
            cpu::train_step(&mut params, &mut state, &x, &bad),
            shape_err,
        ),
        &["target", "[1, 3, 5, 5]"],
    );
    pollster::block_on(async {
        let ctx = ctx();
        let mut trainer = Trainer::new(ctx.clone(), &params, OptimizerConfig::sgd(0.1))
            .await
            .unwrap();
        let gx = ctx.upload("x", &x).unwrap();
        for shape in [[1, 3, 5, 5], [2, 2, 5, 5], [2, 3, 5, 4]] {
            let t = ctx.upload("t", &random(&shape, 10)).unwrap();
            let m = err(trainer.step(&gx, &t, true).await, shape_err);
            has(&m, &["target", &format!("{shape:?}")]);
        }
        assert_eq!(trainer.steps(), 0, "a refused step must not count");
    });
}

// ---- NaN and Inf: PyTorch semantics, GPU == CPU ----
//
// Values are never checked: NaN and Inf propagate through every sum that touches them, and the
// region is torch.argmax's: the first maximal guide channel, a NaN counting as the maximum (so
// the first NaN channel wins). Padding is literal zeros: a non-finite generated-kernel tap over the
// padding gives 0 * NaN = NaN, as in the float64 spec (np.pad) and PyTorch's ungrouped conv2d;
// the CPU reference and the shaders both multiply padded taps rather than skip them.

/// Within the forward tolerance where finite; the same NaN / +Inf / -Inf elsewhere.
fn same_non_finite(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    let mut non_finite = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_finite() {
            let (e, ok) = compare(&[g], &[w], 1e-5, 1e-4);
            assert!(ok, "{what}[{i}]: GPU {g} vs CPU {w} (err {e})");
        } else {
            non_finite += 1;
            let same = (g.is_nan() && w.is_nan()) || g == w;
            assert!(same, "{what}[{i}]: GPU {g} vs CPU {w}");
        }
    }
    println!(
        "{what}: {non_finite} of {} values non-finite on both",
        want.len()
    );
}

/// Runs both forward paths on the GPU and the CPU reference; region maps must be identical and
/// outputs equal within tolerance (NaN where the CPU has NaN).
fn gpu_matches_cpu(params: &DrConvParams, x: &Tensor) -> Vec<i32> {
    let want = cpu::forward(params, x).unwrap();
    pollster::block_on(async {
        let ctx = ctx();
        let mut layer = DrConv2d::new(ctx.clone(), params).unwrap();
        let gx = layer.upload(x).unwrap();
        for mode in [Mode::Training, Mode::Inference] {
            layer.plan(&gx, mode).await.unwrap().poison(&ctx);
            let got = layer.forward_trace(&gx, mode).await.unwrap();
            assert_eq!(got.region_index, want.region_index, "{mode:?} region map");
            same_non_finite(
                &got.output.data,
                &want.output.data,
                &format!("{mode:?} output"),
            );
            same_non_finite(
                &got.guide.data,
                &want.guide.data,
                &format!("{mode:?} guide"),
            );
        }
    });
    want.region_index
}

#[test]
fn nan_in_the_input_follows_the_cpu_reference() {
    let params = DrConvParams::init(DrConvConfig::new(2, 3, 3, 3).unwrap(), 11).unwrap();
    let mut x = random(&[2, 2, 6, 6], 12);
    x.data[2 * 36 + 7] = f32::NAN; // sample 1, channel 0, pixel (1, 1)
    let region = gpu_matches_cpu(&params, &x);
    // Every guide channel over the NaN is NaN, so argmax takes the first: region 0 at output
    // (0, 0) of sample 1 (4 x 4 outputs, the window covers input pixel (1, 1)).
    assert_eq!(region[16], 0);
}

#[test]
fn nan_in_the_input_with_padding_follows_the_cpu_reference() {
    // With padding 1 the NaN's pooled bin makes some generated-kernel taps NaN, and at border
    // pixels those taps lie over the padding: 0 * NaN = NaN on both implementations.
    let config = DrConvConfig::new(2, 3, 3, 3)
        .unwrap()
        .with_padding(1)
        .unwrap();
    let params = DrConvParams::init(config, 17).unwrap();
    let mut x = random(&[1, 2, 6, 6], 18);
    x.data[7] = f32::NAN;
    gpu_matches_cpu(&params, &x);
}

#[test]
fn infinities_in_the_input_follow_the_cpu_reference() {
    let params = DrConvParams::init(DrConvConfig::new(2, 3, 3, 3).unwrap(), 13).unwrap();
    let mut x = random(&[1, 2, 6, 6], 14);
    x.data[8] = f32::INFINITY;
    x.data[36 + 20] = f32::NEG_INFINITY;
    gpu_matches_cpu(&params, &x);
}

#[test]
fn nan_guide_channel_is_the_maximum_like_torch_argmax() {
    // conv_guide.bias[1] = NaN makes guide channel 1 NaN everywhere: torch.argmax picks the first
    // NaN, so every pixel takes region 1 whatever channels 0 and 2 hold.
    let mut params = DrConvParams::init(config(), 15).unwrap();
    params.get_mut(ParamId::GuideB)[1] = f32::NAN;
    params.get_mut(ParamId::GuideB)[2] = f32::INFINITY;
    let region = gpu_matches_cpu(&params, &random(&[2, 2, 5, 5], 16));
    assert!(region.iter().all(|&g| g == 1), "{region:?}");
}

// ---- weights files ----

fn st_bytes(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None::<HashMap<String, String>>).unwrap()
}

/// The six tensors of `p` encoded with `encode` as `dtype` (2 or 4 bytes per value).
fn tensors_as(
    p: &DrConvParams,
    dtype: Dtype,
    encode: fn(f32) -> Vec<u8>,
) -> Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> {
    ParamId::ALL
        .iter()
        .map(|&id| {
            let bytes = p.get(id).iter().flat_map(|&v| encode(v)).collect();
            (id.name(), dtype, p.shape(id), bytes)
        })
        .collect()
}

fn f32_le(v: f32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

#[test]
fn weights_files_bad_and_good() {
    let c = config();
    let p = DrConvParams::init(c, 17).unwrap();
    let good = st_bytes(&tensors_as(&p, Dtype::F32, f32_le));
    assert_eq!(load_safetensors_bytes(&c, &good).unwrap(), p);

    // Truncated anywhere: an error, never a panic.
    for cut in [0, 4, 8, 20, good.len() / 2, good.len() - 1] {
        err(load_safetensors_bytes(&c, &good[..cut]), weights_err);
    }
    // Missing tensor.
    let mut t = tensors_as(&p, Dtype::F32, f32_le);
    t.retain(|e| e.0 != "conv_guide.bias");
    has(
        &err(load_safetensors_bytes(&c, &st_bytes(&t)), weights_err),
        &["missing tensor `conv_guide.bias`"],
    );
    // Extra tensor.
    let mut t = tensors_as(&p, Dtype::F32, f32_le);
    t.push(("bn.weight", Dtype::F32, vec![1], f32_le(1.0)));
    has(
        &err(load_safetensors_bytes(&c, &st_bytes(&t)), weights_err),
        &["unexpected tensor `bn.weight`"],
    );
    // Wrong shape (same element count, transposed).
    let mut t = tensors_as(&p, Dtype::F32, f32_le);
    let gw = t.iter_mut().find(|e| e.0 == "conv_guide.weight").unwrap();
    gw.2 = vec![c.in_channels, c.region_num, 3, 3];
    has(
        &err(load_safetensors_bytes(&c, &st_bytes(&t)), weights_err),
        &["conv_guide.weight", "[2, 3, 3, 3]", "[3, 2, 3, 3]"],
    );
    // Dtypes: f16 and bf16 convert, f64 and integers are refused by name.
    let f16 = tensors_as(&p, Dtype::F16, |v| {
        half::f16::from_f32(v).to_le_bytes().to_vec()
    });
    let loaded = load_safetensors_bytes(&c, &st_bytes(&f16)).unwrap();
    let want = half::f16::from_f32(p.get(ParamId::GuideW)[0]).to_f32();
    assert_eq!(loaded.get(ParamId::GuideW)[0], want);
    let bf16 = tensors_as(&p, Dtype::BF16, |v| {
        half::bf16::from_f32(v).to_le_bytes().to_vec()
    });
    load_safetensors_bytes(&c, &st_bytes(&bf16)).unwrap();
    let f64s = tensors_as(&p, Dtype::F64, |v| (v as f64).to_le_bytes().to_vec());
    has(
        &err(load_safetensors_bytes(&c, &st_bytes(&f64s)), weights_err),
        &["dtype F64", "F32, F16 and BF16"],
    );
    let i32s = tensors_as(&p, Dtype::I32, |v| (v as i32).to_le_bytes().to_vec());
    has(
        &err(load_safetensors_bytes(&c, &st_bytes(&i32s)), weights_err),
        &["dtype I32"],
    );
}
