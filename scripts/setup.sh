#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to run drconv without a GPU: Mesa's software
# Vulkan (lavapipe) and GL (llvmpipe, headless EGL) drivers, a C linker, and with --web the
# browser test's tools (Debian's chromium, node/npm, the wasm32 target). Idempotent: installs
# only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

packages=(
  # Vulkan: the loader and Mesa's lavapipe.
  mesa-vulkan-drivers libvulkan1
  # GL (tests/golden_gl.rs): glvnd's libEGL, Mesa's EGL vendor library and the llvmpipe DRI
  # driver. wgpu loads GL through EGL; libgles2 is the matching glvnd GLES dispatch library.
  libegl1 libegl-mesa0 libgl1-mesa-dri libgles2
  # The C linker rustc calls.
  gcc libc6-dev
  # tests/generated_shaders.rs runs the k = 3 kernel generator (scripts/gen_kernel_gen_k3.py).
  python3
)
web=0
if [ "${1:-}" = "--web" ]; then
  web=1
  # The browser test: headless Chromium (WebGPU on SwiftShader) driven by playwright-core.
  packages+=(chromium)
  command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
fi

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
  # Not Debian or Ubuntu: say what the machine needs instead of failing on apt.
  cat >&2 <<'EOF2'
setup.sh: no apt-get here, so nothing was installed. What drconv needs:
  - Rust 1.87 or newer (rustup), and a C linker.
  - macOS: nothing else; wgpu runs on Metal.
  - Windows: nothing else; wgpu runs on DX12 or Vulkan (a GPU driver from its vendor).
  - Other Linux: a Vulkan driver (Mesa's lavapipe without a GPU: mesa-vulkan-drivers /
    vulkan-swrast) and the Vulkan loader; for the GL tests Mesa's EGL and llvmpipe; python3.
  - For the browser test (--web): Chromium, Node.js with npm, and the wasm32-unknown-unknown
    target (rustup target add wasm32-unknown-unknown).
Then run: cargo run --release --example demo
EOF2
  command -v cargo >/dev/null 2>&1 || exit 1
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: no cargo on PATH: install Rust (1.87 or newer) with rustup first" >&2
  exit 1
fi
if [ "$web" = 1 ] && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
