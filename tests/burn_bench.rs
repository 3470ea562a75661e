//! `drconv bench --burn --json` end to end (feature `burn`): the report has the issue's schema
//! (adapter, backend, rows of shape / path / forward_ms / forward_backward_ms / first_call_ms), a
//! `drconv_burn` and a `burn_ops` row per shape, paths that compute the same layer, and the three
//! targets per shape. Whether a target is met is the benchmark's business, not a test's.

mod bench_common;

use bench_common::{assert_targets_consistent, num, run_bench};

#[test]
fn quick_burn_bench_writes_the_issue_schema() {
    let (_, report) = run_bench(
        "burn-bench",
        &["bench", "--burn", "--quick", "--shape", "4"],
    );

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
    assert_targets_consistent(targets);
}
