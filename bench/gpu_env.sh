# Source on a lent GPU machine (the device tool's image: python3 with torch, no network) to get
# the project's remaining dependencies from the wheels carried in .whl/ (made here by
# bench/gpu_wheels.sh; see bench/RESULTS.md):
#   . bench/gpu_env.sh
# warp-lang travels in two parts over two device calls (.whl_warp1/ then .whl_warp2/, see
# bench/gpu_wheels.sh --warp); it is unpacked when both parts are there and skipped otherwise.
# gsplat and nvdiffrast compile their CUDA code on first use (JIT, cached in $TORCH_EXTENSIONS_DIR).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
if [ -f .whl_warp1/warp.tar.xz.part0 ] && [ -f .whl_warp2/warp.tar.xz.part1 ]; then
  cat .whl_warp1/warp.tar.xz.part0 .whl_warp2/warp.tar.xz.part1 | xz -dc | tar -x -C /tmp/site || return 1
elif [ -d .whl_warp1 ] || [ -d .whl_warp2 ]; then
  echo "only one of warp's two parts is here (a fresh machine between the two calls?): warp skipped"
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 TORCH_EXTENSIONS_DIR=/tmp/torch_ext
mkdir -p "$TORCH_EXTENSIONS_DIR"
