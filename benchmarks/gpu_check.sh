#!/usr/bin/env bash
# The GPU check, one command on a GPU machine (at most 8 minutes on one H200):
#   1. the CUDA tests (tiling on CUDA equals the CPU within bf16 tolerance, an AMP training
#      step, a checkpoint written on the GPU read on the CPU),
#   2. the GPU benchmarks (512² and 2048² tiled inference with and without 8-fold TTA at
#      width 64, training iterations per second, peak GPU memory) -> OUT/benchmarks/gpu.*,
#   3. the paper profile's learning rate at the paper's size: 300 SGD steps (momentum 0.99,
#      one 572² tile, width 64) on PhC-U373; the loss must fall -> OUT/paper_lr.log,
#   4. the gpu profile, headless (all folds and directions, several networks at once on the
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
echo "== 3. the paper profile's learning rate, 300 steps at width 64 ($((SECONDS - start)) s)"
"$PY" -m unetlib train PhC-C2DH-U373 --profile paper --iterations 300 --checkpoint-every 300 \
    --out /tmp/unetlib-paper-lr 2>&1 | tee "$OUT/paper_lr.log"
"$PY" - <<'PYEOF' | tee -a "$OUT/paper_lr.log"
from unetlib.checkpoint import load_checkpoint
h = load_checkpoint("/tmp/unetlib-paper-lr/last.pt")["history"]
first, last = sum(r[1] for r in h[:30]) / 30, sum(r[1] for r in h[-30:]) / 30
print(f"paper profile, SGD momentum 0.99: loss {first:.3f} (first 30 steps) -> {last:.3f} (last 30): "
      + ("falls" if last < 0.8 * first else "DOES NOT FALL"))
PYEOF
echo "== 4. the gpu profile, headless ($((SECONDS - start)) s)"
"$PY" -m unetlib.reproduce --profile gpu --headless --no-fetch --workers "${WORKERS:-5}" --output-dir "$OUT/gpu"
echo "== done in $((SECONDS - start)) s"
