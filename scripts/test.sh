#!/usr/bin/env bash
# The README's test command: the whole Rust suite (lavapipe Vulkan, llvmpipe GL, CPU reference,
# naga translations), then the browser test (WebGPU in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
# Mesa's drivers warn (and some fail) without a runtime dir.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo test --release
examples/web/run-browser-test.sh
