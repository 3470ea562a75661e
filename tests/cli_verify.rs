//! The `drconv` binary end to end: `verify` output and exit codes (0 pass, 1 mismatch, 2 usage
//! or load error) on the GPU and the CPU, and `info --json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn drconv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drconv"))
        .args(args)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .output()
        .unwrap()
}

fn golden(case: &str) -> String {
    format!("{}/tests/golden/{case}", env!("CARGO_MANIFEST_DIR"))
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn gpu_verify_passes_a_golden_case_with_gradients() {
    let out = drconv(&["verify", "--json", &golden("tiny")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("adapter"),
        "the adapter goes to stderr"
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let v = &lines[0];
    assert_eq!(v["case"], "tiny");
    assert_eq!(v["ok"], true);
    for t in [
        "output",
        "inter.corr",
        "inter.region_index",
        "grad.x",
        "grad.param.conv_guide.weight",
    ] {
        assert_eq!(v["tensors"][t]["ok"], true, "{t}: {v}");
        assert!(v["tensors"][t]["max_abs_err"].is_number(), "{t}: {v}");
    }
}

#[test]
fn inference_mode_reports_what_it_does_not_compute_as_null() {
    let out = drconv(&[
        "verify",
        "--json",
        "--mode",
        "inference",
        &golden("stride2"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(v["ok"], true);
    assert_eq!(v["tensors"]["output"]["ok"], true);
    assert_eq!(v["tensors"]["inter.region_index"]["ok"], true);
    assert!(v["tensors"]["inter.corr"]["ok"].is_null(), "{v}");
    assert!(v["tensors"]["grad.x"]["ok"].is_null(), "{v}");
}

#[test]
fn cpu_verify_runs_the_whole_index() {
    let root = format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR"));
    let out = drconv(&["verify", "--cpu", &root]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 11, "{text}");
    assert!(lines[..10].iter().all(|l| l.contains(" PASS ")), "{text}");
    assert_eq!(lines[10], "10 of 10 cases passed");
}

/// A copy of the `tiny` case with the first output value changed by `delta` (its checksum
/// dropped from case.json so that the loader accepts the change).
fn damaged_case(delta: f32) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drconv-cli-{}-{delta}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(golden("tiny")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    meta["tensors"]["output.bin"]
        .as_object_mut()
        .unwrap()
        .remove("sha256");
    std::fs::write(dir.join("case.json"), meta.to_string()).unwrap();
    let mut bytes = std::fs::read(dir.join("output.bin")).unwrap();
    let v = f32::from_le_bytes(bytes[..4].try_into().unwrap()) + delta;
    bytes[..4].copy_from_slice(&v.to_le_bytes());
    std::fs::write(dir.join("output.bin"), bytes).unwrap();
    dir
}

#[test]
fn a_mismatch_exits_1_and_names_the_tensor() {
    let dir = damaged_case(0.5);
    for backend in [&["--cpu"][..], &[][..]] {
        let mut args = vec!["verify", "--json"];
        args.extend(backend);
        args.push(dir.to_str().unwrap());
        let out = drconv(&args);
        assert_eq!(out.status.code(), Some(1), "{backend:?}: {}", stderr(&out));
        let v = &json_lines(&out)[0];
        assert_eq!(v["ok"], false);
        assert_eq!(v["tensors"]["output"]["ok"], false);
        let err = v["tensors"]["output"]["max_abs_err"].as_f64().unwrap();
        assert!((err - 0.5).abs() < 1e-3, "{err}");
        assert_eq!(
            v["tensors"]["inter.corr"]["ok"], true,
            "only the output was damaged"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn usage_and_load_errors_exit_2_with_a_message() {
    let out = drconv(&["verify", "/nonexistent/cases"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/cases"),
        "{}",
        stderr(&out)
    );

    let out = drconv(&["verify", "--cpu", "--mode", "inference", &golden("tiny")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--mode inference"),
        "{}",
        stderr(&out)
    );

    let out = drconv(&["verify"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");

    // A case whose data no longer matches its checksum is a load error, not a mismatch.
    let dir = damaged_case(1.0);
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    meta["tensors"]["output.bin"]["sha256"] = "00".into();
    std::fs::write(dir.join("case.json"), meta.to_string()).unwrap();
    let out = drconv(&["verify", "--cpu", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("sha256"), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "nothing runs when a case fails to load"
    );
    std::fs::remove_dir_all(dir).unwrap();
    assert!(!Path::new("/nonexistent/cases").exists());
}

#[test]
fn info_lists_adapters_with_limits() {
    let out = drconv(&["info", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let adapters = json_lines(&out);
    assert!(!adapters.is_empty());
    for a in &adapters {
        assert!(a["name"].is_string() && a["backend"].is_string(), "{a}");
        assert!(
            a["limits"]["max_storage_buffer_binding_size"]
                .as_u64()
                .unwrap()
                > 0,
            "{a}"
        );
        assert!(a["features"].is_array(), "{a}");
    }
}
