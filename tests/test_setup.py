"""Set-up: which PyTorch build `make setup` installs (TORCH=...), and packaging metadata without warnings."""

import subprocess
import sys
import time
import tomllib

import pytest

from unetlib import torch_build
from unetlib.environment import project_root
from unetlib.errors import UnetlibError

PIN = "torch==2.13.0"


def _never(url):
    raise AssertionError(f"probed {url}, which this choice does not need")


def test_the_pin_is_read_from_pyproject():
    dependencies = tomllib.loads((project_root() / "pyproject.toml").read_text())["project"]["dependencies"]
    assert torch_build.pinned_torch() in [d.replace(" ", "") for d in dependencies]
    assert torch_build.pinned_torch().startswith("torch==")


def test_cpu_on_linux_takes_pytorchs_cpu_index_when_it_answers():
    asked = []
    args, note = torch_build.pip_arguments("cpu", "Linux", probe=lambda url: asked.append(url) or True, pin=PIN)
    assert args == ["--extra-index-url", "https://download.pytorch.org/whl/cpu", PIN] and note is None
    assert asked == [torch_build.CPU_INDEX]


def test_cpu_on_linux_falls_back_to_pips_own_index_with_a_note():
    args, note = torch_build.pip_arguments("cpu", "Linux", probe=lambda url: False, pin=PIN)
    assert args == [PIN]
    assert note.startswith(f"note: PyTorch's CPU wheel index {torch_build.CPU_INDEX} did not answer")
    assert "CUDA build" in note


@pytest.mark.parametrize("system", ["Darwin", "Windows"])
def test_elsewhere_the_public_build_is_the_cpu_one(system):
    assert torch_build.pip_arguments("cpu", system, probe=_never, pin=PIN) == ([PIN], None)
    args, note = torch_build.pip_arguments("cuda", system, probe=_never, pin=PIN)
    assert args == [PIN] and "not a CUDA build" in note and "TORCH=https://" in note


def test_cuda_and_a_named_index():
    assert torch_build.pip_arguments("cuda", "Linux", probe=_never, pin=PIN) == ([PIN], None)
    url = "https://download.pytorch.org/whl/cu126"
    assert torch_build.pip_arguments(url, "Linux", probe=_never, pin=PIN) == (["--extra-index-url", url, PIN], None)
    with pytest.raises(UnetlibError, match="TORCH='gpu' is not cpu, cuda or a wheel index URL"):
        torch_build.pip_arguments("gpu", "Linux", probe=_never, pin=PIN)


def test_an_index_that_never_answers_costs_at_most_the_probe_time(monkeypatch):
    """A name lookup or connection that hangs is abandoned after the probe's seconds, not waited for."""
    def hang(request, timeout=None):
        time.sleep(30)

    monkeypatch.setattr(torch_build.urllib.request, "urlopen", hang)
    start = time.monotonic()
    assert torch_build.index_answers("https://download.pytorch.org/whl/cpu", seconds=0.5) is False
    assert time.monotonic() - start < 5


def test_the_command_prints_pip_arguments_or_one_error_line():
    run = [sys.executable, "-m", "unetlib.torch_build"]
    done = subprocess.run([*run, "https://example.org/whl"], capture_output=True, text=True, cwd=project_root(),
                          timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["--extra-index-url", "https://example.org/whl",
                                                            torch_build.pinned_torch()]
    done = subprocess.run([*run, "gpu"], capture_output=True, text=True, cwd=project_root(), timeout=120)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith("torch_build: error: TORCH='gpu'")


def test_the_licence_is_an_spdx_string_so_setuptools_prints_no_deprecation_banner():
    """A TOML table (license = {text = ...}) makes setuptools >= 77 print a deprecation banner at every install."""
    project = tomllib.loads((project_root() / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in project["build-system"]["requires"])
