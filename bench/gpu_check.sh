#!/usr/bin/env bash
# The one prepared GPU run (issues 15 and 16): install, build, CUDA parity tests, then the mesh stage and
# the full-size pipelines, each part under its own time limit, all inside one ~9-minute budget, writing
# everything under $OUT as it goes so a cut-short run still brings its figures back.
#
#   bash bench/gpu_wheels.sh                      # here, once: the wheels into .whl/, inputs into .gpu/
#   device tool: run  command="bash bench/gpu_check.sh"  carry=[".whl", ".gpu"]  timeout_s=600
#   OUT=/tmp/gc bash bench/gpu_check.sh --dry-run # on a CPU: every part at tiny sizes (tests/test_gpu_check.py)
#   bash bench/gpu_check.sh --plan                # print the parts, limits and estimates; run nothing
#
# Parts, in order. Estimates for an H100/H200 come from bench/RESULTS.md's GPU runs (2026-11-24, H100):
#   part         estimate  limit  what (estimate source)
#   env             20 s     60   wheels -> /tmp/site (~15 MB of wheels; + ~10 s to unpack warp if carried)
#   versions        15 s     30   torch, CUDA, driver, GPU, package versions (12 s on the contended CPU here)
#   gsplat_build    90 s    200   gsplat 1.5.3 JIT compile (86 s on the H100, MAX_JOBS=16)
#   nvdiffrast      35 s    120   plugin build with torch's verbose log -> nvdiffrast_build.log (27 s to fail on the H100)
#   tests           60 s    150   CUDA parity: render backends, warp, bake, mesh stage, every *cuda* test (77 s on 1 CPU thread)
#   mesh_stage      45 s    120   bench_mesh_fidelity.py chair, 500 steps, mesh stage at paper sizes (128^3, 50k faces, 1024 px)
#   zero123        120 s    240   full-size random-weight Zero123, fp16, per-stage times (build 24 s + warm-up + 80 s before
#                                 the fast uv default; the mesh stage's unwrap was 37 s of it and is ~1 s now)
#   imagedream     110 s    200   the same for ImageDream, only if its estimate still fits (build 24 s + 92 s before)
#   mvdream        100 s    200   the same for MVDream, likewise (build 15 s + 92 s before)
#   sum of estimates: 385 s without the optional two, 595 s with them; the budget (GPU_CHECK_BUDGET_S, default 540 s)
#   cuts each part's limit to what the later required parts' estimates leave (never below its own estimate),
#   and skips optional parts whose estimate no longer fits. GPU_CHECK_PARTS picks parts (the extra part
#   'stall' never ends: the timeout rehearsal of tests/test_gpu_check.py). Add ~1-2 min of machine start and transfer: one device call fits the 10-minute command limit.
#
# Files under $OUT (the device tool returns at most 8): summary.txt (one line per part: status, start, end,
# seconds, limit; the versions), log.txt (all output), nvdiffrast_build.log, junit_files.xml, junit_cuda.xml,
# mesh_fidelity.jsonl, pipeline.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=run
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --plan) MODE=plan ;;
  "") ;;
  *) echo "usage: bash bench/gpu_check.sh [--dry-run | --plan]" >&2; exit 2 ;;
esac
export MODE
export OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
export LOG=$OUT/log.txt SUMMARY=$OUT/summary.txt
BUDGET=${GPU_CHECK_BUDGET_S:-540}
PARTS=${GPU_CHECK_PARTS:-env versions gsplat_build nvdiffrast tests mesh_stage zero123 imagedream mvdream}
T0=$(date +%s)

# name: estimate, limit, required (1) or optional (0)
declare -A EST=([env]=20 [versions]=15 [gsplat_build]=90 [nvdiffrast]=35 [tests]=60 [mesh_stage]=45 [zero123]=120
  [imagedream]=110 [mvdream]=100 [stall]=5)
declare -A LIMIT=([env]=60 [versions]=30 [gsplat_build]=200 [nvdiffrast]=120 [tests]=150 [mesh_stage]=120
  [zero123]=240 [imagedream]=200 [mvdream]=200 [stall]=600)
declare -A REQUIRED=([env]=1 [versions]=1 [gsplat_build]=1 [nvdiffrast]=1 [tests]=1 [mesh_stage]=1 [zero123]=1
  [imagedream]=0 [mvdream]=0 [stall]=1)

export PY=${PYTHON:-python3}
if [ "$MODE" = dry ]; then
  SIZE=tiny DEVICE=cpu
else
  SIZE=full DEVICE=cuda
fi
export SIZE DEVICE

# ------------------------------------------------------------------------------------------------ parts
p_env() {
  if [ "$MODE" = dry ]; then
    echo "dry run: skipping '. bench/gpu_env.sh' (cp312 wheels); using $PY with PYTHONPATH=$PWD"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    ls .whl 2>/dev/null || echo "(no .whl/ here)"
    return 0
  fi
  ls -l .whl .whl_warp1 .whl_warp2 2>/dev/null
  # shellcheck source=gpu_env.sh
  . bench/gpu_env.sh || return 1
  "$PY" -m pip list 2>/dev/null | grep -i -E "^(gsplat|diffrp|warp|diffusers|transformers|trimesh|pymcubes|xatlas|fast.simpl|plyfile) "
}

p_versions() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
  command -v nvcc >/dev/null && nvcc --version | tail -2
  "$PY" - <<'EOF'
import importlib.metadata as md, platform, torch
print(f"python {platform.python_version()}  torch {torch.__version__}  torch CUDA {torch.version.cuda}  "
      f"cuDNN {torch.backends.cudnn.version()}  CUDA available {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs")
for name in ["gsplat", "diffrp-nvdiffrast", "warp-lang", "diffusers", "transformers", "accelerate", "numpy",
             "scipy", "trimesh", "PyMCubes", "xatlas", "fast-simplification", "plyfile"]:
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} (not installed)")
EOF
}

p_gsplat_build() {
  "$PY" - <<'EOF'
import importlib.util, sys, time
if importlib.util.find_spec("gsplat") is None:
    print("gsplat is not installed: nothing to build"); sys.exit(77)
t = time.perf_counter()
from gsplat.cuda._backend import _C  # JIT-compiles the CUDA extension on first import
print(f"gsplat extension {'loaded' if _C is not None else 'NOT built'} in {time.perf_counter() - t:.1f} s")
sys.exit(0 if _C is not None else 1)
EOF
}

p_nvdiffrast() {
  # nvdiffrast's own load first, with torch's verbose build log; then what the build left. Then, in a fresh
  # process (a second load of the same extension in one process can fail by itself), our backend's load:
  # render/backends.py registers the plugin module so that nvdiffrast's import by name finds it.
  "$PY" - <<'EOF'
import importlib.util, os, sys, time, traceback
if importlib.util.find_spec("nvdiffrast") is None:
    print("nvdiffrast is not installed: nothing to build"); sys.exit(77)
import torch
import torch.utils.cpp_extension as ce
import nvdiffrast
from nvdiffrast.torch import ops
name = ops.sanitize_name(f"nvdiffrast_plugin_{nvdiffrast.__version__}_torch{torch.__version__}")
build = ce._get_build_directory(name, False)
print(f"plugin {name}\nbuild directory {build}\nCUDA_HOME {ce.CUDA_HOME}")
load = ce.load
ce.load = lambda *a, **k: load(*a, **{**k, "verbose": True})
t = time.perf_counter()
try:
    ops._get_plugin()
    print(f"nvdiffrast's own plugin load: OK in {time.perf_counter() - t:.1f} s")
except Exception:
    print(f"nvdiffrast's own plugin load FAILED after {time.perf_counter() - t:.1f} s:\n{traceback.format_exc()}")
print("build directory holds:", sorted(os.listdir(build)) if os.path.isdir(build) else "nothing")
EOF
  local rc=$?
  [ "$rc" = 77 ] && return 77
  "$PY" - <<'EOF'
import sys, time, traceback
from microdreamer_core.render.backends import load_backend
t = time.perf_counter()
try:
    load_backend("nvdiffrast")
    print(f"microdreamer load_backend('nvdiffrast'): OK in {time.perf_counter() - t:.1f} s")
except Exception:
    print(f"microdreamer load_backend('nvdiffrast') FAILED:\n{traceback.format_exc()}")
    sys.exit(3)
EOF
  rc=$?
  if [ "$rc" != 0 ] && [ "$MODE" = run ]; then  # later processes would rebuild it each time: take it away
    echo "nvdiffrast unusable: removed from /tmp/site so later parts use the torch mesh rasteriser"
    rm -rf /tmp/site/nvdiffrast /tmp/site/diffrp_nvdiffrast-*
  fi
  return "$rc"
}

p_tests() {
  local files=(tests/render/test_backends.py tests/render/test_mesh_warp.py tests/meshing/test_bake.py
    tests/meshing/test_stage.py tests/diffusion/test_accelerate.py tests/fit/test_fitter.py tests/fit/test_densify.py)
  # every test of these files (test_mesh_warp.py skips itself where warp was not carried)
  "$PY" -m pytest -q -m "not slow" --timeout 120 -p no:cacheprovider "${files[@]}" --junitxml="$OUT/junit_files.xml"
  local rc=$?
  # then every test with 'cuda' in its name anywhere
  "$PY" -m pytest -q -m "not slow" --timeout 120 -p no:cacheprovider tests -k cuda --junitxml="$OUT/junit_cuda.xml"
  local rc2=$?
  [ "$rc" = 0 ] && [ "$rc2" = 0 ]
}

p_mesh_stage() {
  if [ "$MODE" = dry ]; then
    "$PY" bench/bench_mesh_fidelity.py --object chair --steps 30 --res 32 --mesh-resolution 32 --target-faces 2000 \
      --texture-size 64 --no-bake-on-truth --device cpu --out "$OUT/mesh_fidelity.jsonl"
  else
    "$PY" bench/bench_mesh_fidelity.py --object chair --device cuda --no-bake-on-truth --out "$OUT/mesh_fidelity.jsonl"
  fi
}

p_pipeline() {  # p_pipeline PRESET
  local dtype=fp16
  [ "$MODE" = dry ] && dtype=auto
  "$PY" bench/bench_pipeline.py --preset "$1" --size "$SIZE" --device "$DEVICE" --dtype "$dtype" \
    --jsonl "$OUT/pipeline.jsonl"
}
p_zero123() { p_pipeline zero123; }
p_imagedream() { p_pipeline imagedream; }
p_mvdream() { p_pipeline mvdream; }
p_stall() { echo "a part that never ends"; sleep 600; }
export -f p_stall p_env p_versions p_gsplat_build p_nvdiffrast p_tests p_mesh_stage p_pipeline p_zero123 p_imagedream p_mvdream

# ------------------------------------------------------------------------------------------------ runner
reserve_after() {  # seconds the required parts after $1 are estimated to need
  local after=0 seen=0 p
  for p in $PARTS; do
    if [ "$seen" = 1 ] && [ "${REQUIRED[$p]}" = 1 ]; then after=$((after + EST[$p])); fi
    [ "$p" = "$1" ] && seen=1
  done
  echo "$after"
}

record() { echo "$1" | tee -a "$SUMMARY" "$LOG"; }

run_part() {
  local name=$1 now left limit start end rc status
  now=$(date +%s)
  left=$((T0 + BUDGET - now))
  # what is left after the later required parts' estimates, but at least this part's estimate, at most its limit
  limit=$((left - $(reserve_after "$name")))
  ((limit < EST[$name])) && limit=${EST[$name]}
  ((limit > LIMIT[$name])) && limit=${LIMIT[$name]}
  if [ "${REQUIRED[$name]}" = 0 ] && ((left < EST[$name])); then
    record "$(printf '%-13s %-8s %s' "$name" skipped "estimate ${EST[$name]} s > ${left} s left")"
    return
  fi
  ((limit > left)) && limit=$left
  if ((limit < 5)); then
    record "$(printf '%-13s %-8s %s' "$name" skipped "no time left (${left} s)")"
    return
  fi
  start=$(date +%s.%N)
  echo "=== [$name] start $(date -u +%H:%M:%S) UTC, limit ${limit} s, estimate ${EST[$name]} s" | tee -a "$LOG"
  local logs=("$LOG")
  [ "$name" = nvdiffrast ] && logs+=("$OUT/nvdiffrast_build.log")
  [ "$name" = versions ] && logs+=("$SUMMARY")
  if [ "$name" = env ]; then  # runs in this shell (no time limit): gpu_env.sh's exports must reach the later parts
    p_env > >(tee -a "${logs[@]}") 2>&1
    rc=$?
  else
    timeout -k 10 "$limit" bash -c "p_$name" 2>&1 | tee -a "${logs[@]}"
    rc=${PIPESTATUS[0]}
  fi
  end=$(date +%s.%N)
  case "$rc" in 0) status=ok ;; 77) status=n/a ;; 124 | 137) status=timeout ;; *) status="failed($rc)" ;; esac
  local secs
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')
  echo "=== [$name] end $(date -u +%H:%M:%S) UTC, $status, ${secs} s" | tee -a "$LOG"
  record "$(printf '%-13s %-10s %7s s  start %s  limit %4s s  estimate %4s s' "$name" "$status" "$secs" \
    "$(date -u -d "@${start%.*}" +%H:%M:%S)" "$limit" "${EST[$name]}")"
}

if [ "$MODE" = plan ]; then
  total=0
  for p in $PARTS; do
    printf '%-13s estimate %4s s  limit %4s s  %s\n' "$p" "${EST[$p]}" "${LIMIT[$p]}" \
      "$([ "${REQUIRED[$p]}" = 1 ] && echo required || echo optional)"
    [ "${REQUIRED[$p]}" = 1 ] && total=$((total + EST[$p]))
  done
  echo "required estimates: $total s of a $BUDGET s budget"
  exit 0
fi

{
  echo "gpu_check $MODE  commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "budget $BUDGET s, parts: $PARTS"
} | tee -a "$SUMMARY" "$LOG"
for p in $PARTS; do
  run_part "$p"
done
record "total $(($(date +%s) - T0)) s of a $BUDGET s budget"
