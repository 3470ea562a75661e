//! Every repository path a document, shader or source quotes (`src/...`, `shaders/...`,
//! `tests/...`, `examples/...`, `scripts/...`, `docs/...`) exists, so a reader following a
//! reference never lands on a file that was renamed or removed. The performance log
//! (`docs/perf-log.md`) is history: it quotes paths as they were then, and is not checked.

use std::path::{Path, PathBuf};

const ROOTS: [&str; 6] = [
    "src/",
    "shaders/",
    "tests/",
    "examples/",
    "scripts/",
    "docs/",
];
const EXTENSIONS: [&str; 3] = ["md", "wgsl", "rs"];

/// Files whose quoted paths are checked: the crate's documents, shaders and sources.
fn checked_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if !name.starts_with('.')
                    && !["target", "node_modules", "golden", "pkg"].contains(&name.as_str())
                {
                    stack.push(path);
                }
            } else if path
                .extension()
                .is_some_and(|e| EXTENSIONS.iter().any(|x| e == *x))
                && !path.ends_with("docs/perf-log.md")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The repository paths quoted in `text`: a root at a word boundary, then path characters, up
/// to the last one that can end a file name (globs and placeholders are skipped).
fn quoted_paths(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    for root in ROOTS {
        for (at, _) in text.match_indices(root) {
            let before = at.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b"_/.-:".contains(&b)) {
                continue;
            }
            let rest = &text[at..];
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_./-*<>{}".contains(c)))
                .unwrap_or(rest.len());
            let path = rest[..len].trim_end_matches(['.', '-', '/']);
            if path.len() <= root.len() || path.contains(['*', '<', '>', '{', '}']) {
                continue;
            }
            out.push(path.to_string());
        }
    }
    out
}

#[test]
fn every_quoted_path_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for file in checked_files(root) {
        let text = std::fs::read_to_string(&file).unwrap();
        for path in quoted_paths(&text) {
            if !root.join(&path).exists() {
                stale.push(format!(
                    "{}: {path}",
                    file.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "quoted paths that do not exist:\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_checker_finds_quoted_paths() {
    // Split so that this file quotes no missing path itself.
    let gone = ["src/gpu/", "tiles.rs"].concat();
    let text = format!(
        "see `{gone}` (src/gpu/decide.rs), shaders/*.wgsl, crate::gpu::src/x, tests/golden/<case>/."
    );
    assert_eq!(quoted_paths(&text), [gone.as_str(), "src/gpu/decide.rs"]);
}
