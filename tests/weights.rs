//! safetensors loading and saving: round trips, f16/bf16 conversion, prefixed model files,
//! config inference, and an error (never a panic) for every malformed input.

use std::collections::HashMap;

use drconv::weights::{
    infer_config, infer_config_with_prefix, load_safetensors, load_safetensors_bytes,
    load_safetensors_with_prefix, save_safetensors, save_safetensors_bytes, saved_config,
    CONFIG_METADATA_KEY,
};
use drconv::{DrConvConfig, DrConvError, DrConvParams, ParamId};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// One tensor to write into a test file.
struct T {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl T {
    fn f32(name: &str, shape: Vec<usize>, values: &[f32]) -> T {
        T {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

fn build(tensors: &[T], metadata: Option<HashMap<String, String>>) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, metadata).unwrap()
}

fn pt_metadata() -> Option<HashMap<String, String>> {
    Some(HashMap::from([("format".to_string(), "pt".to_string())]))
}

/// The six tensors of `params` as f32, named `prefix + name`, as PyTorch's state_dict has them.
fn reference_tensors(params: &DrConvParams, prefix: &str) -> Vec<T> {
    ParamId::ALL
        .iter()
        .map(|&id| {
            T::f32(
                &format!("{prefix}{}", id.name()),
                params.shape(id),
                params.get(id),
            )
        })
        .collect()
}

fn config() -> DrConvConfig {
    DrConvConfig::new(3, 4, 3, 2).unwrap()
}

fn params() -> DrConvParams {
    DrConvParams::init(config(), 7).unwrap()
}

fn weights_err(r: drconv::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(DrConvError::Weights(m)) => m,
        other => panic!("expected a Weights error, got {other:?}"),
    }
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("drconv-weights-{}-{name}", std::process::id()))
}

#[test]
fn round_trip_bytes() {
    let p = params();
    let bytes = save_safetensors_bytes(&p).unwrap();
    let back = load_safetensors_bytes(&p.config, &bytes).unwrap();
    assert_eq!(back, p);
}

#[test]
fn round_trip_file_and_io_error() {
    let p = DrConvParams::init(
        DrConvConfig::new(2, 5, 1, 3)
            .unwrap()
            .with_stride(2)
            .unwrap(),
        11,
    )
    .unwrap();
    let path = temp_path("round_trip.safetensors");
    save_safetensors(&p, &path).unwrap();
    let back = load_safetensors(&p.config, &path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(back, p);

    match load_safetensors(&p.config, &path) {
        Err(DrConvError::Io { path: shown, .. }) => assert!(shown.contains("round_trip")),
        other => panic!("expected an Io error, got {other:?}"),
    }
}

#[test]
fn saved_file_has_reference_names_shapes_and_metadata() {
    let p = params();
    let bytes = save_safetensors_bytes(&p).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort_unstable();
    let mut want: Vec<&str> = ParamId::ALL.iter().map(|p| p.name()).collect();
    want.sort_unstable();
    assert_eq!(names, want);
    let (i, o, k, r) = (3, 4, 3, 2);
    let shapes = [
        ("conv_kernel.1.weight", vec![r * r, i, 1, 1]),
        ("conv_kernel.1.bias", vec![r * r]),
        ("conv_kernel.3.weight", vec![r * i * o, r, 1, 1]),
        ("conv_kernel.3.bias", vec![r * i * o]),
        ("conv_guide.weight", vec![r, i, k, k]),
        ("conv_guide.bias", vec![r]),
    ];
    for (name, shape) in shapes {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        let id = ParamId::from_name(name).unwrap();
        let got: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, p.get(id), "{name}");
    }
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().as_ref().unwrap();
    assert_eq!(meta["format"], "pt");
    let cfg: DrConvConfig = serde_json::from_str(&meta[CONFIG_METADATA_KEY]).unwrap();
    assert_eq!(cfg, p.config);
    assert_eq!(saved_config(&bytes).unwrap(), Some(p.config));
}

/// What `safetensors.torch.save_file(module.state_dict())` writes: the six f32 tensors and
/// `{"format": "pt"}` only, no drconv config. Built with `safetensors::serialize`.
#[test]
fn pytorch_layout_fixture_without_config_metadata_loads() {
    let p = params();
    let bytes = build(&reference_tensors(&p, ""), pt_metadata());
    assert_eq!(saved_config(&bytes).unwrap(), None);
    assert_eq!(load_safetensors_bytes(&p.config, &bytes).unwrap(), p);
    // No metadata at all loads too.
    let bytes = build(&reference_tensors(&p, ""), None);
    assert_eq!(load_safetensors_bytes(&p.config, &bytes).unwrap(), p);
}

/// A file written byte by byte (8-byte little-endian header length, JSON header, raw data), for
/// DRConv2d(1, 1, 1, r=1): independent of any serializer.
#[test]
fn handwritten_fixture_loads() {
    let names = [
        "conv_guide.bias",
        "conv_guide.weight",
        "conv_kernel.1.bias",
        "conv_kernel.1.weight",
        "conv_kernel.3.bias",
        "conv_kernel.3.weight",
    ];
    let mut header = String::from(r#"{"__metadata__":{"format":"pt"}"#);
    let mut data = Vec::new();
    for (j, name) in names.iter().enumerate() {
        let shape = if name.ends_with("bias") {
            "[1]"
        } else {
            "[1,1,1,1]"
        };
        header.push_str(&format!(
            r#","{name}":{{"dtype":"F32","shape":{shape},"data_offsets":[{},{}]}}"#,
            4 * j,
            4 * j + 4
        ));
        data.extend_from_slice(&(j as f32 + 0.5).to_le_bytes());
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);

    let cfg = DrConvConfig::new(1, 1, 1, 1).unwrap();
    let p = load_safetensors_bytes(&cfg, &bytes).unwrap();
    assert_eq!(p.get(ParamId::GuideB), &[0.5]);
    assert_eq!(p.get(ParamId::GuideW), &[1.5]);
    assert_eq!(p.get(ParamId::KernelB1), &[2.5]);
    assert_eq!(p.get(ParamId::KernelW1), &[3.5]);
    assert_eq!(p.get(ParamId::KernelB3), &[4.5]);
    assert_eq!(p.get(ParamId::KernelW3), &[5.5]);
    assert_eq!(infer_config(&bytes, 1, 0, 1).unwrap(), cfg);
}

fn half_file(p: &DrConvParams, dtype: Dtype) -> (Vec<u8>, DrConvParams) {
    let mut expected = p.clone();
    let tensors: Vec<T> = ParamId::ALL
        .iter()
        .map(|&id| {
            let (data, rounded): (Vec<u8>, Vec<f32>) = match dtype {
                Dtype::F16 => p
                    .get(id)
                    .iter()
                    .map(|&v| {
                        let h = half::f16::from_f32(v);
                        (h.to_bits().to_le_bytes(), h.to_f32())
                    })
                    .fold((vec![], vec![]), |(mut d, mut r), (b, f)| {
                        d.extend_from_slice(&b);
                        r.push(f);
                        (d, r)
                    }),
                _ => p
                    .get(id)
                    .iter()
                    .map(|&v| {
                        let h = half::bf16::from_f32(v);
                        (h.to_bits().to_le_bytes(), h.to_f32())
                    })
                    .fold((vec![], vec![]), |(mut d, mut r), (b, f)| {
                        d.extend_from_slice(&b);
                        r.push(f);
                        (d, r)
                    }),
            };
            *expected.get_mut(id) = rounded;
            T {
                name: id.name().to_string(),
                dtype,
                shape: p.shape(id),
                data,
            }
        })
        .collect();
    (build(&tensors, pt_metadata()), expected)
}

#[test]
fn f16_file_loads_with_exact_conversion() {
    let p = params();
    let (bytes, expected) = half_file(&p, Dtype::F16);
    let got = load_safetensors_bytes(&p.config, &bytes).unwrap();
    assert_eq!(got, expected);
    for id in ParamId::ALL {
        for (a, b) in got.get(id).iter().zip(p.get(id)) {
            assert!((a - b).abs() <= 1e-3, "{}: {a} vs {b}", id.name());
        }
    }
    // Known bit patterns: 0x3C00 = 1.0, 0xC000 = -2.0, 0x3555 ~ 0.33325, 0x7C00 = +inf.
    let cfg = DrConvConfig::new(1, 1, 1, 2).unwrap();
    let mut tensors = reference_tensors(&DrConvParams::init(cfg, 1).unwrap(), "");
    let gw = tensors
        .iter_mut()
        .find(|t| t.name == "conv_guide.weight")
        .unwrap();
    gw.dtype = Dtype::F16;
    gw.data = [0x3C00u16, 0xC000]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    let gb = tensors
        .iter_mut()
        .find(|t| t.name == "conv_guide.bias")
        .unwrap();
    gb.dtype = Dtype::F16;
    gb.data = [0x3555u16, 0x7C00]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    let got = load_safetensors_bytes(&cfg, &build(&tensors, None)).unwrap();
    assert_eq!(got.get(ParamId::GuideW), &[1.0, -2.0]);
    assert_eq!(got.get(ParamId::GuideB), &[1365.0 / 4096.0, f32::INFINITY]);
}

#[test]
fn bf16_file_loads_with_exact_conversion() {
    let p = params();
    let (bytes, expected) = half_file(&p, Dtype::BF16);
    let got = load_safetensors_bytes(&p.config, &bytes).unwrap();
    assert_eq!(got, expected);
    for id in ParamId::ALL {
        for (a, b) in got.get(id).iter().zip(p.get(id)) {
            assert!((a - b).abs() <= 1e-2, "{}: {a} vs {b}", id.name());
        }
    }
    // bf16 is the top half of an f32: 0x3F80 = 1.0, 0xC040 = -3.0.
    let cfg = DrConvConfig::new(1, 1, 1, 2).unwrap();
    let mut tensors = reference_tensors(&DrConvParams::init(cfg, 1).unwrap(), "");
    let gb = tensors
        .iter_mut()
        .find(|t| t.name == "conv_guide.bias")
        .unwrap();
    gb.dtype = Dtype::BF16;
    gb.data = [0x3F80u16, 0xC040]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    let got = load_safetensors_bytes(&cfg, &build(&tensors, None)).unwrap();
    assert_eq!(got.get(ParamId::GuideB), &[1.0, -3.0]);
}

#[test]
fn mixed_dtypes_load() {
    let p = params();
    let mut tensors = reference_tensors(&p, "");
    let mut expected = p.clone();
    let t = &mut tensors[ParamId::KernelW3.index()];
    t.dtype = Dtype::BF16;
    t.data = p
        .get(ParamId::KernelW3)
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
        .collect();
    *expected.get_mut(ParamId::KernelW3) = p
        .get(ParamId::KernelW3)
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect();
    assert_eq!(
        load_safetensors_bytes(&p.config, &build(&tensors, None)).unwrap(),
        expected
    );
}

#[test]
fn nan_and_inf_values_are_allowed() {
    let mut p = params();
    p.get_mut(ParamId::KernelB3)[0] = f32::NAN;
    p.get_mut(ParamId::GuideB)[1] = f32::NEG_INFINITY;
    let bytes = save_safetensors_bytes(&p).unwrap();
    let back = load_safetensors_bytes(&p.config, &bytes).unwrap();
    for id in ParamId::ALL {
        let a: Vec<u32> = back.get(id).iter().map(|v| v.to_bits()).collect();
        let b: Vec<u32> = p.get(id).iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b, "{}", id.name());
    }
}

#[test]
fn missing_tensor_is_named_and_present_ones_listed() {
    let p = params();
    for id in ParamId::ALL {
        let tensors: Vec<T> = reference_tensors(&p, "")
            .into_iter()
            .filter(|t| t.name != id.name())
            .collect();
        let msg = weights_err(load_safetensors_bytes(&p.config, &build(&tensors, None)));
        assert!(msg.contains("missing"), "{msg}");
        assert!(msg.contains(&format!("`{}`", id.name())), "{msg}");
        let other = ParamId::ALL.into_iter().find(|&o| o != id).unwrap();
        assert!(msg.contains(other.name()), "lists present tensors: {msg}");
    }
}

#[test]
fn extra_tensor_is_named() {
    let p = params();
    let mut tensors = reference_tensors(&p, "");
    tensors.push(T::f32("conv_kernel.2.weight", vec![2], &[0.0, 1.0]));
    let msg = weights_err(load_safetensors_bytes(&p.config, &build(&tensors, None)));
    assert!(
        msg.contains("unexpected tensor `conv_kernel.2.weight`"),
        "{msg}"
    );
}

#[test]
fn prefixed_file_is_refused_by_the_plain_loader_with_a_hint() {
    let p = params();
    let bytes = build(&reference_tensors(&p, "neck.drconv."), None);
    let msg = weights_err(load_safetensors_bytes(&p.config, &bytes));
    assert!(msg.contains("conv_kernel.1.weight"), "{msg}");
    assert!(msg.contains("`neck.drconv.`"), "{msg}");
    assert!(msg.contains("load_safetensors_with_prefix"), "{msg}");

    // Six plain tensors plus a prefixed copy: the copy is an unexpected tensor, with the hint.
    let mut tensors = reference_tensors(&p, "");
    tensors.extend(reference_tensors(&p, "neck.drconv."));
    let msg = weights_err(load_safetensors_bytes(&p.config, &build(&tensors, None)));
    assert!(
        msg.contains("unexpected tensor `neck.drconv.conv_guide.bias`"),
        "{msg}"
    );
    assert!(msg.contains("load_safetensors_with_prefix"), "{msg}");
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let p = params();
    // The reference's 1x1 conv weight squeezed to 2-D.
    let mut tensors = reference_tensors(&p, "");
    tensors[ParamId::KernelW1.index()].shape = vec![4, 3];
    let msg = weights_err(load_safetensors_bytes(&p.config, &build(&tensors, None)));
    assert!(msg.contains("`conv_kernel.1.weight`"), "{msg}");
    assert!(msg.contains("[4, 3]"), "{msg}");
    assert!(msg.contains("[4, 3, 1, 1]"), "{msg}");

    // A file for a different layer.
    let other = DrConvParams::init(DrConvConfig::new(3, 5, 3, 2).unwrap(), 1).unwrap();
    let bytes = save_safetensors_bytes(&other).unwrap();
    let msg = weights_err(load_safetensors_bytes(&p.config, &bytes));
    assert!(msg.contains("`conv_kernel.3.weight`"), "{msg}");
    assert!(msg.contains("[30, 2, 1, 1]"), "{msg}");
    assert!(msg.contains("[24, 2, 1, 1]"), "{msg}");
}

#[test]
fn unsupported_dtypes_are_refused_naming_tensor_and_dtype() {
    let p = params();
    for (dtype, width) in [
        (Dtype::I32, 4),
        (Dtype::F64, 8),
        (Dtype::I64, 8),
        (Dtype::U8, 1),
        (Dtype::F8_E4M3, 1),
        (Dtype::BOOL, 1),
    ] {
        let mut tensors = reference_tensors(&p, "");
        let t = &mut tensors[ParamId::GuideW.index()];
        t.dtype = dtype;
        t.data = vec![0; p.get(ParamId::GuideW).len() * width];
        let msg = weights_err(load_safetensors_bytes(&p.config, &build(&tensors, None)));
        assert!(msg.contains("`conv_guide.weight`"), "{msg}");
        assert!(msg.contains(&format!("dtype {dtype}")), "{msg}");
    }
}

#[test]
fn every_truncation_errors() {
    let p = params();
    let bytes = save_safetensors_bytes(&p).unwrap();
    for cut in 0..bytes.len() {
        let msg = weights_err(load_safetensors_bytes(&p.config, &bytes[..cut]));
        assert!(
            msg.contains("not a valid safetensors file"),
            "cut {cut}: {msg}"
        );
    }
    // Trailing garbage is corrupt too.
    let mut longer = bytes.clone();
    longer.push(0);
    weights_err(load_safetensors_bytes(&p.config, &longer));
    weights_err(infer_config(&bytes[..bytes.len() - 1], 1, 0, 1));
    weights_err(saved_config(&bytes[..bytes.len() - 1]));
}

#[test]
fn truncated_file_on_disk_errors_naming_the_file() {
    let p = params();
    let bytes = save_safetensors_bytes(&p).unwrap();
    let path = temp_path("truncated.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let r = load_safetensors(&p.config, &path);
    std::fs::remove_file(&path).unwrap();
    let msg = weights_err(r);
    assert!(msg.contains("truncated.safetensors"), "{msg}");
}

/// Flips every byte of a valid file (header and data) a few ways: each load must return,
/// never panic. Flips in the data section give other (possibly NaN) values, which is fine.
#[test]
fn corrupted_bytes_never_panic() {
    let cfg = DrConvConfig::new(2, 2, 1, 2).unwrap();
    let p = DrConvParams::init(cfg, 3).unwrap();
    let bytes = save_safetensors_bytes(&p).unwrap();
    let mut errors = 0;
    for pos in 0..bytes.len() {
        for x in [0x01u8, 0x08, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[pos] ^= x;
            errors += load_safetensors_bytes(&cfg, &b).is_err() as usize;
            let _ = load_safetensors_with_prefix(&cfg, &b, "");
            let _ = infer_config(&b, 1, 0, 1);
            let _ = saved_config(&b);
        }
    }
    assert!(errors > 0);
    // Short and random inputs.
    let mut state = 0x1234_5678_9abc_def0u64;
    for len in 0..200usize {
        let mut b = Vec::with_capacity(len);
        for _ in 0..len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            b.push((state >> 56) as u8);
        }
        if len >= 8 {
            // A plausible header length, so the JSON parser sees the rest.
            b[..8].copy_from_slice(&((len - 8) as u64).to_le_bytes());
        }
        weights_err(load_safetensors_bytes(&cfg, &b));
        weights_err(infer_config(&b, 1, 0, 1));
    }
}

fn raw_file(header: &str, data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

/// Offsets near usize::MAX make the safetensors crate's `end + 8 + header_len` overflow (a panic
/// with overflow checks on); the loader must refuse them first.
#[test]
fn huge_offsets_error_without_overflow() {
    let s: u64 = (1u64 << 61) - 1; // the largest U8 tensor whose bit count fits usize
    let mut header = String::from("{");
    for j in 0..8u64 {
        if j > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            r#""t{j}":{{"dtype":"U8","shape":[{s}],"data_offsets":[{},{}]}}"#,
            j * s,
            (j + 1) * s
        ));
    }
    header.push('}');
    let bytes = raw_file(&header, 0);
    let msg = weights_err(load_safetensors_bytes(&config(), &bytes));
    assert!(msg.contains("data offset"), "{msg}");
    weights_err(infer_config(&bytes, 1, 0, 1));
    weights_err(saved_config(&bytes));

    // Header length beyond the file, and u64::MAX.
    let mut bytes = raw_file("{}", 0);
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    weights_err(load_safetensors_bytes(&config(), &bytes));
    bytes[..8].copy_from_slice(&3u64.to_le_bytes());
    weights_err(load_safetensors_bytes(&config(), &bytes));
    // Offsets beyond what fits a u64 or negative ones are JSON the crate refuses.
    let bytes = raw_file(
        r#"{"conv_guide.bias":{"dtype":"F32","shape":[2],"data_offsets":[-1,99999999999999999999999]}}"#,
        8,
    );
    weights_err(load_safetensors_bytes(&config(), &bytes));
    // A zero-sized dimension with a huge one beside it.
    let bytes = raw_file(
        &format!(
            r#"{{"conv_guide.bias":{{"dtype":"F32","shape":[2],"data_offsets":[0,8]}},"conv_guide.weight":{{"dtype":"F32","shape":[2,0,{0},{0}],"data_offsets":[8,8]}},"conv_kernel.3.bias":{{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}}}"#,
            u64::MAX
        ),
        8,
    );
    weights_err(infer_config(&bytes, 1, 0, 1));
    weights_err(load_safetensors_bytes(&config(), &bytes));
}

#[test]
fn prefix_loading_picks_the_layer_out_of_a_model() {
    let p = params();
    let mut tensors = reference_tensors(&p, "model.neck.drconv.");
    // Another DRConv2d and unrelated tensors of any dtype are ignored.
    let other = DrConvParams::init(DrConvConfig::new(8, 8, 3, 4).unwrap(), 2).unwrap();
    tensors.extend(reference_tensors(&other, "model.head.drconv."));
    tensors.push(T::f32("model.backbone.conv.weight", vec![2, 2], &[1.0; 4]));
    tensors.push(T {
        name: "model.num_batches_tracked".to_string(),
        dtype: Dtype::I64,
        shape: vec![],
        data: 5i64.to_le_bytes().to_vec(),
    });
    let bytes = build(&tensors, pt_metadata());

    assert_eq!(
        load_safetensors_with_prefix(&p.config, &bytes, "model.neck.drconv.").unwrap(),
        p
    );
    assert_eq!(
        load_safetensors_with_prefix(&other.config, &bytes, "model.head.drconv.").unwrap(),
        other
    );
    assert_eq!(
        infer_config_with_prefix(&bytes, "model.neck.drconv.", 1, 0, 1).unwrap(),
        p.config
    );

    // The plain loader refuses the model file, naming both candidate prefixes.
    let msg = weights_err(load_safetensors_bytes(&p.config, &bytes));
    assert!(msg.contains("`model.neck.drconv.`"), "{msg}");
    assert!(msg.contains("`model.head.drconv.`"), "{msg}");

    // A wrong prefix names the missing tensor and the candidates.
    let msg = weights_err(load_safetensors_with_prefix(
        &p.config,
        &bytes,
        "neck.drconv.",
    ));
    assert!(
        msg.contains("missing tensor `neck.drconv.conv_kernel.1.weight`"),
        "{msg}"
    );
    assert!(
        msg.contains("no tensor starts with `neck.drconv.`"),
        "{msg}"
    );
    assert!(msg.contains("`model.neck.drconv.`"), "{msg}");

    // A missing tensor under the right prefix is named, with the ones present listed.
    let tensors: Vec<T> = reference_tensors(&p, "neck.drconv.")
        .into_iter()
        .filter(|t| t.name != "neck.drconv.conv_guide.bias")
        .collect();
    let msg = weights_err(load_safetensors_with_prefix(
        &p.config,
        &build(&tensors, None),
        "neck.drconv.",
    ));
    assert!(
        msg.contains("missing tensor `neck.drconv.conv_guide.bias`"),
        "{msg}"
    );
    assert!(msg.contains("neck.drconv.conv_guide.weight"), "{msg}");
    assert!(
        !msg.contains("load_safetensors_with_prefix"),
        "no self-hint: {msg}"
    );

    // Shape and dtype checks apply under a prefix too.
    let mut tensors = reference_tensors(&p, "neck.drconv.");
    tensors[ParamId::GuideB.index()].dtype = Dtype::I32;
    let msg = weights_err(load_safetensors_with_prefix(
        &p.config,
        &build(&tensors, None),
        "neck.drconv.",
    ));
    assert!(
        msg.contains("`neck.drconv.conv_guide.bias` has dtype I32"),
        "{msg}"
    );

    // An empty prefix loads a plain file.
    let bytes = save_safetensors_bytes(&p).unwrap();
    assert_eq!(
        load_safetensors_with_prefix(&p.config, &bytes, "").unwrap(),
        p
    );
}

#[test]
fn infer_config_recovers_the_layer() {
    for (i, o, k, r) in [(3, 4, 3, 2), (1, 1, 1, 1), (5, 7, 5, 8), (16, 2, 1, 3)] {
        let cfg = DrConvConfig::new(i, o, k, r).unwrap();
        let bytes = save_safetensors_bytes(&DrConvParams::init(cfg, 5).unwrap()).unwrap();
        assert_eq!(infer_config(&bytes, 1, 0, 1).unwrap(), cfg);
        let strided = infer_config(&bytes, 2, 1, 3).unwrap();
        assert_eq!(
            strided,
            cfg.with_stride(2)
                .unwrap()
                .with_padding(1)
                .unwrap()
                .with_dilation(3)
                .unwrap()
        );
        // f16 files infer the same way.
        let (half_bytes, _) = half_file(&DrConvParams::init(cfg, 5).unwrap(), Dtype::F16);
        assert_eq!(infer_config(&half_bytes, 1, 0, 1).unwrap(), cfg);
    }
    // Invalid stride is a config error.
    let bytes = save_safetensors_bytes(&params()).unwrap();
    assert!(matches!(
        infer_config(&bytes, 0, 0, 1),
        Err(DrConvError::Config(_))
    ));
}

#[test]
fn infer_config_rejects_inconsistent_shapes() {
    let p = params(); // I=3, O=4, k=3, r=2
    let with = |id: ParamId, shape: Vec<usize>| {
        let mut tensors = reference_tensors(&p, "");
        let n: usize = shape.iter().product();
        let t = &mut tensors[id.index()];
        t.shape = shape;
        t.data = vec![0; 4 * n];
        build(&tensors, None)
    };
    let cases = [
        // r*I*O not a multiple of r*I.
        (ParamId::KernelB3, vec![25], "conv_kernel.3.bias"),
        (ParamId::KernelB3, vec![0], "conv_kernel.3.bias"),
        (ParamId::KernelB3, vec![4, 6], "conv_kernel.3.bias"),
        // guide bias disagrees with guide weight's r.
        (ParamId::GuideB, vec![3], "conv_guide.weight"),
        (ParamId::GuideB, vec![2, 1], "conv_guide.bias"),
        (ParamId::GuideB, vec![0], "conv_guide.bias"),
        // Non-square or 3-D guide kernel.
        (ParamId::GuideW, vec![2, 3, 3, 1], "conv_guide.weight"),
        (ParamId::GuideW, vec![2, 3, 9], "conv_guide.weight"),
        // The kernel-generator convs disagree with the guide.
        (ParamId::KernelW1, vec![9, 3, 1, 1], "conv_kernel.1.weight"),
        (ParamId::KernelB1, vec![5], "conv_kernel.1.bias"),
        (ParamId::KernelW3, vec![24, 3, 1, 1], "conv_kernel.3.weight"),
        (ParamId::KernelW3, vec![24, 2], "conv_kernel.3.weight"),
    ];
    for (id, shape, named) in cases {
        let msg = weights_err(infer_config(&with(id, shape.clone()), 1, 0, 1));
        assert!(
            msg.contains(&format!("`{named}`")),
            "{} {shape:?}: {msg}",
            id.name()
        );
    }
    // Missing tensors are named.
    let tensors: Vec<T> = reference_tensors(&p, "")
        .into_iter()
        .filter(|t| t.name != "conv_kernel.3.bias")
        .collect();
    let msg = weights_err(infer_config(&build(&tensors, None), 1, 0, 1));
    assert!(msg.contains("missing tensor `conv_kernel.3.bias`"), "{msg}");
}

#[test]
fn save_refuses_inconsistent_params() {
    let mut p = params();
    p.get_mut(ParamId::KernelB1).pop();
    let msg = weights_err(save_safetensors_bytes(&p));
    assert!(msg.contains("`conv_kernel.1.bias`"), "{msg}");

    let mut p = params();
    p.config.region_num = 0;
    assert!(matches!(
        save_safetensors_bytes(&p),
        Err(DrConvError::Config(_))
    ));
}

#[test]
fn load_refuses_an_invalid_config() {
    let p = params();
    let bytes = save_safetensors_bytes(&p).unwrap();
    let mut cfg = p.config;
    cfg.kernel_size = 0;
    assert!(matches!(
        load_safetensors_bytes(&cfg, &bytes),
        Err(DrConvError::Config(_))
    ));
}

#[test]
fn invalid_config_metadata_is_reported_by_saved_config_but_does_not_block_loading() {
    let p = params();
    let mut meta = pt_metadata().unwrap();
    meta.insert(CONFIG_METADATA_KEY.to_string(), "{not json".to_string());
    let bytes = build(&reference_tensors(&p, ""), Some(meta));
    let msg = weights_err(saved_config(&bytes));
    assert!(msg.contains(CONFIG_METADATA_KEY), "{msg}");
    assert_eq!(load_safetensors_bytes(&p.config, &bytes).unwrap(), p);
}

#[test]
fn find_layers_lists_every_drconv_layer_of_a_whole_checkpoint() {
    let neck = DrConvParams::init(DrConvConfig::new(16, 32, 3, 4).unwrap(), 1).unwrap();
    let head = DrConvParams::init(DrConvConfig::new(32, 8, 5, 2).unwrap(), 2).unwrap();
    let mut tensors = reference_tensors(&neck, "model.neck.drconv.");
    tensors.extend(reference_tensors(&head, "model.head.0."));
    // Other layers of the model, one of them named like a guide conv but not a DRConv's.
    tensors.push(T::f32(
        "model.stem.conv.weight",
        vec![16, 3, 3, 3],
        &[0.0; 432],
    ));
    tensors.push(T::f32("model.stem.myconv_guide.bias", vec![4], &[0.0; 4]));
    let bytes = build(&tensors, pt_metadata());
    let found = drconv::weights::find_layers(&bytes).unwrap();
    let count = |p: &DrConvParams| {
        ParamId::ALL
            .iter()
            .map(|&id| p.get(id).len())
            .sum::<usize>()
    };
    let rows: Vec<_> = found
        .iter()
        .map(|l| {
            let c = (l.in_channels, l.out_channels, l.kernel_size, l.region_num);
            (l.prefix.as_str(), c, l.parameters)
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("model.head.0.", (32, 8, 5, 2), count(&head)),
            ("model.neck.drconv.", (16, 32, 3, 4), count(&neck)),
        ]
    );
    // What it found loads.
    let c = found[1].config(1, 1, 1).unwrap();
    let loaded = load_safetensors_with_prefix(&c, &bytes, &found[1].prefix).unwrap();
    assert_eq!(loaded.values, neck.values);

    // A layer with a tensor missing is an error naming the prefix and the tensor.
    let mut broken = reference_tensors(&neck, "a.");
    broken.retain(|t| !t.name.ends_with("conv_kernel.3.bias"));
    let m = weights_err(drconv::weights::find_layers(&build(&broken, None)));
    assert!(m.contains("a.conv_kernel.3.bias"), "{m}");
    // No DRConv at all: an empty list.
    let plain = build(&tensors[12..13], None);
    assert!(drconv::weights::find_layers(&plain).unwrap().is_empty());
}

#[test]
fn drconv_inspect_prints_the_table() {
    let neck = DrConvParams::init(DrConvConfig::new(16, 32, 3, 4).unwrap(), 1).unwrap();
    let path = temp_path("inspect.safetensors");
    std::fs::write(&path, build(&reference_tensors(&neck, "neck.dr."), None)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drconv"))
        .arg("inspect")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("neck.dr."))
        .expect(&text);
    let cells: Vec<&str> = row.split_whitespace().collect();
    let n: usize = ParamId::ALL.iter().map(|&id| neck.get(id).len()).sum();
    assert_eq!(
        cells,
        ["neck.dr.", "16", "32", "3", "4", &n.to_string()],
        "{text}"
    );
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_drconv"))
        .args(["inspect", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[0]["region_num"], 4);
    let _ = std::fs::remove_file(&path);
}
