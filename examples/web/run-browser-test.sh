#!/usr/bin/env bash
# The browser test from a clean checkout: installs what is missing (Debian's chromium, and
# nodejs/npm if there is no node, with apt; playwright-core with `npm ci` from package-lock.json;
# the wasm32 target and the pinned wasm-bindgen-cli through build.sh), builds the wasm, then runs
# browser-test.mjs, which serves the repository on 127.0.0.1, drives the demo page in headless
# Chromium on WebGPU and checks golden cases, training and the canvases. Writes
# target/web-test/screenshot.png and results.json. Exit code 0 only when every check passes.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
apt_packages=()
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || apt_packages+=(chromium)
command -v node >/dev/null 2>&1 || apt_packages+=(nodejs npm)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "run-browser-test.sh: installing ${apt_packages[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    "${apt_packages[@]}" >/dev/null
fi
if [ ! -f examples/web/node_modules/playwright-core/package.json ]; then
  (cd examples/web && npm ci --no-audit --no-fund)
fi
examples/web/build.sh
node examples/web/browser-test.mjs
