# The two commands of the README:
#   make reproduce   # fetch missing data, run every notebook with PROFILE (default: gpu on a CUDA GPU, else cpu)
#   make test        # the linter, then the test suite, including every report notebook under the smoke profile
# Both create the virtual environment in $(VENV) first, and only install what is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# Wheels an offline GPU machine (Python 3.12, its own CUDA PyTorch) lacks for the fan-out.
GPU_WHEELS := dask==2026.8.0 distributed==2026.8.0 tornado==6.6.1 tblib==3.2.2 zict==3.0.0 locket==1.0.0 partd==1.4.2

.PHONY: setup reproduce test bench gpu-wheels gpu-pack clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
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
