#!/usr/bin/env bash
# Download, HERE (a machine with PyPI), the wheels that bench/gpu_check.sh installs on a lent GPU
# machine, which has python3 + torch (CUDA) but no network. Nothing here is committed (.gitignore).
#
#   bash bench/gpu_wheels.sh                 # .whl/ for the device image's Python 3.12 (about 15 MB)
#   bash bench/gpu_wheels.sh --python 311    # another CPython (the wheel tags cp311 ...)
#   bash bench/gpu_wheels.sh --warp          # also warp-lang for CUDA, split for two device calls
#
# Only what the device image lacks (its package list: /work/.library/device/KINDS.md, 2026-11: torch
# 2.11.0+cu130, numpy 2.5, scipy, transformers 5.17, huggingface_hub 1.33, accelerate 1.15,
# safetensors 0.8, einops, PyYAML, tqdm, Pillow, ninja, jaxtyping, rich, pytest, pytest-timeout):
#   gsplat 1.5.3 (CUDA source, JIT-built there), diffrp-nvdiffrast 0.3.3.1 (same), diffusers 0.42.1,
#   trimesh, PyMCubes, xatlas, fast-simplification, plyfile (the versions of this project's venv).
# It also copies the input photo and the Duck into .gpu/ (from ../shared) for the benchmarks.
#
# The device tool carries at most 64 MiB per call (the working tree, about 1.5 MB, included).
# warp-lang 1.19.0 is a 149 MB wheel (warp.so alone is 299 MB unpacked), so it cannot travel in
# one call. With --warp it is trimmed (no examples, tests), packed with xz (about 100 MB; several
# minutes on 2 cores) and split into .whl_warp1/ (58 MiB) and .whl_warp2/ (the rest): the first device call carries
# .whl_warp1 alone, the second (on the still-warm machine) carries .whl, .gpu and .whl_warp2;
# bench/gpu_env.sh joins the parts when both are there. The README's "Speed and benchmarks" shows
# both calls.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=312
WARP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY="$2"; shift 2 ;;
    --warp) WARP=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

WHEELS=(
  gsplat==1.5.3
  diffrp-nvdiffrast==0.3.3.1
  diffusers==0.42.1
  trimesh==5.2.0
  PyMCubes==0.1.6
  xatlas==0.0.11
  fast-simplification==0.2.0
  plyfile==1.1.5
)
PLATFORMS=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  PLATFORMS+=(--platform "${p}_x86_64")
done
PIP=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp
  "${PLATFORMS[@]}")
[ -x .venv/bin/python ] && PIP[0]=.venv/bin/python

rm -rf .whl && mkdir -p .whl .gpu
"${PIP[@]}" -d .whl "${WHEELS[@]}"
for f in inputs/24_wild2_yellow_duck_rgba.png assets/Duck.glb; do
  if [ -f "../shared/$f" ]; then cp "../shared/$f" .gpu/; fi
done

if [ "$WARP" = 1 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "${PIP[@]}" -d "$tmp" warp-lang==1.19.0
  (cd "$tmp" && python3 -m zipfile -e warp_lang-*.whl site >/dev/null)
  rm -rf "$tmp"/site/warp/examples "$tmp"/site/warp/tests
  rm -rf .whl_warp1 .whl_warp2 && mkdir -p .whl_warp1 .whl_warp2
  tar -C "$tmp/site" -cf - . | xz -T0 -6 >"$tmp/warp.tar.xz"
  split -b 58M -d -a 1 "$tmp/warp.tar.xz" "$tmp/warp.tar.xz.part"  # call 1 carries the larger part alone
  mv "$tmp/warp.tar.xz.part0" .whl_warp1/ && mv "$tmp/warp.tar.xz.part1" .whl_warp2/
fi

tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
size() { du -sb "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
echo "wheels in .whl/:"; ls -l .whl | tail -n +2
main=$(( tree + $(size .whl .gpu) ))
echo "call carrying .whl + .gpu: $(mib "$main") MiB with the tracked tree (limit 64 MiB)"
if [ "$WARP" = 1 ]; then
  echo "call 1 carrying .whl_warp1: $(mib $(( tree + $(size .whl_warp1) )) ) MiB"
  echo "call 2 carrying .whl + .gpu + .whl_warp2: $(mib $(( main + $(size .whl_warp2) )) ) MiB"
fi
