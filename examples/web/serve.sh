#!/usr/bin/env bash
# Builds the wasm and serves the browser demo on loopback:
#   examples/web/serve.sh            # then open http://127.0.0.1:8000/examples/web/
#   PORT=9000 examples/web/serve.sh
# The repository root is served so that the page can fetch the golden files (tests/golden/).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/examples/web/build.sh"
port=${PORT:-8000}
echo "serve.sh: open http://127.0.0.1:$port/examples/web/ (WebGPU needs localhost or https)" >&2
cd "$root"
exec python3 -m http.server "$port" --bind 127.0.0.1
