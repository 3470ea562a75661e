#!/usr/bin/env bash
# Builds the browser demo's wasm into examples/web/pkg/: the wasm32 target and the
# wasm-bindgen-cli matching Cargo.lock's wasm-bindgen are installed when missing.
# Cargo output goes to target/wasm so that it never waits on a native build's lock.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# The CLI must be the exact version of the wasm-bindgen crate the wasm was built against.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$want" ]; then
  echo "build.sh: no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "build.sh: installing wasm-bindgen-cli $want (found: ${have:-none})" >&2
  # --locked pins the CLI's own dependencies; if one of them is no longer on crates.io, fall back
  # to fresh resolution (the CLI version itself stays pinned).
  cargo install wasm-bindgen-cli --version "$want" --locked \
    || cargo install wasm-bindgen-cli --version "$want"
fi

# cargo rustc makes the cdylib here only, so that dependents of the crate build just the rlib.
CARGO_TARGET_DIR=target/wasm cargo rustc --lib --release --target wasm32-unknown-unknown \
  --no-default-features --features web --crate-type cdylib
wasm-bindgen --target web --no-typescript --out-dir examples/web/pkg \
  target/wasm/wasm32-unknown-unknown/release/drconv.wasm
echo "build.sh: built examples/web/pkg ($(du -h examples/web/pkg/drconv_bg.wasm | cut -f1) wasm)" >&2
