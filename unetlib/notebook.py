"""Helpers for the experiment notebooks: parameter validation and output folders.

A numeric parameter's range is checked with :mod:`unetlib.values` (e.g.
``check_integer("SEED", SEED, 0)``), as every configuration value is.

papermill silently accepts parameter names that a notebook does not declare
(a typo such as ``ITERATION = 10`` would be ignored). Every notebook therefore
starts with its ``parameters`` cell (plain assignments only) and, right after
it and papermill's injected cell, calls :func:`validate_parameters`, which
reads both cells from the kernel's input history and rejects unknown names.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unetlib.environment import project_root
from unetlib.errors import UnetlibError
from unetlib.recipe import PROFILES

__all__ = ["validate_parameters", "output_dir"]
_INJECTED_MARKER = "# Parameters"  # first line of the cell papermill injects


def _assigned_names(source: str) -> list[str]:
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _parameter_cells(history: Sequence[str]) -> tuple[str, str | None]:
    """The parameters cell (first code cell) and papermill's injected cell, if any."""
    cells = [c for c in history[1:] if c.strip()]
    injected = cells[1] if len(cells) > 2 and cells[1].lstrip().startswith(_INJECTED_MARKER) else None
    return cells[0], injected


def validate_parameters(history: Sequence[str], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Check the notebook's parameters and return them as a dict.

    Parameters
    ----------
    history : list of str
        The kernel's input history (IPython's ``In``). The first code cell must
        be the one tagged ``parameters``. Without a history (nbval runs cells
        without storing it, and never injects parameters) the notebook's
        UPPERCASE globals are returned as its parameters.
    namespace : mapping
        The notebook's ``globals()``.

    Raises
    ------
    UnetlibError
        For a name set by papermill (``-p`` or ``-f profile.yaml``) that the
        parameters cell does not declare (listing the accepted names), or a
        value whose type differs from the default's (ints are accepted for
        floats, ``None`` where the default is ``None``).
    """
    if not any(c.strip() for c in history[1:]):
        # nbval (and other runners that execute without storing history) never inject
        # parameters: the notebook runs with its own defaults, which are its UPPERCASE names.
        return {k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_")}
    declared_src, injected_src = _parameter_cells(history)
    declared = _assigned_names(declared_src)
    defaults = {}
    exec(compile(declared_src, "<parameters>", "exec"), {}, defaults)  # noqa: S102 - own cell
    if injected_src is not None:
        unknown = sorted(set(_assigned_names(injected_src)) - set(declared))
        if unknown:
            raise UnetlibError(
                f"unknown parameter(s) {', '.join(unknown)}; this notebook accepts: "
                f"{', '.join(declared)} (check the spelling in -p or in the profile file)"
            )
    params = {name: namespace[name] for name in declared}
    for name, value in params.items():
        default = defaults[name]
        if default is None or value is None:
            continue
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            continue
        if type(value) is not type(default):
            raise UnetlibError(
                f"parameter {name}={value!r} has type {type(value).__name__}, "
                f"expected {type(default).__name__} like the default {default!r}"
            )

    if "PROFILE" in params and params["PROFILE"] not in PROFILES:
        raise UnetlibError(f"PROFILE must be one of {PROFILES}, got {params['PROFILE']!r}")
    return params


def output_dir(output: str | os.PathLike, profile: str) -> Path:
    """Resolve a notebook's OUTPUT_DIR ("" means ``reports/<profile>``) and create it."""
    path = Path(output) if output else Path("reports") / profile
    if not path.is_absolute():
        path = project_root() / path
    if path.exists() and not path.is_dir():
        raise UnetlibError(f"OUTPUT_DIR {output or path} is a file; give a folder (created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnetlibError(f"cannot create OUTPUT_DIR {path} ({exc.strerror or exc}): choose a writable folder") from None
    return path
