//! Shared by the `drconv bench` tests: run the binary with `--json`, read numbers back, check
//! that every target line is consistent with its own value and bound.
#![allow(dead_code)]

use std::process::Command;

use serde_json::Value;

/// `v[key]` as a number, or a panic naming the key and the object.
pub fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// Runs `drconv <args> --json FILE`, asserts it exited 0 and that the report names its adapter
/// and backend, and returns the table it printed and the report.
pub fn run_bench(name: &str, args: &[&str]) -> (String, Value) {
    let path = std::env::temp_dir().join(format!("drconv-{name}-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_drconv"))
        .args(args)
        .arg("--json")
        .arg(&path)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(report["adapter"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(report["backend"].as_str().is_some_and(|s| !s.is_empty()));
    (String::from_utf8_lossy(&out.stdout).into_owned(), report)
}

/// Every target has a finite positive value, and `met` says what its bound and value say.
pub fn assert_targets_consistent(targets: &[Value]) {
    for t in targets {
        let v = num(t, "value");
        assert!(v.is_finite() && v > 0.0, "{t}");
        let met = match t["bound"].as_str().unwrap() {
            ">=" => v >= num(t, "required"),
            "<=" => v <= num(t, "required"),
            other => panic!("unknown bound {other} in {t}"),
        };
        assert_eq!(t["met"].as_bool().unwrap(), met, "{t}");
    }
}
