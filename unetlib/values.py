"""Checks of configuration values, each a one-line :class:`~unetlib.errors.UnetlibError` naming the field,
and how a count is written in the kit's sentences (:func:`counted`).

The recipe, the training config and the augmentation check every field when
they are made, so a wrong type (``"188"`` for a tile, ``"no"`` for a flag) or
value is refused before any work, wherever it came from: Python, a profile
file, a notebook's ``OVERRIDES``, or the command line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from unetlib.errors import UnetlibError

__all__ = ["check_bool", "check_integer", "check_real", "check_choice", "differing", "flatten", "counted"]


def counted(n: int, noun: str) -> str:
    """``"1 fold"``, ``"5 folds"``: ``n`` and the noun, plural (with an s) unless ``n`` is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_bool(what: str, value: Any) -> bool:
    """``value`` if it is True or False (not 0/1, not "no")."""
    if not isinstance(value, (bool, np.bool_)):
        raise UnetlibError(f"{what} must be true or false, got {value!r}")
    return bool(value)


def check_integer(what: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an integer (not a bool, float or string) within ``[low, high]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise UnetlibError(f"{what} must be an integer{_range(low, high)}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise UnetlibError(f"{what} must be an integer{_range(low, high)}, got {value}")
    return int(value)


def check_real(what: str, value: Any, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False) -> float:
    """``value`` if it is a finite number (not a bool or string) within the bounds (open where asked)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if ok:
        ok = math.isfinite(value) and not (
            low is not None and (value <= low if low_open else value < low)) and not (
            high is not None and (value >= high if high_open else value > high))
    if not ok:
        bounds = _range(low, high, low_open, high_open)
        raise UnetlibError(f"{what} must be a finite number{bounds}, got {value!r}")
    return float(value)


def check_choice(what: str, value: Any, choices: Sequence) -> Any:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, (str, type(None), int, float)) or value not in choices:
        raise UnetlibError(f"{what} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def _range(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def differing(before: dict, after: dict, fields: Sequence[str] | None = None,
              ignore: Sequence[str] = ()) -> dict[str, tuple[Any, Any]]:
    """Dotted name -> ``(before, after)`` for every value of two nested mappings that differs, among ``fields``
    (``None``: all; ``"train"`` or ``"train.augment"`` covers every field below it) less ``ignore``."""
    flat_before, flat_after = flatten(before), flatten(after)

    def chosen(name: str, among) -> bool:
        return any(name == f or name.startswith(f + ".") for f in among)

    return {name: (flat_before.get(name), flat_after.get(name)) for name in dict.fromkeys([*flat_before, *flat_after])
            if (fields is None or chosen(name, fields)) and not chosen(name, ignore)
            and flat_before.get(name) != flat_after.get(name)}


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted names -> values (``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``; tuples as lists)."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat
