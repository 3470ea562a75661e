//! The benchmark report as the fixed-width table `drconv bench` prints.

use super::report::BenchReport;

/// The report as a fixed-width table: both paths per shape and their forward-time ratio.
pub fn table(r: &BenchReport) -> String {
    let mut s = format!(
        "adapter: {} ({}, {}), timer: {}\nmatmul: {}\n",
        r.adapter,
        r.backend,
        r.device_type,
        r.timer,
        r.matmul
            .iter()
            .map(|m| format!("{} {}^3 {:.2} GFLOP/s", m.variant, m.n, m.gflops))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s += &format!(
        "{:<26} {:<12} {:>10} {:>12} {:>9} {:>10} {:>10} {:>10} {:>10}\n",
        "shape",
        "path",
        "fwd ms",
        "fwd+bwd ms",
        "GFLOP/s",
        "corr ms",
        "corr GF/s",
        "GEMM GF/s",
        "peak MiB"
    );
    for pair in r.rows.chunks(2) {
        for row in pair {
            let fb = row
                .forward_backward_ms
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into());
            s += &format!(
                "{:<26} {:<12} {:>10.3} {:>12} {:>9.2} {:>10.3} {:>10.2} {:>10.2} {:>10.2}\n",
                row.shape,
                row.path,
                row.forward_ms,
                fb,
                row.gflops,
                row.corr_ms,
                row.corr_gflops,
                row.matmul_gflops,
                row.peak_bytes as f64 / (1 << 20) as f64
            );
        }
        if let [fused, all] = pair {
            s += &format!(
                "{:<26} {:<12} {:>9.2}x\n",
                "",
                "ratio",
                super::targets::forward_ratio(fused, all)
            );
        }
    }
    s += &super::targets::lines(&r.targets);
    for v in &r.variants {
        s += &format!("{}: variants {}\n", v.shape, v.variants);
    }
    for a in &r.agreement {
        s += &format!(
            "{}: fused vs all-regions output max |diff| {:.2e}, region maps {}\n",
            a.shape,
            a.output_max_abs_diff,
            if a.region_equal { "equal" } else { "DIFFER" }
        );
    }
    s
}
