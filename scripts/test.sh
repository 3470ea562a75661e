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
# The burn module (feature burn) and a whole model from ONNX (feature onnx), in invocations that
# name both packages with the same features: cargo then resolves one graph, so burn and cubecl
# compile once (the detector's build script alone unifies other features of shared host crates,
# derive_more and itertools under cubecl's proc macros, which would compile the burn stack again).
# burn: golden cases through burn's autodiff on our kernels and on burn's CPU backend, PyTorch
# import of a nested model, the browser's deferred errors forced natively, the library's unit
# and doc tests, the example (a short run).
# ONNX: burn-onnx generates the detector and the attribute fixture with our hook, both match
# PyTorch on our kernels and on flex; broken nodes are build errors that name the node.
BURN=(--release -p drconv -p onnx_detector --features drconv/burn-dev)
cargo test "${BURN[@]}" --lib --test burn_module --test burn_import --test burn_path \
  --test burn_deferred --test burn_bench --test pytorch_match --test hook_errors
cargo test "${BURN[@]}" --doc burn
cargo build "${BURN[@]}" --example burn_neck
"${CARGO_TARGET_DIR:-target}/release/examples/burn_neck" --steps 60
# The exporter's own tests where PyTorch is installed (CI has none: their outputs are the
# committed fixtures above).
if "${PYTHON:-python3}" -c "import torch, onnx" 2>/dev/null; then
  "${PYTHON:-python3}" python/test_drconv_onnx.py
else
  echo "test.sh: no PyTorch + onnx for ${PYTHON:-python3}: python/test_drconv_onnx.py skipped"
fi
# The detector on the bundled image: the binary the tests' build made (a `cargo run` resolves
# another graph and would compile burn once more).
"${CARGO_TARGET_DIR:-target}/release/onnx_detector" --out "${CARGO_TARGET_DIR:-target}/onnx_detector.png"
# What a dependent with `features = ["burn"]` (no burn-dev) compiles: checked, not rebuilt (the
# code is the one tested above); the documentation then builds warning-free (every public item
# documented: missing_docs) with docs.rs's flags (Cargo.toml's [package.metadata.docs.rs]),
# reusing that check.
cargo check --lib --no-default-features --features golden,burn
RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo doc --no-deps --no-default-features --features golden,burn
examples/web/run-browser-test.sh
# The burn module in the browser's build (wasm32 with `web`): compiles warning-free (the target
# is installed by the browser test's build above).
CARGO_TARGET_DIR=target/wasm cargo clippy --lib --release --target wasm32-unknown-unknown \
  --no-default-features --features web,burn -- -D warnings
