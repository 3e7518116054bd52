#!/usr/bin/env bash
# The GPU check, one command on a GPU machine (at most 8 minutes on one H200): the CUDA tests, the GPU
# benchmarks, a learning check of the paper profile and the gpu profile, each within its time budget
# (see benchmarks/gpu_check.py), packed into OUT/gpu_check.tar.gz (at most 16 MiB).
#
# GPU machines in clusters are often offline and bring their own CUDA build of PyTorch. This
# script installs nothing from the network: the project runs from the checkout, and what the
# machine lacks comes from wheels prepared beforehand on a connected machine:
#   make gpu-wheels gpu-pack      # .gpu/wheels (Dask for the fan-out) and .gpu/data (the frames used)
# then copy the checkout with .gpu/ to the GPU machine and run
#   UNETLIB_GIT_REVISION=$(git rev-parse HEAD) bash benchmarks/gpu_check.sh OUT [--budget 480]
# Every stage runs even when one fails (benchmarks/gpu_check.py); OUT/gpu_check.tar.gz holds the results.
# On a CPU, `bash benchmarks/gpu_check.sh OUT --dry-run` runs the same stages at smoke sizes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
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
export UNETLIB_GIT_REVISION="${UNETLIB_GIT_REVISION:-unknown}"  # pass the revision in where .git did not travel
exec "$PY" -m benchmarks.gpu_check "$OUT" "${@:2}"
