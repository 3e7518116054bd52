# The two commands of the README:
#   make reproduce   # fetch missing data, run every notebook with PROFILE (default: gpu on a CUDA GPU, else cpu)
#   make test        # the linter, then the test suite, including every report notebook under the smoke profile
# Both create the virtual environment in $(VENV) first, and only install what is missing.
#
# TORCH picks the PyTorch build (python -m unetlib.torch_build prints the pip arguments):
#   TORCH=cpu   (default) the CPU build: on Linux from PyTorch's CPU wheel index, download.pytorch.org/whl/cpu,
#               when it answers within 5 s (the public index's Linux torch is the multi-GB CUDA build), else
#               from pip's own index, with a note; on macOS and Windows the public index's build is the CPU one
#   TORCH=cuda  the public index's build: CUDA on Linux x86-64
#   TORCH=URL   a wheel index of your choice, e.g. TORCH=https://download.pytorch.org/whl/cu126
# It applies when the environment is set up; to switch builds: make clean setup TORCH=cuda

PYTHON ?= python3
VENV ?= .venv
TORCH ?= cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# Wheels an offline GPU machine (Python 3.12, its own CUDA PyTorch) lacks for the fan-out.
GPU_WHEELS := dask==2026.8.0 distributed==2026.8.0 tornado==6.6.1 tblib==3.2.2 zict==3.0.0 locket==1.0.0 partd==1.4.2

.PHONY: setup reproduce test bench gpu-wheels gpu-pack clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	torch=$$($(PY) -m unetlib.torch_build $(TORCH)) && $(PY) -m pip install --quiet $$torch
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@rm -f $(VENV)/.installed-*
	@touch $@

reproduce: setup
	$(PY) -m unetlib.reproduce $(if $(PROFILE),--profile $(PROFILE),)

test: setup
	$(PY) -m ruff check unetlib tests benchmarks
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) -m benchmarks.run_all

gpu-wheels: setup  # for benchmarks/gpu_check.sh on an offline GPU machine
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .gpu/wheels $(GPU_WHEELS)

gpu-pack: setup  # the dataset frames the GPU run reads, into .gpu/data
	$(PY) -m benchmarks.gpu_pack --out .gpu/data

clean:
	rm -rf $(VENV) .pytest_cache
