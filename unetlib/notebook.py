"""Helpers for the experiment notebooks: parameter validation, one-line errors and output folders.

A numeric parameter's range is checked with :mod:`unetlib.values` (e.g.
``check_integer("SEED", SEED, 0)``), as every configuration value is.

papermill silently accepts parameter names that a notebook does not declare
(a typo such as ``ITERATION = 10`` would be ignored). Every notebook therefore
starts with its ``parameters`` cell (plain assignments only) and, right after
it and papermill's injected cell, calls :func:`validate_parameters`, which
reads both cells from the kernel's input history and rejects unknown names.
It also makes the kernel show a :class:`~unetlib.errors.UnetlibError` (a
wrong parameter, a missing dataset ...) as its one-line message under the
cell, as the command line does, instead of a traceback through the library.

A notebook writes into :func:`output_dir`: the folder ``OUTPUT_DIR`` names,
else a new folder ``runs/<notebook>-<UTC time>``. Only
``python -m unetlib.reproduce`` writes ``reports/`` (it always passes
``OUTPUT_DIR``), so running a notebook by hand never overwrites, or resumes
from, a committed report.
"""

from __future__ import annotations

import ast
import datetime
import os
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from unetlib import profiles
from unetlib.environment import project_root
from unetlib.errors import UnetlibError
from unetlib.recipe import PROFILES

__all__ = ["validate_parameters", "show_errors_in_one_line", "output_dir"]
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


def validate_parameters(history: Sequence[str], namespace: MutableMapping[str, Any], notebook: str | None = None,
                        fallback: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check the notebook's parameters, fill those left None from the profile, and return them as a dict.

    Parameters
    ----------
    history : list of str
        The kernel's input history (IPython's ``In``). The first code cell must
        be the one tagged ``parameters``. Without a history (nbval runs cells
        without storing it, and never injects parameters) the notebook's
        UPPERCASE globals are returned as its parameters.
    namespace : mapping
        The notebook's ``globals()``; parameters left None are set there.
    notebook : str, optional
        The notebook's name: a parameter left None takes the value its
        profile's file gives it (:meth:`unetlib.profiles.Profile.notebook_parameters`:
        the profile's folds, workers and seeds, and the notebook's own
        entries), so that ``papermill NOTEBOOK OUT -p PROFILE cpu`` runs the
        ``cpu`` profile as ``python -m unetlib.reproduce`` does.
    fallback : mapping, optional
        The value of a parameter that is None and that the profile does not give.

    Raises
    ------
    UnetlibError
        For a name set by papermill (``-p`` or ``-f profile.yaml``) that the
        parameters cell does not declare (listing the accepted names), or a
        value whose type differs from the default's (ints are accepted for
        floats, ``None`` where the default is ``None``).
    """
    show_errors_in_one_line()
    if not any(c.strip() for c in history[1:]):
        # nbval (and other runners that execute without storing history) never inject
        # parameters: the notebook runs with its own defaults, which are its UPPERCASE names.
        own = {k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_")}
        return _from_profile(own, namespace, notebook, fallback)
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
    return _from_profile(params, namespace, notebook, fallback)


def _from_profile(params: dict, namespace: MutableMapping[str, Any], notebook: str | None,
                  fallback: Mapping[str, Any] | None) -> dict:
    """Every parameter left None takes its profile's value (else the fallback), in ``params`` and ``namespace``."""
    given = profiles.load(params["PROFILE"]).notebook_parameters(notebook) if notebook and "PROFILE" in params else {}
    for name, value in params.items():
        if value is None and (name in given or name in (fallback or {})):
            params[name] = namespace[name] = given[name] if name in given else fallback[name]
    return params


def show_errors_in_one_line() -> bool:
    """Make the running IPython kernel show a :class:`UnetlibError` as one line, ``UnetlibError: message``.

    The cell still fails (papermill stops there and reports the error); only the
    traceback through the library is left out, as the command line leaves it
    out. Other exceptions keep their tracebacks. Returns False outside IPython.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((UnetlibError,), _one_line_error)
    return True


def _one_line_error(shell, etype, value, tb, tb_offset=None) -> list[str]:
    """IPython's custom exception handler: show ``UnetlibError: message`` as the cell's whole error output."""
    line = f"{etype.__name__}: {' '.join(str(value).split())}"
    shell._showtraceback(etype, value, [line])  # the kernel's error message (papermill, JupyterLab) or stdout
    return [line]


RUNS = "runs"  # where notebooks run by hand write, below the project


def output_dir(output: str | os.PathLike, notebook: str) -> Path:
    """The notebook's output folder, created.

    Parameters
    ----------
    output : path or ""
        ``OUTPUT_DIR``: a folder (relative to the project, or absolute). ``""``
        (the notebooks' default): a new folder ``runs/<notebook>-<UTC time>``,
        named in one printed line, so that a notebook run by hand never writes
        into ``reports/`` (``python -m unetlib.reproduce`` passes its folder).
    notebook : str
        The notebook's name, e.g. ``"01_isbi2012_em"``.
    """
    if output:
        path = Path(output)
        if not path.is_absolute():
            path = project_root() / path
        if path.exists() and not path.is_dir():
            raise UnetlibError(f"OUTPUT_DIR {output} is a file; give a folder (created if missing)")
        _make(path, exist_ok=True)
        return path
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%SZ")
    base = project_root() / RUNS / f"{notebook}-{stamp}"
    path, n = base, 1
    while not _make(path, exist_ok=False):  # a second run within the same second gets base-2, ...
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    print(f"OUTPUT_DIR not given: writing to {path.relative_to(project_root())} (`python -m unetlib.reproduce` "
          "writes reports/; set OUTPUT_DIR to write elsewhere)")
    return path


def _make(path: Path, exist_ok: bool) -> bool:
    """Create ``path`` (and its parents); False when it exists and ``exist_ok`` is False."""
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        if exist_ok:
            raise UnetlibError(f"OUTPUT_DIR {path}: a part of it is a file; choose another folder") from None
        return False
    except OSError as exc:
        raise UnetlibError(f"cannot create OUTPUT_DIR {path} ({exc.strerror or exc}): choose a writable folder") from None
    return True
