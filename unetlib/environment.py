"""Where and on what the kit runs: the project checkout, the CPU, the GPU, package versions, git.

Everything that describes the machine is read here once, for result files,
benchmarks and the precision choice of :mod:`unetlib.runtime`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["project_root", "cpu_model", "cpu_flags", "cpu_has_bf16", "precision", "hardware", "git_revision", "environment"]

_PACKAGES = ("unetlib", "torch", "numpy", "scipy", "scikit-image", "numba", "tifffile", "papermill")


def project_root() -> Path:
    """The checkout that holds the package (the folder above ``unetlib/`` with a ``pyproject.toml``), else the cwd."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.cwd()


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str | None:
    """The CPU's model name (Linux), else what the platform module says."""
    return _cpuinfo().get("model name") or platform.processor() or None


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux: ``flags`` on x86, ``Features`` on Arm; empty elsewhere)."""
    info = _cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True if this CPU has bf16 instructions (AVX-512 BF16 or AMX-BF16 on x86, BF16 on Arm).

    Only these compute bf16 natively. oneDNN also "supports" bf16 on plain
    AVX-512 (and PyTorch's ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``
    says so), but there it converts every value and runs slower than fp32:
    a width-16 training step on a 508² tile took 1.26 s against 0.38 s in
    fp32 on an AVX-512 Xeon without BF16 (and 14x slower on an AVX2-only
    CPU). So the decision reads the CPU's own feature flags; where they are
    unknown (no ``/proc/cpuinfo``) the answer is False and the kit computes in
    fp32. Set ``UNETLIB_NO_BF16=1`` to force fp32 anyway.
    """
    if os.environ.get("UNETLIB_NO_BF16"):
        return False
    return bool(_BF16_FLAGS & cpu_flags())


#: Feature flags (``/proc/cpuinfo``: ``flags`` on x86, ``Features`` on Arm) of native bf16 arithmetic.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def precision(device_type: str) -> str:
    """The arithmetic the kit trains and predicts in on a device of this type: ``"bf16"`` on a CUDA GPU that
    supports it (else ``"fp16"``) and on a CPU with native bf16 (:func:`cpu_has_bf16`), else ``"fp32"``."""
    import torch

    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device_type == "cpu" and cpu_has_bf16() else "fp32"


def hardware() -> dict[str, Any]:
    """What a bit-for-bit rerun needs to match: the CPU (vendor, family, model, stepping and the instruction set
    PyTorch dispatches to), cores and PyTorch threads, the precision, and the GPU where there is one.

    Results differ in the last digits between CPU generations (bf16 above all), so a rerun on a CPU whose
    fields differ here is another draw of the same recipe, not the same run.
    """
    import torch  # here, not at the top: unetlib.data and `unetlib data` run without PyTorch (2-4 s to import)

    cpu = _cpuinfo()
    info = {
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_vendor": cpu.get("vendor_id"),
        "cpu_family": cpu.get("cpu family"),
        "cpu_model_number": cpu.get("model"),
        "cpu_stepping": cpu.get("stepping"),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_bf16(),
        "cuda": torch.cuda.is_available(),
    }
    info["precision"] = precision("cuda" if info["cuda"] else "cpu")
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def git_revision(root: Path | None = None) -> str | None:
    """``HEAD`` of the checkout, with ``+dirty`` when tracked files differ; None outside git.

    Changes under ``reports/`` do not count: a run rewrites the committed reports it reproduces.
    A copy of the checkout without ``.git`` (as GPU machines get it) reports ``UNETLIB_GIT_REVISION``.
    """
    root = root or project_root()
    given = os.environ.get("UNETLIB_GIT_REVISION", "").strip()
    if given and not (root / ".git").exists():  # a copy without .git (a batch machine): the revision it was made at
        return given
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)reports"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    """Git revision, package versions, Python, hardware and the time of the run."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "packages": versions,
        "hardware": hardware(),
        "finished_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
