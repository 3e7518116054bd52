"""Result files: one JSON per experiment, the only input of the tables.

The schema of result files lives here and nowhere else (study files: :mod:`unetlib.study`). An :class:`ExperimentResult` holds
what is needed to trust and repeat a number:

- ``recipe``: the experiment's recipe (:class:`unetlib.recipe.Recipe`);
- ``runs``: one entry per unit (an ISBI fold or a CTC direction), each with
  its own ``seed`` and ``recipe``, its metrics, loss curve and timings;
- ``mean``: the experiment's numbers (the mean over its runs);
- ``data``: digests of the pixel arrays used (:func:`unetlib.manifest.pixel_digest`);
- ``environment``: git revision, package versions, hardware, time (added on writing);
- ``protocol``, ``timings``, ``files`` (paths relative to the result file).

Files are written atomically; a file that cannot be read is reported by name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetlib.atomic import write_text
from unetlib.environment import environment
from unetlib.errors import UnetlibError

__all__ = ["SCHEMA", "ExperimentResult", "write_result", "read_result", "read_results", "jsonable"]

SCHEMA = "unetlib-result-v2"


@dataclass
class ExperimentResult:
    """One experiment's runs and numbers (see the module docstring for each field)."""

    experiment: str
    dataset: str | None
    profile: str
    recipe: dict | None
    protocol: str
    runs: list[dict]
    mean: dict[str, float]
    data: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **jsonable(dataclasses.asdict(self))}

    @classmethod
    def from_dict(cls, payload: dict[str, Any], source: str = "result") -> ExperimentResult:
        if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
            found = payload.get("schema") if isinstance(payload, dict) else type(payload).__name__
            raise UnetlibError(f"{source} is not a unetlib result file (schema {found!r}, expected {SCHEMA!r}): "
                               "rerun the experiment's notebook")
        known = {f.name for f in dataclasses.fields(cls)}
        body = {k: v for k, v in payload.items() if k != "schema"}
        missing = sorted({"experiment", "profile", "protocol", "runs", "mean"} - set(body))
        unknown = sorted(set(body) - known)
        if missing or unknown:
            raise UnetlibError(f"{source} is malformed (missing {missing}, unknown {unknown}): rerun its notebook")
        return cls(**body)

    def run_values(self, key: str) -> list:
        """``key`` of every run, in order (e.g. ``"pixel_error"`` or ``"SEG"``)."""
        return [run[key] for run in self.runs]


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: numpy scalars and arrays as numbers and lists, paths as text, and
    NaN or infinite floats as null (a result file never holds a number JSON cannot)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_result(path: str | Path, result: ExperimentResult) -> Path:
    """Write ``result`` with the current :func:`unetlib.environment.environment`, atomically."""
    result = dataclasses.replace(result, environment=environment())
    text = json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n"
    return write_text(path, text)


def read_result(path: str | Path) -> ExperimentResult:
    """Read one result file, checking its schema; errors name the file."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnetlibError(f"cannot read result file {path} ({exc}): rerun the notebook that writes it") from None
    return ExperimentResult.from_dict(payload, str(path))


def read_results(folder: str | Path, *, strict: bool = True) -> dict[str, ExperimentResult]:
    """Every result file of a folder, keyed by experiment name.

    A ``*.json`` that is not a result file of this kit (e.g. ``timings.json``)
    is skipped only if it has no ``schema`` field; one that claims to be a
    result file but cannot be read raises (``strict``) or is reported on
    stderr, by name.
    """
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            head = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(head, dict) and "schema" not in head:
                continue  # another kind of JSON (timings, benchmark reports)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass  # reported by read_result below
        try:
            result = read_result(path)
        except UnetlibError as exc:
            if strict:
                raise
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        out[result.experiment] = result
    return out
