#!/usr/bin/env bash
# Runs `drconv bench` on an NVIDIA GPU through Vulkan (the system loader and the NVIDIA ICD) and,
# where PyTorch with CUDA is installed, times the reference layer (scripts/bench_torch.py) at the
# same shapes, then prints both side by side. Results go to $OUT (default bench-nvidia/).
#
#   scripts/bench-nvidia.sh            # full run
#   QUICK=1 scripts/bench-nvidia.sh    # short budgets (smoke test)
#
# Needs: a Rust toolchain, the NVIDIA driver with its Vulkan ICD (nvidia_icd.json, usually under
# /usr/share/vulkan/icd.d; in containers run with NVIDIA_DRIVER_CAPABILITIES including graphics),
# and libvulkan1 (the loader). Optional: python3 with torch built for CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-nvidia}
mkdir -p "$OUT"

export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
if command -v vulkaninfo >/dev/null 2>&1; then
  vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName|apiVersion" || true
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv || true
fi

cargo build --release
flags=()
if [[ -n "${QUICK:-}" ]]; then flags+=(--quick); fi
./target/release/drconv info | tee "$OUT/adapters.txt"
./target/release/drconv bench --json "$OUT/drconv.json" "${flags[@]}" | tee "$OUT/drconv.txt"

# The benchmark runs on whatever adapter wgpu picks: make sure it was the GPU, not lavapipe.
python3 - "$OUT/drconv.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"drconv ran on: {r['adapter']} ({r['backend']}, {r['device_type']}), timer {r['timer']}")
if r["device_type"] == "Cpu":
    print("WARNING: a software adapter was used; check that the NVIDIA Vulkan ICD is installed")
PY

if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  n=20
  if [[ -n "${QUICK:-}" ]]; then n=5; fi
  python3 scripts/bench_torch.py --device cuda --n "$n" --json "$OUT/torch.json" | tee "$OUT/torch.txt"
  python3 - "$OUT/drconv.json" "$OUT/torch.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = {row["shape"]: row for row in json.load(open(sys.argv[2]))["rows"]}
print(f"\nside by side (ms, median): drconv on {d['adapter']} vs PyTorch on {json.load(open(sys.argv[2]))['device']}")
print(f"{'shape':<28}{'fused fwd':>10}{'all-reg fwd':>12}{'torch fwd':>10}{'drconv f+b':>11}{'torch f+b':>10}{'torch conv':>11}")
rows = {}
for row in d["rows"]:
    rows.setdefault(row["shape"], {})[row["path"]] = row
for shape, p in rows.items():
    tr = t.get(shape, {})
    fb = p["all_regions"].get("forward_backward_ms")
    def f(v):
        return f"{v:.3f}" if isinstance(v, (int, float)) else "-"
    print(f"{shape:<28}{f(p['fused']['forward_ms']):>10}{f(p['all_regions']['forward_ms']):>12}"
          f"{f(tr.get('dr_fwd_ms')):>10}{f(fb):>11}{f(tr.get('dr_fwdbwd_ms')):>10}{f(tr.get('conv_fwd_ms')):>11}")
PY
else
  echo "PyTorch with CUDA not found: reference timing skipped (pip install torch, CUDA build)"
fi
