//! `drconv::burn::DrConv2d` on every golden case, on burn's wgpu device (our kernels) and on
//! burn's CPU backend (burn's ops): the forward (training and fused inference), the region map
//! exactly, and dL/dx and every parameter's gradient through burn's autodiff.

mod burn_common;

use burn::tensor::{DType, Device, Int, Tensor};
use burn_common::golden::*;
use burn_common::*;
use drconv::burn::{DrConv2d, DrConv2dConfig, Path};
use drconv::golden::GoldenCase;
use drconv::ParamId;

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
            match run_case(case, &device, DType::F32, &F32) {
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

/// f16 input and f16 parameters run in f16 (burn's ops, on both devices) within f16's tolerance
/// of the golden values, forward, regions (exact; the zero guide ties everywhere) and gradients.
/// Cases whose top-2 guide gap (>= 1e-2, or exact ties) survives f16's rounding of the guide.
#[test]
fn f16_runs_in_f16() {
    let cases: Vec<GoldenCase> = cases()
        .into_iter()
        .filter(|c| ["tiny", "stride2", "ties_zero_guide"].contains(&c.name.as_str()))
        .collect();
    assert_eq!(cases.len(), 3);
    let mut failures = Vec::new();
    for (name, device) in devices() {
        for case in &cases {
            match run_case(case, &device, DType::F16, &F16) {
                Ok(line) => println!("{name:13} {:18} f16 ok, {line}", case.name),
                Err(e) => failures.push(format!("{name} {} f16: {e}", case.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// An input and parameters of different dtypes (f16 with f32, either way, tracked or not) are an
/// error naming both dtypes, from `try_forward` and `regions`, never a panic inside burn.
#[test]
fn mixed_dtypes_are_errors() {
    let case = cases().into_iter().find(|c| c.name == "tiny").unwrap();
    for (name, device) in devices() {
        for device in [device.clone(), device.autodiff()] {
            for (x, params) in [(DType::F32, DType::F16), (DType::F16, DType::F32)] {
                let m = layer(&case, &device, params).unwrap();
                let input = || tensor::<4>(&case.x, &device).cast(x);
                for e in [
                    m.try_forward(input()).unwrap_err(),
                    m.regions(input()).unwrap_err(),
                ] {
                    let e = e.to_string();
                    assert!(e.contains("F16") && e.contains("F32"), "{name}: {e}");
                }
            }
        }
    }
}

/// Per-op wall time (median of 31) of the burn-ops path at a mid shape (B2 I32 O32 k3 r4 32x32
/// p1) on both devices, beside the alternatives it was chosen over: `cargo test --release
/// --features burn-dev --test burn_module profile -- --ignored --nocapture`.
#[test]
#[ignore]
fn profile_burn_ops() {
    for (name, device) in devices() {
        println!("{name}:");
        profile_on(&device);
    }
}

/// `f()`, after printing its median wall time (31 calls after a first, each with a sync).
fn timed<T>(device: &Device, what: &str, mut f: impl FnMut() -> T) -> T {
    let value = f();
    let mut ms: Vec<f64> = (0..31)
        .map(|_| {
            let t = std::time::Instant::now();
            drop(f());
            device.sync().unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!("  {what:48} {:8.3} ms", ms[ms.len() / 2]);
    value
}

/// B, I, O, k, r, H = W of the profile.
const MID: [usize; 6] = [2, 32, 32, 3, 4, 32];

fn profile_on(device: &Device) {
    use burn::tensor::Distribution;

    let [b, i, o, k, r, hw] = MID;
    let random = |d: &Device| Tensor::<4>::random([b, i, hw, hw], Distribution::Default, d);
    let m = DrConv2dConfig::new(i, o, k, r).with_padding(1).init(device);
    let x = random(device);
    let (corr, guide) = profile_layer_ops(device, &m, &x);
    profile_selection(device, corr, guide);
    timed(device, "whole forward_burn_ops (untracked)", || {
        m.forward_burn_ops(x.clone()).unwrap()
    });
    let ad = device.clone().autodiff();
    let m = DrConv2dConfig::new(i, o, k, r).with_padding(1).init(&ad);
    let x = random(&ad).require_grad();
    timed(device, "whole forward + backward (autodiff)", || {
        m.forward_burn_ops(x.clone()).unwrap().sum().backward()
    });
}

/// The ops up to every region's correlation and the guide: (corr, guide).
fn profile_layer_ops(device: &Device, m: &DrConv2d, x: &Tensor<4>) -> (Tensor<5>, Tensor<4>) {
    use burn::tensor::activation::sigmoid;
    use burn::tensor::module::{adaptive_avg_pool2d, conv2d};
    use burn::tensor::ops::ConvOptions;

    let [b, i, o, k, r, hw] = MID;
    let p = |c: &burn::nn::conv::Conv2d| (c.weight.val(), Some(c.bias.as_ref().unwrap().val()));
    let (w1, b1) = p(m.conv_kernel[1].as_ref().unwrap());
    let (w3, b3) = p(m.conv_kernel[3].as_ref().unwrap());
    let (gw, gb) = p(&m.conv_guide);
    let options = |padding, groups| ConvOptions::new([1, 1], [padding; 2], [1, 1], groups);
    let t = |what: &str, f: &mut dyn FnMut() -> Tensor<4>| timed(device, what, f);
    let pooled = t("adaptive_avg_pool2d", &mut || {
        adaptive_avg_pool2d(x.clone(), [k, k])
    });
    let logits = t("conv 1x1 (logits)", &mut || {
        conv2d(pooled.clone(), w1.clone(), b1.clone(), options(0, 1))
    });
    let sig = t("sigmoid", &mut || sigmoid(logits.clone()));
    let kernels = t("grouped conv 1x1 (kernels)", &mut || {
        conv2d(sig.clone(), w3.clone(), b3.clone(), options(0, r))
    });
    let xb = x.clone().reshape([1, b * i, hw, hw]);
    let kernels = kernels.reshape([b * r * o, i, k, k]);
    let corr = t("correlation, all regions (conv, groups B)", &mut || {
        conv2d(xb.clone(), kernels.clone(), None, options(1, b))
    });
    let guide = t("guide conv", &mut || {
        conv2d(x.clone(), gw.clone(), gb.clone(), options(1, 1))
    });
    (corr.reshape([b, r, o, hw, hw]), guide)
}

/// Each pixel's region and its correlation: the path's ops and the ones they replaced.
fn profile_selection(device: &Device, corr: Tensor<5>, guide: Tensor<4>) {
    use burn::tensor::{activation::softmax, FloatDType};

    let [b, _, o, _, r, hw] = MID;
    let index = Tensor::<1, Int>::arange(0..r as i64, device).reshape([1, r, 1, 1]);
    let region = timed(device, "region map: argmax (new)", || {
        guide.clone().argmax(1)
    });
    timed(
        device,
        "region map: max, equal, mask_where, min (old)",
        || {
            let is_max = guide.clone().equal(guide.clone().max_dim(1));
            let past_end = Tensor::<4, Int>::full([b, r, hw, hw], r as i64, device);
            let index = index.clone().expand([b, r, hw, hw]);
            index.mask_where(is_max.bool_not(), past_end).min_dim(1)
        },
    );
    let mask = timed(device, "one-hot mask", || {
        region.clone().equal(index.clone()).cast(FloatDType::F32)
    });
    let soft = timed(device, "softmax", || softmax(guide.clone(), 1));
    let [mask, soft] = [mask, soft].map(|t| t.reshape([b, r, 1, hw, hw]));
    timed(device, "corr * mask, sum (untracked; old: always)", || {
        (corr.clone() * mask.clone()).sum_dim(1)
    });
    timed(device, "corr * (mask + soft - soft), sum (tracked)", || {
        let select = mask.clone() + (soft.clone() - soft.clone().detach());
        (corr.clone() * select).sum_dim(1)
    });
    timed(
        device,
        "corr * softmax, sum, minus itself (old: always)",
        || {
            let weighted = (corr.clone().detach() * soft.clone()).sum_dim(1);
            weighted.clone() - weighted.detach()
        },
    );
    timed(device, "gather over r (not taken)", || {
        let index = region.clone().reshape([b, 1, 1, hw, hw]);
        corr.clone().gather(1, index.expand([b, 1, o, hw, hw]))
    });
}

/// The parameters read back without blocking equal the blocking read, on every device.
#[test]
fn to_params_async_reads_what_to_params_reads() {
    for (name, device) in devices() {
        let layer = DrConv2dConfig::new(3, 4, 3, 2).init(&device);
        let blocking = layer.to_params().unwrap();
        let nonblocking = pollster::block_on(layer.to_params_async()).unwrap();
        for id in ParamId::ALL {
            assert_eq!(
                blocking.get(id),
                nonblocking.get(id),
                "{name} {}",
                id.name()
            );
        }
    }
}

/// `DrConv2dFn` (the layer without parameters, as ONNX models hold it) with a module's weights
/// gives that module's output bit for bit on both devices, and a weight of the wrong shape is
/// an error naming it.
#[test]
fn drconv2d_fn_takes_its_weights_per_call() {
    for (name, device) in devices() {
        let config = DrConv2dConfig::new(5, 6, 3, 3).with_padding(1);
        let m = config.init(&device);
        let f = config.init_fn();
        assert_eq!(f.layer_config(), m.layer_config(), "{name}");
        let (k1, k3) = (
            m.conv_kernel[1].as_ref().unwrap(),
            m.conv_kernel[3].as_ref().unwrap(),
        );
        let bias = |c: &burn::nn::conv::Conv2d| c.bias.as_ref().unwrap().val();
        let weights = drconv::burn::Weights {
            w1: k1.weight.val(),
            b1: bias(k1),
            w3: k3.weight.val(),
            b3: bias(k3),
            gw: m.conv_guide.weight.val(),
            gb: bias(&m.conv_guide),
        };
        let x = Tensor::<4>::random(
            [2, 5, 7, 9],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        assert_eq!(
            values(f.forward(x.clone(), weights.clone())),
            values(m.forward(x.clone())),
            "{name}"
        );
        let wrong = drconv::burn::Weights {
            gb: Tensor::zeros([4], &device),
            ..weights
        };
        let e = f.try_forward(x, wrong).unwrap_err().to_string();
        assert!(
            e.contains("conv_guide.bias") && e.contains("[4]"),
            "{name}: {e}"
        );
    }
}
