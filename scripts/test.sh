#!/usr/bin/env bash
# The README's test command: the whole Rust suite (lavapipe Vulkan, llvmpipe GL, CPU reference,
# naga translations), then the browser test (WebGPU in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
# Mesa's drivers warn (and some fail) without a runtime dir.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo test --release
# An application that owns its device runs two layers on views of its buffer (checks itself).
cargo run --release --example own_device
# The library as a dependent takes it: builds without the CLI's crates and pulls none of them in.
cargo build --release --lib --no-default-features
if cargo tree -e normal --no-default-features --prefix none | grep -E '^(clap|indicatif|image|pollster|env_logger) '; then
  echo "test.sh: the library without default features depends on a CLI crate (above)" >&2
  exit 1
fi
# The burn module (feature burn): golden cases through burn's autodiff on our kernels and on
# burn's CPU backend, PyTorch import of a nested model, its doc test, and the example (a short run).
cargo test --release --features burn-dev --test burn_module --test burn_import --test burn_bench
cargo test --release --features burn-dev --doc burn
cargo run --release --features burn-dev --example burn_neck -- --steps 60
# What a dependent with `features = ["burn"]` gets (no burn-dev): the library's tests and doc tests.
cargo test --release --features burn --lib
cargo test --release --features burn --doc
# The documentation builds warning-free (every public item documented: missing_docs) with
# docs.rs's flags (Cargo.toml's [package.metadata.docs.rs]).
RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo doc --no-deps --no-default-features --features golden,burn
examples/web/run-browser-test.sh
