//! `drconv bench --burn --json` end to end (feature `burn`): the report has the issue's schema
//! (adapter, backend, rows of shape / path / forward_ms / forward_backward_ms / first_call_ms), a
//! `drconv_burn` and a `burn_ops` row per shape, paths that compute the same layer, and the three
//! targets per shape. Whether a target is met is the benchmark's business, not a test's.

use std::process::Command;

use serde_json::Value;

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn quick_burn_bench_writes_the_issue_schema() {
    let path = std::env::temp_dir().join(format!("drconv-burn-bench-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_drconv"))
        .args(["bench", "--burn", "--quick", "--shape", "4", "--json"])
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

    let rows = report["rows"].as_array().unwrap();
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["drconv_burn", "burn_ops"]);
    for row in rows {
        assert_eq!(row["shape"], "B1 16->16 k3 r4 128x128 p1");
        for key in ["forward_ms", "forward_backward_ms", "first_call_ms"] {
            let v = num(row, key);
            assert!(v.is_finite() && v > 0.0, "{key} = {v}");
        }
    }
    // Both paths compute the same layer (16 x 9 products per output: forward tolerance scale).
    let agree = &report["agreement"][0];
    assert!(num(agree, "output_max_abs_diff") < 1e-4, "{agree}");
    assert!(num(agree, "input_grad_max_abs_diff") < 1e-3, "{agree}");
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3, "{targets:?}");
}
