//! The generated burn models against PyTorch's outputs (committed fixtures), on wgpu with
//! drconv's kernels and on burn's flex backend, batch 1 and 3.

use std::sync::OnceLock;

use burn::tensor::{Device, Tensor};
use drconv::burn::Path;
use onnx_detector::model::{attrs, detector, detector_conv};
use onnx_detector::{decode, fixture, nms};

const DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The devices every model runs on: wgpu with our kernels (checked), and flex.
fn devices() -> Vec<(&'static str, Device)> {
    // Registered once per test binary (tests run in parallel threads).
    static WGPU: OnceLock<Device> = OnceLock::new();
    let wgpu = WGPU
        .get_or_init(|| drconv::burn::init_wgpu(&Default::default()).expect("a wgpu adapter"))
        .clone();
    assert_eq!(drconv::burn::path(&wgpu), Path::Kernels);
    vec![("wgpu kernels", wgpu), ("flex", Device::flex())]
}

fn read(name: &str) -> Vec<u8> {
    let path = format!("{DIR}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `atol 1e-4 + rtol 1e-3`, element by element, with the worst element named on failure.
fn assert_close(what: &str, got: Tensor<4>, want: Tensor<4>) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let got = got.into_data().try_to_vec::<f32>().unwrap();
    let want = want.into_data().try_to_vec::<f32>().unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 + 1e-3 * w.abs(),
            "{what}: element {i} is {g}, PyTorch's {w}"
        );
    }
}

/// One test case: the input's name in `fixtures.safetensors` and PyTorch's two outputs.
struct Case {
    input: &'static str,
    outputs: [&'static str; 2],
}

const DETECTOR: [Case; 2] = [
    Case {
        input: "input_b1",
        outputs: ["p8_b1", "p16_b1"],
    },
    Case {
        input: "input_b3",
        outputs: ["p8_b3", "p16_b3"],
    },
];

/// A detector's two outputs against PyTorch's (named `{prefix}p8_b1`...), batch 1 and 3.
fn check_detector(
    name: &str,
    prefix: &str,
    device: &Device,
    forward: impl Fn(Tensor<4>) -> (Tensor<4>, Tensor<4>),
) {
    let bytes = read("fixtures.safetensors");
    for case in DETECTOR {
        let x = fixture(&bytes, case.input, device).unwrap();
        let (p8, p16) = forward(x);
        for (got, want) in [p8, p16].into_iter().zip(case.outputs) {
            let want = format!("{prefix}{want}");
            let expected = fixture(&bytes, &want, device).unwrap();
            assert_close(&format!("{name}, {want}"), got, expected);
        }
    }
}

#[test]
fn detector_matches_pytorch() {
    for (name, device) in devices() {
        let model = detector::Model::from_embedded(&device);
        check_detector(name, "", &device, |x| model.forward(x));
    }
}

#[test]
fn plain_conv_detector_matches_pytorch() {
    for (name, device) in devices() {
        let model = detector_conv::Model::from_embedded(&device);
        check_detector(name, "conv_", &device, |x| model.forward(x));
    }
}

#[test]
fn every_attribute_matches_pytorch() {
    let bytes = read("fixtures/attrs_io.safetensors");
    for (name, device) in devices() {
        let model = attrs::Model::from_embedded(&device);
        for batch in ["b1", "b3"] {
            let x = fixture(&bytes, &format!("x_{batch}"), &device).unwrap();
            let want = fixture(&bytes, &format!("y_{batch}"), &device).unwrap();
            assert_close(&format!("{name}, attrs, {batch}"), model.forward(x), want);
        }
    }
}

/// The host decode and NMS give the boxes PyTorch's `decode` + `nms` gave on sample.png.
#[test]
fn decode_matches_the_training_script() {
    let device = Device::flex();
    let bytes = read("fixtures.safetensors");
    let p8 = fixture(&bytes, "p8_b1", &device).unwrap();
    let p16 = fixture(&bytes, "p16_b1", &device).unwrap();
    let dets = nms(decode(&p8, &p16, 0.25).remove(0), 0.45);
    let metrics: serde_json::Value =
        serde_json::from_slice(&read("metrics.json")).expect("metrics.json");
    let want = metrics["drconv"]["sample_detections"]
        .as_array()
        .expect("drconv.sample_detections");
    assert_eq!(dets.len(), want.len(), "{dets:?}");
    assert!(!dets.is_empty(), "the sample image has objects");
    // Matched as sets: scores a few 1e-7 apart may sort either way in f32 and in f64.
    for w in want {
        let box_: Vec<f64> = w["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let found = dets.iter().any(|d| {
            d.class as u64 == w["class"].as_u64().unwrap()
                && (f64::from(d.score) - w["score"].as_f64().unwrap()).abs() < 1e-4
                && d.bbox
                    .iter()
                    .zip(&box_)
                    .all(|(g, e)| (f64::from(*g) - e).abs() < 1e-2)
        });
        assert!(found, "PyTorch's {w} not among {dets:?}");
    }
}
