# Source on a lent GPU machine (the device tool's image: python3 with torch, no network) to get
# the project's remaining dependencies from wheels carried in .whl/ (see bench/RESULTS.md):
#   . bench/gpu_env.sh
# gsplat and nvdiffrast compile their CUDA code on first use (JIT, cached in $TORCH_EXTENSIONS_DIR).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 TORCH_EXTENSIONS_DIR=/tmp/torch_ext
mkdir -p "$TORCH_EXTENSIONS_DIR"
