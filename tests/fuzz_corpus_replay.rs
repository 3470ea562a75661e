//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets' entry
//! points on stable, so CI checks every input the fuzzer kept without libFuzzer or nightly.
//! Fuzz for real with `cd fuzz && cargo +nightly fuzz run weights_loader` (or `case_loader`).
//! Overflow checks (what the fuzzer's `-a` build catches) are on in the default test profile, off
//! under `--release`: run `cargo test --test fuzz_corpus_replay` to replay with them.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::PathBuf;

/// Every file of the target's corpus directory, sorted, with its contents.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn replay(target: &str, run: fn(&[u8]) -> bool, must_accept: &[&str]) {
    let files = corpus(target);
    assert!(files.len() >= must_accept.len(), "{target}: corpus missing");
    let mut accepted = Vec::new();
    for (path, bytes) in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Truncations of every input too: a cheap extra sweep over the loaders' error paths.
        for cut in [
            0,
            1,
            8,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len().saturating_sub(1),
        ] {
            run(&bytes[..cut.min(bytes.len())]);
        }
        if run(bytes) {
            accepted.push(name);
        }
    }
    for want in must_accept {
        assert!(
            accepted.iter().any(|a| a == want),
            "{target}: {want} should load; accepted {accepted:?}"
        );
    }
    println!(
        "{target}: {} inputs, {} accepted",
        files.len(),
        accepted.len()
    );
}

#[test]
fn weights_loader_corpus() {
    replay(
        "weights_loader",
        harness::weights_loader,
        &["seed-f32", "seed-f16"],
    );
}

#[test]
fn case_loader_corpus() {
    replay(
        "case_loader",
        harness::case_loader,
        &["seed-minimal", "seed-region-sha"],
    );
}
