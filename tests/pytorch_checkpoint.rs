//! PyTorch checkpoints read without Python (`drconv::pytorch`): a real `torch.save` state_dict
//! (examples/burn_neck/neck.pt, written by PyTorch) against its safetensors twin, and the
//! checkpoints of tests/pytorch/make_checkpoints.py (torch.save's format written by Python's
//! pickle with stand-ins for PyTorch's classes): a lone layer's state_dict, and a YOLO-style
//! training checkpoint holding a whole pickled float16 model with a transposed (non-contiguous)
//! weight, a non-persistent buffer (left out, as state_dict does) and two DRConv2d layers. Truncated and corrupted files are errors, never panics.

use drconv::pytorch::{read_checkpoint, CheckpointTensor};
use drconv::weights::{find_layers, load_safetensors_bytes, load_safetensors_with_prefix};
use drconv::{DrConvConfig, DrConvError, ParamId};

const HERE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pytorch");

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Element i of the t-th tensor the generator wrote (make_checkpoints.py `value`).
fn value(t: usize, i: usize) -> f32 {
    (((7 * i + 13 * t) % 23) as f32 - 11.0) / 8.0
}

fn floats(t: &CheckpointTensor) -> Vec<f32> {
    match t.dtype {
        safetensors::Dtype::F32 => (t.data.chunks_exact(4))
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        safetensors::Dtype::F16 => (t.data.chunks_exact(2))
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        d => panic!("{}: {d:?}", t.name),
    }
}

/// The checkpoint's tensors are `expected`, in order: the t-th has the t-th (name, shape) and
/// the generator's values for t.
fn check(tensors: &[CheckpointTensor], expected: &[(String, Vec<usize>)]) {
    let want: Vec<&str> = expected.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names(tensors), want);
    for (t, (tensor, (name, shape))) in tensors.iter().zip(expected).enumerate() {
        assert_eq!(&tensor.shape, shape, "{name}");
        let values: Vec<f32> = (0..shape.iter().product()).map(|i| value(t, i)).collect();
        assert_eq!(floats(tensor), values, "{name}");
    }
}

fn names(tensors: &[CheckpointTensor]) -> Vec<&str> {
    tensors.iter().map(|t| t.name.as_str()).collect()
}

/// The six tensors of DRConv2d(i, o, k, r) under `prefix`, in the seed's creation order.
fn layer_tensors(
    prefix: &str,
    i: usize,
    o: usize,
    k: usize,
    r: usize,
) -> Vec<(String, Vec<usize>)> {
    let c = DrConvConfig::new(i, o, k, r).unwrap();
    ParamId::ALL
        .iter()
        .map(|&id| (format!("{prefix}{}", id.name()), c.param_shape(id)))
        .collect()
}

#[test]
fn a_real_torch_save_state_dict_matches_its_safetensors_twin() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/burn_neck");
    let pt = read_checkpoint(&read(&format!("{root}/neck.pt"))).unwrap();
    let st_bytes = read(&format!("{root}/neck.safetensors"));
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    let mut compared = 0;
    for (name, view) in st.tensors() {
        let t = (pt.iter())
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} not in neck.pt: {:?}", names(&pt)));
        assert_eq!(
            (t.dtype, &t.shape[..]),
            (view.dtype(), view.shape()),
            "{name}"
        );
        assert_eq!(t.data, view.data(), "{name}");
        compared += 1;
    }
    assert!(compared >= 12, "{compared} tensors");
    // The layers it finds are the safetensors file's.
    let found = find_layers(&read(&format!("{root}/neck.pt"))).unwrap();
    assert_eq!(found, find_layers(&st_bytes).unwrap());
    assert!(!found.is_empty());
}

#[test]
fn a_state_dict_loads_as_the_layer() {
    let bytes = read(&format!("{HERE}/state_dict.pt"));
    let tensors = read_checkpoint(&bytes).unwrap();
    let expected = layer_tensors("", 8, 16, 3, 4);
    check(&tensors, &expected);
    let found = find_layers(&bytes).unwrap();
    assert_eq!(found.len(), 1);
    let config = found[0].config(1, 1, 1).unwrap();
    assert_eq!(
        (
            config.in_channels,
            config.out_channels,
            config.kernel_size,
            config.region_num
        ),
        (8, 16, 3, 4)
    );
    let params = load_safetensors_bytes(&config, &bytes).unwrap();
    for (t, id) in ParamId::ALL.iter().enumerate() {
        let want: Vec<f32> = (0..params.get(*id).len()).map(|i| value(t, i)).collect();
        assert_eq!(params.get(*id), &want[..], "{}", id.name());
    }
}

#[test]
fn a_training_checkpoint_with_a_whole_half_precision_model() {
    let bytes = read(&format!("{HERE}/yolo_checkpoint.pt"));
    let tensors = read_checkpoint(&bytes).unwrap();
    let m = "model.model";
    let mut expected: Vec<(String, Vec<usize>)> = vec![
        (format!("{m}.0.conv.weight"), vec![16, 3, 3, 3]),
        (format!("{m}.0.bn.weight"), vec![16]),
        (format!("{m}.0.bn.bias"), vec![16]),
        (format!("{m}.0.bn.running_mean"), vec![16]),
        (format!("{m}.0.bn.running_var"), vec![16]),
    ];
    expected.extend(layer_tensors(&format!("{m}.1.drconv."), 16, 16, 3, 8));
    expected.extend(layer_tensors(&format!("{m}.1.proj."), 16, 8, 1, 2));
    expected.push(("optimizer.state.0.momentum_buffer".into(), vec![4]));
    check(&tensors, &expected);
    assert!(tensors[..17]
        .iter()
        .all(|t| t.dtype == safetensors::Dtype::F16));

    let found = find_layers(&bytes).unwrap();
    let got: Vec<_> = (found.iter())
        .map(|l| {
            (
                l.prefix.as_str(),
                l.in_channels,
                l.out_channels,
                l.kernel_size,
                l.region_num,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("model.model.1.drconv.", 16, 16, 3, 8),
            ("model.model.1.proj.", 16, 8, 1, 2)
        ]
    );
    // The float16 weights load as f32 (exact: the values are multiples of 1/8).
    let config = found[0].config(1, 1, 1).unwrap();
    let params = load_safetensors_with_prefix(&config, &bytes, "model.model.1.drconv.").unwrap();
    for (k, id) in ParamId::ALL.iter().enumerate() {
        let want: Vec<f32> = (0..params.get(*id).len())
            .map(|i| value(5 + k, i))
            .collect();
        assert_eq!(params.get(*id), &want[..], "{}", id.name());
    }
}

fn weights_message(r: drconv::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(DrConvError::Weights(m)) => m,
        other => panic!("expected a weights error, got {other:?}"),
    }
}

#[test]
fn truncated_corrupt_and_legacy_files_are_errors_not_panics() {
    for file in ["state_dict.pt", "yolo_checkpoint.pt"] {
        let bytes = read(&format!("{HERE}/{file}"));
        let n = bytes.len();
        for cut in [4, 30, 100, n / 3, n / 2, n - 100, n - 23, n - 1] {
            let m = weights_message(find_layers(&bytes[..cut]));
            assert!(m.contains("PyTorch checkpoint"), "{file} cut {cut}: {m}");
        }
        // Bytes flipped anywhere (seeded): an answer or an error, never a panic.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..400 {
            let mut b = bytes.clone();
            for _ in 0..4 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let at = (state >> 33) as usize % n;
                b[at] ^= (state >> 8) as u8 | 1;
            }
            let _ = read_checkpoint(&b);
            let _ = find_layers(&b);
        }
    }
    // Values shared along 2^100 paths: refused, not walked forever.
    let m = weights_message(find_layers(&read(&format!("{HERE}/shared_paths.pt"))));
    assert!(m.contains("shared along more paths"), "{m}");
    // A zip64 record offset at u64::MAX: an error (no overflow).
    let mut b = read(&format!("{HERE}/state_dict.pt"));
    b.extend(0x0706_4b50u32.to_le_bytes());
    b.extend([0; 4]);
    b.extend(u64::MAX.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    b.extend(0x0605_4b50u32.to_le_bytes());
    b.extend([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    b.extend([0xff; 8]);
    b.extend([0, 0]);
    assert!(weights_message(find_layers(&b)).contains("PyTorch checkpoint"));
    // PyTorch's pre-1.6 format: named, with the conversion.
    let mut legacy = vec![
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8,
    ];
    legacy.extend([0x50, 0x19, b'.']);
    let m = weights_message(find_layers(&legacy));
    assert!(m.contains("legacy") && m.contains("safetensors"), "{m}");
}

#[test]
fn drconv_inspect_reads_a_checkpoint() {
    let path = format!("{HERE}/yolo_checkpoint.pt");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drconv"))
        .args(["inspect", &path])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 DRConv2d layer(s)"), "{text}");
    let row = (text.lines())
        .find(|l| l.starts_with("model.model.1.proj."))
        .expect(&text);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..5],
        ["model.model.1.proj.", "16", "8", "1", "2"],
        "{text}"
    );
}
