# The two commands of the README:
#   make reproduce   # run every notebook with PROFILE (default: paper on a CUDA GPU, else cpu)
#   make test        # the test suite, including every notebook under the smoke profile
# Both create the virtual environment in $(VENV) first, and only install what is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup reproduce test bench clean

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
	$(PY) -m pytest -q --nbval-lax tests notebooks

bench: setup
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache
