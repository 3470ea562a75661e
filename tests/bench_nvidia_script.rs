//! `scripts/bench-nvidia.sh --check` with no cargo on PATH: it takes the built drconv, finds the
//! Vulkan loader and stops at the adapter check with its reason and exit 3 where wgpu sees no
//! discrete GPU (CI: lavapipe only), or passes the check (exit 0) where it sees one. `--check`
//! never starts the benchmark, so this takes about a second either way.

use std::path::Path;
use std::process::Command;

#[test]
fn bench_nvidia_script_stops_at_the_adapter_check_without_a_gpu() {
    let out = std::env::temp_dir().join(format!("drconv-bench-nvidia-{}", std::process::id()));
    // Every PATH entry holding cargo left out: the script must run the prebuilt binary.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::env::split_paths(&path).filter(|dir| !dir.join("cargo").exists()),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench-nvidia.sh");
    let run = Command::new("bash")
        .arg(&script)
        .arg("--check")
        .env("PATH", path)
        .env("DRCONV", env!("CARGO_BIN_EXE_drconv"))
        .env("OUT", &out)
        .env_remove("ALLOW_CPU")
        .env_remove("VULKAN_LOADER")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(
        text.contains("drconv: ") && !text.contains("cargo build"),
        "it must take the built drconv:\n{text}"
    );
    match run.status.code() {
        Some(3) => {
            let reasons = [
                "only a CPU adapter",
                "no adapter",
                "Vulkan loader missing",
                "no discrete GPU",
            ];
            assert!(
                text.contains("adapter check failed: ") && reasons.iter().any(|r| text.contains(r)),
                "{text}"
            );
        }
        Some(0) => assert!(text.contains("adapter check passed"), "{text}"),
        other => panic!("exit {other:?}, expected 3 (no GPU) or 0 (a GPU):\n{text}"),
    }
    // The log holds what was printed.
    let log = std::fs::read_to_string(out.join("log.txt")).unwrap();
    assert!(log.contains("adapter check"), "{log}");
    std::fs::remove_dir_all(&out).ok();
}
