//! The CPU reference against the PyTorch golden vectors in `tests/golden` (every case, every
//! tensor), the golden loader's error paths, and the CPU forward's input validation.

use std::path::{Path, PathBuf};

use drconv::cpu::{backward, forward};
use drconv::golden::{list_cases, GoldenCase};
use drconv::verify::compare;
use drconv::{DrConvConfig, DrConvError, DrConvParams, Tensor};

/// README → Tolerances (`case.json` → `tolerance_suggestion`).
const FWD_ATOL: f64 = 1e-5;
const FWD_RTOL: f64 = 1e-4;
const BWD_ATOL: f64 = 1e-4;
const BWD_RTOL: f64 = 1e-3;

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

fn all_cases() -> Vec<GoldenCase> {
    let dirs = list_cases(golden_root()).expect("list golden cases");
    assert_eq!(dirs.len(), 10, "README lists 10 cases, found {dirs:?}");
    dirs.iter()
        .map(|d| GoldenCase::load(d).unwrap_or_else(|e| panic!("load {}: {e}", d.display())))
        .collect()
}

/// Compares `got` with the golden tensor `stem`; returns (max abs err, max |gold|) or a failure line.
fn check(
    case: &GoldenCase,
    stem: &str,
    got: &Tensor,
    atol: f64,
    rtol: f64,
) -> Result<(f64, f64, f64), String> {
    let gold = case
        .tensor(stem)
        .ok_or_else(|| format!("{}: golden tensor {stem} missing", case.name))?;
    if gold.data.len() != got.data.len() {
        return Err(format!(
            "{}: {stem} has {} values, golden {:?} has {}",
            case.name,
            got.data.len(),
            gold.shape,
            gold.data.len()
        ));
    }
    let (err, ok) = compare(&got.data, &gold.data, atol, rtol);
    let max_ref = gold.data.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    // Largest fraction of the elementwise tolerance used (must stay <= 1).
    let used = got
        .data
        .iter()
        .zip(&gold.data)
        .map(|(&a, &b)| (a as f64 - b as f64).abs() / (atol + rtol * (b as f64).abs()))
        .fold(0.0f64, f64::max);
    if ok {
        Ok((err, max_ref, used))
    } else {
        Err(format!(
            "{}: {stem} exceeds atol {atol:e} + rtol {rtol:e}: max abs err {err:e} (max |gold| {max_ref:e})",
            case.name
        ))
    }
}

#[test]
fn cpu_matches_every_golden_tensor() {
    let mut failures = Vec::new();
    for case in all_cases() {
        let trace = forward(&case.params, &case.x)
            .unwrap_or_else(|e| panic!("{}: forward: {e}", case.name));
        let mut worst_fwd = (0.0f64, String::new());
        let mut worst_bwd = (0.0f64, String::new());
        let mut worst_used = 0.0f64;
        let mut note = |worst: &mut (f64, String),
                        stem: &str,
                        r: Result<(f64, f64, f64), String>,
                        failures: &mut Vec<String>| {
            match r {
                Ok((err, max_ref, used)) => {
                    let rel = err / max_ref.max(1e-30);
                    if rel >= worst.0 {
                        *worst = (rel, format!("{stem} abs {err:.2e} rel {rel:.2e}"));
                    }
                    worst_used = worst_used.max(used);
                }
                Err(msg) => failures.push(msg),
            }
        };

        // Forward: output and every intermediate (corr included: the trace is training-mode).
        assert!(
            trace.corr.is_some(),
            "{}: training forward must keep corr",
            case.name
        );
        let named = trace.named();
        assert_eq!(named.len(), 7, "output + 6 intermediates");
        for (stem, t) in named {
            let gold_shape = &case.tensor(stem).expect("golden forward tensor").shape;
            assert_eq!(&t.shape, gold_shape, "{}: {stem} shape", case.name);
            note(
                &mut worst_fwd,
                stem,
                check(&case, stem, t, FWD_ATOL, FWD_RTOL),
                &mut failures,
            );
        }
        if case.tensor("eval.output").is_some() {
            note(
                &mut worst_fwd,
                "eval.output",
                check(&case, "eval.output", &trace.output, FWD_ATOL, FWD_RTOL),
                &mut failures,
            );
            // README: eval output is bitwise equal to the training output.
            assert_eq!(
                case.tensor("eval.output").unwrap().data,
                case.tensor("output").unwrap().data
            );
        }
        // region_index exactly, ties included.
        let gold_region = case.region_index.as_ref().expect("golden region_index");
        let mismatches = gold_region
            .iter()
            .zip(&trace.region_index)
            .filter(|(a, b)| a != b)
            .count();
        if mismatches != 0 || gold_region.len() != trace.region_index.len() {
            failures.push(format!(
                "{}: region_index differs at {mismatches} of {} positions",
                case.name,
                gold_region.len()
            ));
        }

        // Backward: grad.x, the six parameter gradients, every intermediate gradient.
        let gy = case.grad_output.as_ref().expect("golden grad_output");
        let grads = backward(&case.params, &case.x, &trace, gy)
            .unwrap_or_else(|e| panic!("{}: backward: {e}", case.name));
        let named = grads.named();
        assert_eq!(named.len(), 13, "grad.x + 6 params + 6 intermediates");
        for (stem, t) in &named {
            note(
                &mut worst_bwd,
                stem,
                check(&case, stem, t, BWD_ATOL, BWD_RTOL),
                &mut failures,
            );
        }
        // Every golden file is covered by the comparisons above.
        for stem in case.tensor_stems() {
            let covered = stem == "x"
                || stem == "grad_output"
                || stem.starts_with("param.")
                || stem == "eval.output"
                || trace.named().iter().any(|(n, _)| *n == stem)
                || named.iter().any(|(n, _)| n == stem);
            assert!(
                covered,
                "{}: golden tensor {stem} is not checked",
                case.name
            );
        }
        println!(
            "{:18} worst forward {:40} worst backward {:52} max tolerance used {:.3}",
            case.name, worst_fwd.1, worst_bwd.1, worst_used
        );
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn tie_cases_pick_the_first_maximal_region() {
    for case in all_cases() {
        let trace = forward(&case.params, &case.x).unwrap();
        let r = case.config.region_num;
        let hw = case.shape.out_height * case.shape.out_width;
        match case.name.as_str() {
            "ties_zero_guide" => {
                assert!(trace.guide.data.iter().all(|&g| g == 0.0));
                assert!(trace.region_index.iter().all(|&g| g == 0));
            }
            "ties_dup_channel" => {
                // Channels 1 and 2 are bitwise equal, and region 2 is never picked.
                for b in 0..case.shape.batch {
                    let ch = |g: usize| &trace.guide.data[(b * r + g) * hw..][..hw];
                    assert_eq!(ch(1), ch(2), "guide channels 1 and 2 must be bitwise equal");
                }
                let ones = trace.region_index.iter().filter(|&&g| g == 1).count();
                assert_eq!(
                    ones, 30,
                    "README: 30 of 64 positions tie on top between 1 and 2"
                );
                assert!(trace.region_index.iter().all(|&g| g != 2));
            }
            _ => {}
        }
    }
}

#[test]
fn backward_recomputes_corr_when_the_trace_has_none() {
    let case = GoldenCase::load(golden_root().join("stride2")).unwrap();
    let mut trace = forward(&case.params, &case.x).unwrap();
    let gy = case.grad_output.as_ref().unwrap();
    let full = backward(&case.params, &case.x, &trace, gy).unwrap();
    trace.corr = None;
    let fused = backward(&case.params, &case.x, &trace, gy).unwrap();
    assert_eq!(full.x.data, fused.x.data);
    assert_eq!(full.params, fused.params);
}

// ---------------------------------------------------------------- loader errors

/// A scratch copy of the `tiny` case that a test may damage.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("drconv-golden-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(golden_root().join("tiny")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
        Scratch(dir)
    }
    fn load_err(&self) -> String {
        match GoldenCase::load(&self.0) {
            Ok(_) => panic!("loading the damaged case {} succeeded", self.0.display()),
            Err(e) => {
                assert!(
                    matches!(e, DrConvError::Case(_)),
                    "expected a Case error, got {e:?}"
                );
                e.to_string()
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn loader_reports_damaged_cases() {
    let s = Scratch::new("ok");
    let case = GoldenCase::load(&s.0).expect("an intact copy loads");
    assert_eq!(case.name, "tiny");
    assert_eq!(
        case.config,
        DrConvConfig::new(2, 3, 3, 2)
            .unwrap()
            .with_padding(1)
            .unwrap()
    );
    assert!(case.tensor("inter.pooled").is_some() && case.tensor("inter.pooled.bin").is_some());
    assert!(case.tensor("nope").is_none());
    drop(s);

    let s = Scratch::new("missing");
    std::fs::remove_file(s.0.join("x.bin")).unwrap();
    let msg = s.load_err();
    assert!(
        msg.contains("x.bin") && msg.contains("cannot read"),
        "{msg}"
    );
    drop(s);

    let s = Scratch::new("truncated");
    let p = s.0.join("inter.guide.bin");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    let msg = s.load_err();
    assert!(
        msg.contains("inter.guide.bin") && msg.contains("truncated"),
        "{msg}"
    );
    drop(s);

    let s = Scratch::new("corrupt");
    let p = s.0.join("output.bin");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    let msg = s.load_err();
    assert!(
        msg.contains("output.bin") && msg.contains("sha256"),
        "{msg}"
    );
    drop(s);

    let s = Scratch::new("badjson");
    std::fs::write(s.0.join("case.json"), "{\"B\": 1, ").unwrap();
    let msg = s.load_err();
    assert!(
        msg.contains("bad JSON") && msg.contains("case.json"),
        "{msg}"
    );
    drop(s);

    let s = Scratch::new("badshape");
    let p = s.0.join("case.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    j["tensors"]["x.bin"]["shape"] = serde_json::json!([1, 2, 25, 1]);
    std::fs::write(&p, j.to_string()).unwrap();
    let msg = s.load_err();
    assert!(msg.contains("x.bin") && msg.contains("shape"), "{msg}");
    drop(s);

    let s = Scratch::new("badnbytes");
    let p = s.0.join("case.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    j["tensors"]["output.bin"]["nbytes"] = serde_json::json!(7);
    std::fs::write(&p, j.to_string()).unwrap();
    let msg = s.load_err();
    assert!(
        msg.contains("output.bin") && msg.contains("nbytes"),
        "{msg}"
    );
    drop(s);

    let s = Scratch::new("badhout");
    let p = s.0.join("case.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    j["H_out"] = serde_json::json!(4);
    std::fs::write(&p, j.to_string()).unwrap();
    let msg = s.load_err();
    assert!(msg.contains("H_out"), "{msg}");
    drop(s);

    let err = list_cases(golden_root().join("does-not-exist")).unwrap_err();
    assert!(matches!(err, DrConvError::Case(_)), "{err:?}");
}

// ---------------------------------------------------------------- forward input validation

fn small_params() -> DrConvParams {
    let c = DrConvConfig::new(3, 4, 3, 2).unwrap();
    DrConvParams::init(c, 7).unwrap()
}

fn shape_err(params: &DrConvParams, x: &Tensor) -> String {
    match forward(params, x) {
        Ok(_) => panic!("forward on {:?} succeeded", x.shape),
        Err(e) => {
            assert!(
                matches!(e, DrConvError::Shape(_)),
                "expected a Shape error, got {e:?}"
            );
            e.to_string()
        }
    }
}

#[test]
fn forward_rejects_bad_inputs() {
    let p = small_params();
    assert!(forward(&p, &Tensor::zeros(&[1, 3, 5, 5])).is_ok());

    let msg = shape_err(&p, &Tensor::zeros(&[1, 2, 5, 5]));
    assert!(
        msg.contains("2 channels") && msg.contains("in_channels = 3"),
        "{msg}"
    );

    let msg = shape_err(&p, &Tensor::zeros(&[0, 3, 5, 5]));
    assert!(msg.contains("empty"), "{msg}");
    let msg = shape_err(&p, &Tensor::zeros(&[1, 3, 0, 5]));
    assert!(msg.contains("empty"), "{msg}");

    // k = 3, no padding: a 2-pixel-high input gives an output height <= 0.
    let msg = shape_err(&p, &Tensor::zeros(&[1, 3, 2, 5]));
    assert!(msg.contains("height") && msg.contains("<= 0"), "{msg}");
    let msg = shape_err(&p, &Tensor::zeros(&[1, 3, 5, 1]));
    assert!(msg.contains("width") && msg.contains("<= 0"), "{msg}");

    let msg = shape_err(&p, &Tensor::zeros(&[3, 5, 5]));
    assert!(msg.contains("4-D"), "{msg}");

    // Data that does not fill the shape (the fields are public).
    let x = Tensor {
        shape: vec![1, 3, 5, 5],
        data: vec![0.0; 10],
    };
    let msg = shape_err(&p, &x);
    assert!(msg.contains("holds 10"), "{msg}");

    // A parameter of the wrong length.
    let mut bad = p.clone();
    bad.values[0].pop();
    let err = forward(&bad, &Tensor::zeros(&[1, 3, 5, 5])).unwrap_err();
    assert!(
        matches!(err, DrConvError::Weights(_)) && err.to_string().contains("conv_kernel.1.weight"),
        "{err}"
    );

    // Backward with a grad_output of the wrong shape.
    let x = Tensor::zeros(&[1, 3, 5, 5]);
    let trace = forward(&p, &x).unwrap();
    let err = backward(&p, &x, &trace, &Tensor::zeros(&[1, 4, 3, 2])).unwrap_err();
    assert!(err.to_string().contains("grad_output"), "{err}");
}
