#!/usr/bin/env bash
# The GPU check, one command on a GPU machine (at most 8 minutes on one H200):
#   1. the CUDA tests (tiling on CUDA equals the CPU within bf16 tolerance, an AMP training
#      step, a checkpoint written on the GPU read on the CPU),
#   2. the GPU benchmarks (512² and 2048² tiled inference with and without 8-fold TTA at
#      width 64, training iterations per second, peak GPU memory) -> OUT/benchmarks/gpu.*,
#   3. the gpu profile, headless (all folds and directions, several networks at once on the
#      one GPU) -> OUT/gpu/ (result files, Table 1, Table 2, results.md).
#
# GPU machines in clusters are often offline and bring their own CUDA build of PyTorch. This
# script installs nothing from the network: the project runs from the checkout, and what the
# machine lacks comes from wheels prepared beforehand on a connected machine:
#   make gpu-wheels gpu-pack      # .gpu/wheels (Dask for the fan-out) and .gpu/data (the frames used)
# then copy the checkout with .gpu/ to the GPU machine and run
#   bash benchmarks/gpu_check.sh [OUT]          (OUT defaults to reports)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-reports}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".gpu/wheels/*.whl" > /dev/null; then
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/unetlib-site .gpu/wheels/*.whl
  export PYTHONPATH="$PWD:/tmp/unetlib-site${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -d .gpu/data ]; then export UNETLIB_DATA="$PWD/.gpu/data"; fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

start=$SECONDS
echo "== 1. CUDA tests"
"$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_gpu.py tests/test_augment.py 2>&1 | tee "$OUT/gpu_tests.log"
echo "== 2. benchmarks ($((SECONDS - start)) s)"
"$PY" -m benchmarks.bench_gpu --out "$OUT/benchmarks"
echo "== 3. the gpu profile, headless ($((SECONDS - start)) s)"
"$PY" -m unetlib.reproduce --profile gpu --headless --no-fetch --workers "${WORKERS:-5}" --output-dir "$OUT/gpu"
echo "== done in $((SECONDS - start)) s"
