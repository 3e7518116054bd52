"""Result files: one JSON per experiment run, read by the table notebook.

Each file records what is needed to trust and repeat a number: parameters,
seeds, the choices made where the paper is silent, checksums of the data
actually used, the git revision, package versions, the hardware, per-fold and
per-image metrics, and timings. Files are written atomically.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from unetlib.atomic import atomic_open
from unetlib.errors import UnetlibError

__all__ = ["array_digest", "environment", "write_result", "read_result", "read_results", "SCHEMA"]

SCHEMA = "unetlib-result-v1"
_PACKAGES = ("unetlib", "torch", "numpy", "scipy", "scikit-image", "numba", "tifffile", "papermill")


def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and C-ordered bytes (stable across file formats)."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{array.shape}|{array.dtype.str}|".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def _git_revision(root: Path) -> str | None:
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _hardware() -> dict[str, Any]:
    import torch

    from unetlib.runtime import cpu_has_bf16

    info = {
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_bf16(),
        "cuda": torch.cuda.is_available(),
    }
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def environment() -> dict[str, Any]:
    """Git revision, package versions, Python, hardware and the time of the run."""
    from unetlib.notebook import project_root

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_revision": _git_revision(project_root()),
        "python": platform.python_version(),
        "packages": versions,
        "hardware": _hardware(),
        "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_result(path: str | Path, result: dict[str, Any]) -> Path:
    """Write ``result`` plus :func:`environment` as JSON, atomically."""
    path = Path(path)
    payload = {"schema": SCHEMA, **_jsonable(result), "environment": environment()}
    text = json.dumps(payload, indent=1, allow_nan=False) + "\n"
    with atomic_open(path) as f:
        f.write(text.encode("utf-8"))
    return path


def read_result(path: str | Path) -> dict[str, Any]:
    """Read one result file, checking its schema."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UnetlibError(f"cannot read result file {path}: {exc}") from exc
    if payload.get("schema") != SCHEMA:
        raise UnetlibError(f"{path} is not a unetlib result file (schema {SCHEMA!r} expected)")
    return payload


def read_results(folder: str | Path) -> dict[str, dict[str, Any]]:
    """All result files of a folder, keyed by experiment name."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            payload = read_result(path)
        except UnetlibError:
            continue
        out[payload.get("experiment", path.stem)] = payload
    return out
