//! `drconv bench --json` end to end: the report has the issue's schema (adapter, backend,
//! matmul_gflops, rows of shape / path / forward_ms / forward_backward_ms / gflops / peak_bytes),
//! a fused and an all-regions row per shape, paths that agree, and one line per target. Speed
//! itself is the benchmark's business, not a test's: nothing here asserts a target is met.

mod bench_common;

use bench_common::{assert_targets_consistent, num, run_bench};

#[test]
fn quick_bench_writes_the_issue_schema() {
    let (table, report) = run_bench("bench", &["bench", "--quick", "--shape", "4"]);
    assert!(
        table.contains("ratio") && table.contains("target "),
        "{table}"
    );
    assert!(num(&report, "matmul_gflops") > 0.0);

    let rows = report["rows"].as_array().unwrap();
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["fused", "all_regions"]);
    for row in rows {
        assert_eq!(row["shape"], "B1 16->16 k3 r4 128x128 p1");
        for key in ["forward_ms", "forward_backward_ms", "gflops"] {
            let v = num(row, key);
            assert!(v.is_finite() && v > 0.0, "{key} = {v}");
        }
        assert!(row["peak_bytes"].as_u64().is_some_and(|b| b > 0));
    }
    // No B x r x O x H' x W' tensor in inference: the fused plan is smaller than the
    // all-regions one by at least most of it (4 MiB here; the fused plan adds only the region
    // lists, 0.13 MiB).
    let corr_bytes = (4 * 16 * 128 * 128 * 4) as u64;
    let peak = |i: usize| rows[i]["peak_bytes"].as_u64().unwrap();
    assert!(
        peak(1).saturating_sub(peak(0)) > corr_bytes * 9 / 10,
        "{} vs {}",
        peak(0),
        peak(1)
    );

    let agree = &report["agreement"][0];
    assert_eq!(agree["region_equal"], true);
    assert_eq!(num(agree, "output_max_abs_diff"), 0.0);

    let targets = report["targets"].as_array().unwrap();
    // The issue's three, then the fresh-vs-reused input buffer's (at most 1.10).
    assert_eq!(targets.len(), 4, "{targets:?}");
    assert_eq!(num(&targets[0], "required"), 2.5);
    assert_eq!(targets[3]["bound"], "<=");
    assert_targets_consistent(targets);
    // A fresh input buffer per call built no plan.
    let reuse = &report["input_reuse"][0];
    assert_eq!(reuse["plans_built"], 0, "{reuse}");
    assert!(num(reuse, "fresh_ms") > 0.0 && num(reuse, "reused_ms") > 0.0);
}
