#!/usr/bin/env bash
# drconv (WGSL on wgpu, Vulkan) against the reference PyTorch layer (CUDA) on an NVIDIA GPU, in
# one run of under 5 minutes, on a machine with the NVIDIA driver and PyTorch but possibly no
# Rust toolchain, no Vulkan loader and no internet.
#
#   scripts/bench-nvidia.sh            # the whole run
#   scripts/bench-nvidia.sh --check    # steps 1-4 only: does wgpu see a discrete GPU here?
#
# Steps (each prints what it found; the first that cannot go on stops the run with the reason):
#   1. drconv: target/release/drconv (or $DRCONV) when present, else `cargo build --release`
#      when cargo exists, else stop (exit 2).
#   2. The Vulkan loader: libvulkan.so.1 from the system (`ldconfig -p`), else from the Debian
#      packages in $GL_DEBS (default .gl/), unpacked with `dpkg -x` into a private prefix (never
#      into /) that goes on LD_LIBRARY_PATH; neither: stop (exit 3, "loader missing").
#   3. The NVIDIA Vulkan ICD: when no nvidia*.json is in the usual places (/etc/vulkan/icd.d,
#      /usr/share/vulkan/icd.d, ...), VK_DRIVER_FILES (and VK_ICD_FILENAMES, older loaders' name)
#      = /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json, and likewise
#      __EGL_VENDOR_LIBRARY_FILENAMES = /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json,
#      where those files exist.
#   4. The adapter check: `drconv info --json` with WGPU_BACKEND=vulkan must list a discrete
#      GPU; else stop (exit 3) saying which: no adapter, or only a CPU adapter (lavapipe), with
#      the Vulkan loader's own error lines.
#   5. `drconv bench --json` at every shape (S1-S4 and the YOLO neck's Y1, Y16), one shape per
#      run, each under a time limit, merged into drconv.json.
#   6. scripts/bench_torch.py on CUDA with TF32 off, then on, each eager and as CUDA graphs
#      (torch.json); skipped, and said, where PyTorch has no CUDA.
#   7. `drconv plan --profile P --json plan.json` where this drconv has that command (P from the
#      adapter's name, or $PLAN_PROFILE; or a report given as $PLAN_JSON): every dispatch's
#      FLOPs and bytes on that GPU's roofline.
#   8. One side-by-side table (table.txt): per shape drconv's fused forward, all-regions forward
#      and fwd+bwd against PyTorch's eval forward and train fwd+bwd, eager and graphs, TF32 off
#      and on; then each of drconv's per-step GPU times beside its roofline floor
#      max(FLOPs / FP32 peak, bytes / bandwidth) and the fraction of it reached (without a plan
#      report, the table says so and leaves that part out).
#
# Files: in $OUT when set (the device tool's folder), else bench-nvidia/: log.txt (all that was
# printed), adapters.jsonl, drconv.json, torch.json, plan.json (with a plan report), table.txt.
# Exit: 0 when drconv measured at least one shape; 1 when it measured none; 2 no drconv binary
# (or one that does not run here); 3 the adapter check failed.
#
# Time: the whole run stays under BUDGET_S (default 280 s; each step's own limit, not a guess,
# keeps it there). drconv gets what the torch runs and the table do not need (100 s kept for
# torch when it has CUDA, 15 s for the end), each shape at most 75 s; the torch runs share the
# rest (TF32 off half of it, at most 120 s each). Measured on lavapipe (2 busy cores): a full
# shape 38-40 s (S1, S4: its 3 s loop budgets, each rep tens of ms), S4 --quick 12 s, Y1 --quick
# 23 s; on a GPU the loops stop at 50 reps, so a shape should take seconds (shader compilation).
#
# Environment:
#   BUDGET_S=280             the whole run's limit, seconds
#   QUICK=1                  drconv bench --quick and 5 torch runs per cell: a smoke test
#   SHAPES="1 2 3 4 5 6"     the shapes (1-4: S1-S4, 5: Y1, 6: Y16)
#   DRCONV=PATH              the drconv binary (default target/release/drconv)
#   GL_DEBS=DIR              the carried .deb files (default .gl)
#   VULKAN_LOADER=auto|system|debs   where libvulkan.so.1 comes from (default auto: the
#                            system's, else the debs)
#   PLAN_PROFILE=NAME        drconv plan's GPU profile (default from the adapter: h100, h200,
#                            a100, rtx4090, rx7900xtx); PLAN_JSON=FILE a plan report made elsewhere
#   ALLOW_CPU=1              go on past the adapter check on a CPU adapter (lavapipe): a smoke
#                            test of the whole script on a machine without a GPU
#   DRCONV_CORR, DRCONV_SLICES, DRCONV_COMPUTE_UNITS, ...   drconv's variant switches (PERF.md,
#                            Reproducing) pass through: DRCONV_CORR=staged times the GPU family's
#                            earlier correlation, DRCONV_COMPUTE_UNITS=132 fills an H100 exactly
#
# Preparing the run, on a machine with internet and Rust (the GPU machine needs neither):
#   cargo build --release          # target/release/drconv; built on Debian 12 it needs glibc
#                                  # 2.35 or newer on the GPU machine (Ubuntu 22.04 and later)
#   mkdir -p .gl && (cd .gl && apt-get download libvulkan1 libglvnd0)
#       # Debian/Ubuntu amd64: the Vulkan loader (libvulkan1), and the libGLdispatch.so.0 the
#       # NVIDIA ICD links (libglvnd0). On another architecture: `dpkg --add-architecture
#       # amd64 && apt-get update`, then `apt-get download libvulkan1:amd64 libglvnd0:amd64`.
# Then copy (or carry) target/release/drconv and .gl/ into the repository there and run this
# script (from anywhere: it works in the repository root).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
check_only=
case "${1:-}" in
  "") ;;
  --check) check_only=1 ;;
  -h | --help) usage; exit 0 ;;
  *) echo "bench-nvidia: unknown argument $1 (try --help)" >&2; exit 2 ;;
esac

# Paths the caller gave are relative to where it ran; the defaults to the repository root.
abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
[[ -n ${OUT:-} ]] && OUT=$(abs "$OUT")
[[ -n ${DRCONV:-} ]] && DRCONV=$(abs "$DRCONV")
[[ -n ${GL_DEBS:-} ]] && GL_DEBS=$(abs "$GL_DEBS")
[[ -n ${PLAN_JSON:-} ]] && PLAN_JSON=$(abs "$PLAN_JSON")
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-nvidia}
DRCONV=${DRCONV:-target/release/drconv}
GL_DEBS=${GL_DEBS:-.gl}
BUDGET_S=${BUDGET_S:-280}
VULKAN_LOADER=${VULKAN_LOADER:-auto}
NV_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
NV_EGL=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json

mkdir -p "$OUT"
: >"$OUT/log.txt"
exec > >(tee -a "$OUT/log.txt") 2>&1
tee_pid=$!
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-nvidia.XXXXXX")
# At exit: the temporary files go, and tee has written the whole log before the script returns.
trap 'rm -rf "$tmp"; exec 1>&- 2>&-; wait "$tee_pid" 2>/dev/null || true' EXIT

say() { printf 'bench-nvidia: %s\n' "$*"; }
# fail CODE MESSAGE...: the reason, then stop.
fail() {
  local code=$1
  shift
  printf 'bench-nvidia: %s\n' "$@"
  say "stopped after ${SECONDS}s (exit $code); log in $OUT/log.txt"
  exit "$code"
}
have() { command -v "$1" >/dev/null 2>&1; }
min() { if (($1 < $2)); then echo "$1"; else echo "$2"; fi; }

say "$(date -u '+%F %T UTC') on $(uname -n) ($(uname -m)), budget ${BUDGET_S}s, results in $OUT"
if have nvidia-smi; then
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv || say "nvidia-smi failed"
else
  say "no nvidia-smi on PATH"
fi

# 1. drconv ----------------------------------------------------------------------------------
if [[ -x $DRCONV ]]; then
  say "drconv: $DRCONV (prebuilt, $(date -r "$DRCONV" '+%F %T'))"
  if have cargo; then
    newer=$(find src shaders -newer "$DRCONV" -type f -print -quit 2>/dev/null || true)
    [[ -z $newer ]] || say "note: $newer is newer than $DRCONV (cargo build --release?)"
  fi
elif have cargo; then
  say "no $DRCONV: building it (cargo build --release)"
  cargo build --release
  DRCONV=target/release/drconv
else
  fail 2 "no drconv binary at $DRCONV and no cargo to build one." \
    "Build it on a machine with Rust (cargo build --release), then copy or carry target/release/drconv into this repository's target/release/ (or set DRCONV=PATH)."
fi
if ! version=$("$DRCONV" --version 2>&1); then
  fail 2 "$DRCONV does not run here: $version" \
    "A binary built on a newer distribution needs its glibc: build on one no newer than this machine ($(ldd --version 2>/dev/null | head -n1 || echo 'glibc unknown'))."
fi
say "$version"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$tmp}

# 2. The Vulkan loader -----------------------------------------------------------------------
system_loader() {
  local cache d
  cache=$({ ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null || true)
  if grep -q 'libvulkan\.so\.1 ' <<<"$cache"; then
    grep -m1 'libvulkan\.so\.1 ' <<<"$cache" | sed 's/^[[:space:]]*//'
    return 0
  fi
  local IFS=:
  for d in ${LD_LIBRARY_PATH:-}; do
    [[ -n $d && -e $d/libvulkan.so.1 ]] && { echo "$d/libvulkan.so.1 (LD_LIBRARY_PATH)"; return 0; }
  done
  return 1
}

# unpack_deb DEB DIR: dpkg -x, or Python where dpkg is missing (xz/gz/bz2 data only).
unpack_deb() {
  if have dpkg; then
    dpkg -x "$1" "$2"
    return
  fi
  python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
deb, dest = sys.argv[1:]
data = open(deb, "rb").read()
if data[:8] != b"!<arch>\n":
    sys.exit(f"{deb}: not a .deb (ar) archive")
pos = 8
while pos + 60 <= len(data):
    name, size = data[pos:pos + 16].decode().strip().rstrip("/"), int(data[pos + 48:pos + 58])
    body = data[pos + 60:pos + 60 + size]
    pos += 60 + size + (size & 1)
    if name.startswith("data.tar"):
        if name.endswith(".zst"):
            sys.exit(f"{deb}: {name} is zstd, which needs dpkg to unpack")
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
            try:
                tar.extractall(dest, filter="tar")
            except TypeError:  # Python before 3.12
                tar.extractall(dest)
        sys.exit(0)
sys.exit(f"{deb}: no data.tar member")
PY
}

loader=
if [[ $VULKAN_LOADER != debs ]] && found=$(system_loader); then
  loader="system: $found"
elif [[ $VULKAN_LOADER == system ]]; then
  fail 3 "adapter check failed: Vulkan loader missing: no libvulkan.so.1 in ldconfig's cache or on LD_LIBRARY_PATH (VULKAN_LOADER=system)."
else
  shopt -s nullglob
  debs=("$GL_DEBS"/*.deb)
  shopt -u nullglob
  if ((${#debs[@]} == 0)); then
    fail 3 "adapter check failed: Vulkan loader missing: \`ldconfig -p\` lists no libvulkan.so.1 and $GL_DEBS/ holds no .deb to bring one." \
      "Bring it: on a Debian/Ubuntu amd64 machine with internet, mkdir -p .gl && (cd .gl && apt-get download libvulkan1 libglvnd0); then carry .gl/ here (or set GL_DEBS=DIR)."
  fi
  prefix=$tmp/vulkan-prefix
  mkdir -p "$prefix"
  for deb in "${debs[@]}"; do
    unpack_deb "$deb" "$prefix" || fail 3 "adapter check failed: could not unpack $deb"
  done
  libdir=$(find "$prefix" -name libvulkan.so.1 -printf '%h\n' -quit)
  [[ -n $libdir ]] || fail 3 "adapter check failed: Vulkan loader missing: no libvulkan.so.1 in ${debs[*]} (apt-get download libvulkan1 gives it)."
  # After the caller's entries: libraries the system has keep winning over the carried ones.
  export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$libdir
  loader="carried: $(basename -a "${debs[@]}" | tr '\n' ' ')unpacked into $prefix"
fi
say "Vulkan loader: $loader"

# 3. The NVIDIA ICD --------------------------------------------------------------------------
icd_dirs=(/etc/vulkan/icd.d /usr/local/etc/vulkan/icd.d /usr/share/vulkan/icd.d
  /usr/local/share/vulkan/icd.d)
IFS=: read -ra xdg <<<"${XDG_DATA_DIRS:-}"
for d in "${xdg[@]}"; do [[ -n $d ]] && icd_dirs+=("$d/vulkan/icd.d"); done
nvidia_icd=
for d in "${icd_dirs[@]}"; do
  for f in "$d"/nvidia*.json; do [[ -f $f ]] && { nvidia_icd=$f; break 2; }; done
done
if [[ -n ${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-} ]]; then
  say "ICD: as the caller set: VK_DRIVER_FILES=${VK_DRIVER_FILES:-} VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-}"
elif [[ -n $nvidia_icd ]]; then
  say "ICD: $nvidia_icd"
elif [[ -f $NV_ICD ]]; then
  export VK_DRIVER_FILES=$NV_ICD VK_ICD_FILENAMES=$NV_ICD
  say "ICD: none in ${icd_dirs[*]}; VK_DRIVER_FILES=$NV_ICD"
else
  say "ICD: no NVIDIA ICD in ${icd_dirs[*]} nor at $NV_ICD"
fi
if [[ -z ${__EGL_VENDOR_LIBRARY_FILENAMES:-} && -f $NV_EGL ]] &&
  ! compgen -G '/usr/share/glvnd/egl_vendor.d/*nvidia*.json' >/dev/null &&
  ! compgen -G '/etc/glvnd/egl_vendor.d/*nvidia*.json' >/dev/null; then
  export __EGL_VENDOR_LIBRARY_FILENAMES=$NV_EGL
  say "EGL vendor: __EGL_VENDOR_LIBRARY_FILENAMES=$NV_EGL"
fi
# The ICD names its library without a path (libGLX_nvidia.so.0): where the driver lives under
# /usr/local/nvidia, its folder must be on the search path.
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  if [[ -e $d/libGLX_nvidia.so.0 && ":${LD_LIBRARY_PATH:-}:" != *":$d:"* ]]; then
    export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
    say "LD_LIBRARY_PATH += $d (the NVIDIA driver's libraries)"
  fi
done

# 4. The adapter check -----------------------------------------------------------------------
export WGPU_BACKEND=vulkan
# Why the loader saw no GPU: its own error lines, and libraries the NVIDIA ICD cannot find.
diagnose() {
  local icd=${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-$nvidia_icd}} lib path
  say "diagnosis: the Vulkan loader's errors (VK_LOADER_DEBUG=error,warn):"
  VK_LOADER_DEBUG=error,warn timeout 30 "$DRCONV" info >/dev/null 2>"$tmp/loader.txt" || true
  grep -v XDG_RUNTIME_DIR "$tmp/loader.txt" | awk '!seen[$0]++' | tail -n 12 | sed 's/^/  /'
  if [[ -n $icd && -f ${icd%%:*} ]]; then
    lib=$(grep -o '"library_path"[^,}]*' "${icd%%:*}" | cut -d'"' -f4 || true)
    say "diagnosis: ${icd%%:*} names library ${lib:-?}"
    path=$lib
    if [[ -n $lib && $lib != /* ]]; then
      path=$({ ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -m1 " $lib " | sed 's/.*=> //' || true)
      local IFS=:
      for d in ${LD_LIBRARY_PATH:-}; do [[ -e $d/$lib ]] && path=$d/$lib; done
    fi
    if [[ -n $path && -e $path ]] && have ldd; then
      ldd "$path" 2>&1 | grep 'not found' | sed 's/^/  missing: /' ||
        say "diagnosis: $path finds all its libraries"
    else
      say "diagnosis: ${lib:-its library} not found on the library path"
    fi
  fi
}

set +e
timeout 60 "$DRCONV" info --json >"$OUT/adapters.jsonl" 2>"$tmp/info.err"
rc=$?
set -e
grep -v XDG_RUNTIME_DIR "$tmp/info.err" | sed 's/^/  /' || true
adapters=() discrete=() cpu=()
while IFS= read -r line; do
  [[ $line == '{'* ]] || continue
  [[ $line =~ \"name\":\"([^\"]*)\" ]] && name=${BASH_REMATCH[1]} || name='?'
  [[ $line =~ \"device_type\":\"([^\"]*)\" ]] && type=${BASH_REMATCH[1]} || type='?'
  [[ $line =~ \"backend\":\"([^\"]*)\" ]] && backend=${BASH_REMATCH[1]} || backend='?'
  adapters+=("$name ($backend, $type)")
  case $type in
    DiscreteGpu) discrete+=("$name") ;;
    Cpu) cpu+=("$name") ;;
  esac
done <"$OUT/adapters.jsonl"
for a in "${adapters[@]}"; do say "adapter: $a"; done
why='' hint=''
if ((rc != 0 && ${#adapters[@]} == 0)); then
  if grep -q 'no adapter' "$tmp/info.err"; then
    why="no adapter: wgpu's Vulkan backend found no device (loader: $loader)"
    hint="the NVIDIA Vulkan ICD is missing or does not load: it needs nvidia_icd.json and"
    hint+=" the driver's libGLX_nvidia.so.0 (in a container: NVIDIA_DRIVER_CAPABILITIES=all)"
  else
    why="drconv info failed (exit $rc): $(tail -n 3 "$tmp/info.err")"
  fi
elif ((${#discrete[@]} == 0 && ${#adapters[@]} > 0 && ${#cpu[@]} == ${#adapters[@]})); then
  why="only a CPU adapter: ${cpu[*]}"
  hint="that is a software Vulkan driver (Mesa's lavapipe), not a GPU; the NVIDIA Vulkan ICD"
  hint+=" was not found or did not load"
elif ((${#discrete[@]} == 0)); then
  why="no discrete GPU among: ${adapters[*]:-none}"
fi
if [[ -n $why ]]; then
  if [[ -z ${ALLOW_CPU:-} || ${#adapters[@]} == 0 ]]; then
    diagnose
    fail 3 "adapter check failed: $why" ${hint:+"$hint"}
  fi
  say "adapter check: $why; going on as ALLOW_CPU=1 asks (numbers say nothing about a GPU)"
else
  say "adapter check passed: ${discrete[0]} (Vulkan, DiscreteGpu)"
fi
[[ -z $check_only ]] || { say "--check: done after ${SECONDS}s"; exit 0; }
gpu_name=${discrete[0]:-${adapters[0]%% (*}}
have python3 || fail 2 "python3 is needed from here on (the JSON, PyTorch and the table)"

# Where PyTorch has CUDA (asked now: its share of the budget is kept from drconv's).
torch_ok=
if have python3 && probe=$(timeout 60 python3 -c 'import torch
print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1); then
  say "torch: $probe"
  [[ $probe == *" True "* ]] && torch_ok=1
else
  say "torch: not importable (${probe##*$'\n'})"
fi
[[ -n $torch_ok ]] || say "PyTorch with CUDA not found: the reference timing is skipped"
end_reserve=15
torch_reserve=$([[ -n $torch_ok ]] && echo 100 || echo 0)

# 5. drconv bench, one shape per run -----------------------------------------------------------
read -ra shapes <<<"${SHAPES:-1 2 3 4 5 6}"
bench_flags=()
[[ -z ${QUICK:-} ]] || bench_flags+=(--quick)
drconv_until=$((BUDGET_S - end_reserve - torch_reserve))
: >"$tmp/drconv-runs.txt"
for n in "${shapes[@]}"; do
  limit=$(min 75 $((drconv_until - SECONDS)))
  if ((limit < 10)); then
    say "drconv bench --shape $n: skipped, drconv's share of the budget is spent"
    echo "$n skipped 0" >>"$tmp/drconv-runs.txt"
    continue
  fi
  say "drconv bench --shape $n${bench_flags[*]:+ ${bench_flags[*]}} (at most ${limit}s)"
  t0=$SECONDS
  set +e
  timeout -k 5 "$limit" "$DRCONV" bench --shape "$n" "${bench_flags[@]}" \
    --json "$tmp/drconv-$n.json"
  rc=$?
  set -e
  case $rc in
    0) status=ok ;;
    124 | 137) status=timeout ;;
    *) status="failed($rc)" ;;
  esac
  say "drconv bench --shape $n: $status after $((SECONDS - t0))s"
  echo "$n $status $((SECONDS - t0))" >>"$tmp/drconv-runs.txt"
done
python3 - "$tmp" "$OUT/drconv.json" <<'PY'
import json, os, sys
tmp, out = sys.argv[1:]
merged, runs = None, []
for line in open(os.path.join(tmp, "drconv-runs.txt")):
    n, status, secs = line.split()
    runs.append(dict(shape=int(n), status=status, seconds=int(secs)))
    path = os.path.join(tmp, f"drconv-{n}.json")
    if status != "ok" or not os.path.exists(path):
        continue
    r = json.load(open(path))
    if merged is None:
        merged = dict(r, rows=[], agreement=[], input_reuse=[], targets=[], variants=[])
    for key in ("rows", "agreement", "input_reuse", "targets", "variants"):
        merged[key] += r.get(key, [])
    merged["matmul_gflops"] = max(merged["matmul_gflops"], r["matmul_gflops"])
    for m, m2 in zip(merged["matmul"], r["matmul"]):
        m["gflops"] = max(m["gflops"], m2["gflops"])
merged = merged or {"rows": []}
merged["shape_runs"] = runs
json.dump(merged, open(out, "w"), indent=2)
print(f"bench-nvidia: drconv.json: {len(merged['rows']) // 2} of {len(runs)} shapes measured")
PY

# 6. PyTorch, TF32 off and on, eager and CUDA graphs -------------------------------------------
if [[ -n $torch_ok ]]; then
  torch_shapes=()
  for n in "${shapes[@]}"; do torch_shapes+=(--shape "$n"); done
  nrep=20
  [[ -z ${QUICK:-} ]] || nrep=5
  for tf32 in off on; do
    room=$((BUDGET_S - end_reserve - SECONDS))
    [[ $tf32 == on ]] || room=$((room / 2))
    limit=$(min 120 "$room")
    if ((limit < 15)); then
      say "bench_torch.py --tf32 $tf32: skipped, the budget is spent"
      continue
    fi
    say "bench_torch.py --tf32 $tf32 --graphs --n $nrep (at most ${limit}s)"
    t0=$SECONDS
    set +e
    PYTHONUNBUFFERED=1 timeout -k 5 "$limit" python3 scripts/bench_torch.py --device cuda \
      --n "$nrep" --tf32 "$tf32" --graphs "${torch_shapes[@]}" --json "$tmp/torch-$tf32.json"
    rc=$?
    set -e
    say "bench_torch.py --tf32 $tf32: exit $rc after $((SECONDS - t0))s"
  done
fi
python3 - "$tmp" "$OUT/torch.json" <<'PY'
import json, os, sys
tmp, out = sys.argv[1:]
merged = {}
for tf32 in ("off", "on"):
    path = os.path.join(tmp, f"torch-{tf32}.json")
    if os.path.exists(path):
        merged[f"tf32_{tf32}"] = json.load(open(path))
if merged:
    json.dump(merged, open(out, "w"), indent=1)
PY

# 7. The plan report (the roofline) -----------------------------------------------------------
plan=
if [[ -n ${PLAN_JSON:-} ]]; then
  if [[ -f $PLAN_JSON ]]; then
    cp "$PLAN_JSON" "$OUT/plan.json" 2>/dev/null || true
    plan=$OUT/plan.json
    say "plan report: $PLAN_JSON (PLAN_JSON)"
  else
    say "plan report: PLAN_JSON=$PLAN_JSON does not exist; no roofline"
  fi
elif "$DRCONV" plan --help >/dev/null 2>&1; then
  profile=${PLAN_PROFILE:-}
  if [[ -z $profile ]]; then
    case ${gpu_name,,} in
      *h100*) profile=h100 ;;
      *h200*) profile=h200 ;;
      *a100*) profile=a100 ;;
      *4090*) profile=rtx4090 ;;
      *7900*xtx*) profile=rx7900xtx ;;
    esac
  fi
  if [[ -z $profile ]]; then
    say "plan report: no GPU profile for '$gpu_name' (set PLAN_PROFILE=NAME); no roofline"
  else
    if timeout 20 "$DRCONV" plan --profile "$profile" --json "$OUT/plan.json" \
      >"$tmp/plan.txt" 2>&1; then
      plan=$OUT/plan.json
      say "plan report: drconv plan --profile $profile"
    else
      say "plan report: drconv plan --profile $profile failed: $(tail -n 3 "$tmp/plan.txt")"
      rm -f "$OUT/plan.json"
    fi
  fi
else
  say "plan report: this drconv has no \`plan\` command; the table has no roofline column"
fi

# 8. The table ---------------------------------------------------------------------------------
python3 - "$OUT/drconv.json" "$OUT/torch.json" "$plan" "$OUT/table.txt" <<'PY'
import json, sys

drconv_path, torch_path, plan_path, out_path = sys.argv[1:]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


d = load(drconv_path) or {"rows": []}
t = load(torch_path) or {}
plan = load(plan_path) if plan_path else None
TAGS = ["S1", "S2", "S3", "S4", "Y1", "Y16"]
NAMES = ["B1 64->64 k3 r8 40x40 p1", "B1 128->128 k3 r8 20x20 p1", "B8 32->32 k3 r4 32x32 p1",
         "B1 16->16 k3 r4 128x128 p1", "B1 256->256 k3 r8 40x40 p1", "B16 256->256 k3 r8 40x40 p1"]
TAG = dict(zip(NAMES, TAGS))


def label(name):
    return f"{TAG.get(name, '?'):<4}" + " ".join(p for p in name.split() if p[0] not in "kp")


def ms(v, width=8):
    return f"{v:>{width}.3f}" if isinstance(v, (int, float)) else f"{'-':>{width}}"


def ratio(a, b, width=6):
    ok = all(isinstance(v, (int, float)) and v > 0 for v in (a, b))
    return f"{a / b:>{width - 1}.2f}x" if ok else f"{'-':>{width}}"


rows = {}
for r in d["rows"]:
    rows.setdefault(r["shape"], {})[r["path"]] = r
torch = {k: {r["shape"]: r for r in (t.get(f"tf32_{k}") or {}).get("rows", [])} for k in ("off", "on")}
shapes = sorted(set(rows) | set(torch["off"]) | set(torch["on"]),
                key=lambda s: NAMES.index(s) if s in NAMES else len(NAMES))
out = []
p = out.append
if d.get("adapter"):
    gemm = ", ".join(f"{m['variant']} {m['gflops']:.4g}" for m in d.get("matmul", []))
    p(f"drconv: {d['adapter']} ({d['backend']}, {d['device_type']}), timer {d['timer']}; "
      f"GEMM {d['matmul'][0]['n'] if d.get('matmul') else '?'}^3 GFLOP/s: {gemm}")
else:
    p("drconv: no shape measured")
for run in d.get("shape_runs", []):
    if run["status"] != "ok":
        p(f"drconv: shape {run['shape']} {run['status']} after {run['seconds']} s")
for k in ("off", "on"):
    run = t.get(f"tf32_{k}")
    if run:
        flags = run.get("tf32_flags") or {}
        p(f"torch TF32 {k}: {run['torch_version']} on {run['device']}, median of {run['n']} "
          f"(matmul allow_tf32 {flags.get('matmul')}, cudnn {flags.get('cudnn')})")
if not t:
    p("torch: not run (no PyTorch with CUDA)")
p("")
p("ms, medians. drconv: f32 WGSL on wgpu/Vulkan, GPU timestamps; fused = inference forward, "
  "all-reg = training forward. torch: the reference DRConv2d, eval forward (all regions) and "
  "train forward+backward, eager or replayed as a CUDA graph. x: torch (TF32 off, the better of "
  "eager and graph) over drconv (fused fwd; fwd+bwd): above 1, drconv is faster.")
W = 26
p(f"{'':<{W}} | {'drconv':^26} | {'torch forward':^35} | {'torch fwd+bwd':^35} | {'x torch':^13}")
p(f"{'':<{W}} | {'':26} | {'eager':^17} {'graph':^17} | {'eager':^17} {'graph':^17} |")
p(f"{'shape':<{W}} | {'fused':>8} {'all-reg':>8} {'fwd+bwd':>8} | "
  + " ".join(f"{h:>8}" for h in ["TF32 off", "on"] * 2) + " | "
  + " ".join(f"{h:>8}" for h in ["TF32 off", "on"] * 2) + f" | {'fwd':>6} {'f+b':>6}")
for s in shapes:
    fused, full = rows.get(s, {}).get("fused", {}), rows.get(s, {}).get("all_regions", {})
    tr = {k: torch[k].get(s, {}) for k in ("off", "on")}
    fwd = [tr[k].get(key) for key in ("dr_fwd_ms", "dr_fwd_graph_ms") for k in ("off", "on")]
    fb = [tr[k].get(key) for key in ("dr_fwdbwd_ms", "dr_fwdbwd_graph_ms") for k in ("off", "on")]
    best = lambda *v: min((x for x in v if isinstance(x, (int, float))), default=None)
    drc_fb = full.get("forward_backward_ms")
    p(f"{label(s):<{W}} | {ms(fused.get('forward_ms'))} {ms(full.get('forward_ms'))} {ms(drc_fb)} | "
      + " ".join(ms(v) for v in fwd) + " | " + " ".join(ms(v) for v in fb)
      + f" | {ratio(best(fwd[0], fwd[2]), fused.get('forward_ms'))} {ratio(best(fb[0], fb[2]), drc_fb)}")

p("")
if not plan:
    p("roofline: no plan report (`drconv plan --profile NAME --json FILE` is not in this drconv, "
      "or no profile fits this GPU): per-step floors left out.")
else:
    prof = plan.get("profile") or {}
    peak, bw = prof.get("fp32_tflops"), prof.get("bandwidth_gbs")

    def floor_us(disp):
        if isinstance(disp.get("floor_us"), (int, float)):
            return disp["floor_us"]
        if peak and bw:
            return 1e6 * max(disp.get("flops", 0) / (peak * 1e12), disp.get("bytes", 0) / (bw * 1e9))
        return None

    def key(shape):  # "S1 B1 64->64 k3 r8 40x40 p1" -> the bench's "B1 64->64 k3 r8 40x40 p1"
        parts = str(shape).split()
        return " ".join(parts[1:]) if parts and parts[0] in TAGS else str(shape)

    plans = {(key(q.get("shape")), q.get("mode")): q for q in plan.get("plans", [])}
    p(f"roofline: drconv plan --profile {prof.get('name', '?')} ({prof.get('device', '?')}: "
      f"{peak} TFLOP/s FP32, {bw} GB/s). Per step, in microseconds: drconv's GPU time, the "
      "floor max(FLOPs / peak, bytes / bandwidth) summed over the step's dispatches, floor / time.")
    p(f"{'shape':<{W}} {'path':<11} {'step':<24} {'us':>10} {'floor us':>10} {'reached':>8}")

    def us(v):
        return f"{1e3 * v:>10.2f}" if isinstance(v, (int, float)) else f"{'-':>10}"

    def frac(floor, time):
        ok = isinstance(floor, (int, float)) and isinstance(time, (int, float)) and time > 0
        return f"{100 * floor / time:>7.2f}%" if ok else f"{'-':>8}"

    for s in shapes:
        for path, mode in (("fused", "inference"), ("all_regions", "training")):
            row = rows.get(s, {}).get(path)
            q = plans.get((s, mode))
            if row is None:
                continue
            if q is None:
                p(f"{label(s):<{W}} {path:<11} (no {mode} plan for this shape in the report)")
                continue
            disps, back = q.get("dispatches", []), []
            if mode == "training":  # the plan's forward ends at `gather`; its backward follows
                ends = [i for i, x in enumerate(disps) if x.get("label") == "gather"]
                if ends:
                    disps, back = disps[:ends[0] + 1], disps[ends[0] + 1:]
            floors = {}
            for x in disps:
                lab = x.get("label") or x.get("entry")
                f = floor_us(x)
                if f is not None:
                    floors[lab] = floors.get(lab, 0.0) + f / 1e3
            for st in row.get("steps", []):
                f = floors.get(st["label"])
                p(f"{label(s):<{W}} {path:<11} {st['label']:<24} {us(st['ms'])} {us(f)} {frac(f, st['ms'])}")
            total = sum(floors.values())
            p(f"{label(s):<{W}} {path:<11} {'= forward':<24} {us(row.get('forward_ms'))} "
              f"{us(total)} {frac(total, row.get('forward_ms'))}")
            missing = sorted(set(floors) - {st["label"] for st in row.get("steps", [])})
            if missing:
                p(f"{'':<{W}} {'':<11} plan steps the bench did not time: {', '.join(missing)}")
            if mode == "training" and row.get("forward_backward_ms"):
                fb_floor = total + sum((floor_us(x) or 0) / 1e3 for x in back)
                p(f"{label(s):<{W}} {path:<11} {'= forward + backward':<24} "
                  f"{us(row['forward_backward_ms'])} {us(fb_floor)} "
                  f"{frac(fb_floor, row['forward_backward_ms'])}")
text = "\n".join(out) + "\n"
open(out_path, "w").write(text)
print(text, end="")
PY

measured=$(grep -c '"path": "fused"' "$OUT/drconv.json" || true)
files=("$OUT"/*)
say "done after ${SECONDS}s: in $OUT: ${files[*]##*/}"
((measured > 0)) || fail 1 "drconv measured no shape (see the log above)"
