"""The named profiles, each declared once, in one file: ``unetlib/profiles/<name>.yaml``.

A profile says how much compute the experiments get and where they run:
``smoke`` (CI, minutes), ``cpu`` (a 2-core laptop, under an hour), ``gpu``
(one GPU, minutes), ``paper`` (the paper's schedule). Its file holds every
field of it:

- ``recipe``: the recipe fields it sets, for ``all`` datasets and per dataset
  (on top of ``datasets.yaml``, the choices of each dataset under every
  profile; :func:`unetlib.recipe.preset` builds the recipe from the layers);
- ``isbi_folds``: the ISBI 2012 folds it reports (of 5; null for all);
- ``workers``: networks trained at once (local Dask workers, 0 for one after
  another);
- ``seeds``: the seeds of its seed study and of each claim's arms;
- ``appendices``: appendix notebooks its reproduction runs too, before the tables (``03_paper_tables``);
- ``notebooks``: parameters of single notebooks (by report name);
- ``claims``: the budget of notebook 05_claims (:mod:`unetlib.claims`);
- ``budget``: the points of ISBI 2012's budget study (:mod:`unetlib.budget`);
- ``goals``: the numbers the profile's run aims at (mean over seeds).

Nothing else states a profile's value: the notebooks' parameters default to
None ("the profile's"), :func:`unetlib.reproduce.profile_parameters` fills
them from here, and the studies read their seeds and units from here.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unetlib.errors import UnetlibError

__all__ = ["NAMES", "Profile", "load", "dataset_choices", "FOLDER"]

FOLDER = Path(__file__).resolve().parent
_DATASETS_FILE = "datasets.yaml"
#: the profiles, one file each (the default profile is cpu without a CUDA GPU, gpu with one)
NAMES = tuple(sorted(p.stem for p in FOLDER.glob("*.yaml") if p.name != _DATASETS_FILE))
_KEYS = {"about", "recipe", "isbi_folds", "workers", "seeds", "appendices", "notebooks", "claims", "budget", "goals"}


@dataclass(frozen=True)
class Profile:
    """One profile file, read and checked (see the module docstring for the fields)."""

    name: str
    about: str
    recipe: dict = field(default_factory=dict)
    isbi_folds: tuple | None = None
    workers: int = 0
    seeds: tuple = (0, 1, 2)
    appendices: tuple = ()
    notebooks: dict = field(default_factory=dict)
    claims: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    goals: dict = field(default_factory=dict)

    def recipe_layers(self, dataset: str) -> list[dict]:
        """The recipe changes that make ``dataset``'s preset, applied in order: the dataset's own choices,
        then this profile's for all datasets, then this profile's for the dataset."""
        return [dataset_choices(dataset), self.recipe.get("all") or {}, self.recipe.get(dataset) or {}]

    def notebook_parameters(self, report: str) -> dict[str, Any]:
        """What this profile gives a report notebook: its name, the profile-wide values (folds, workers,
        seeds) and the report's own entries (a report's entry wins over the profile-wide value)."""
        return {"PROFILE": self.name, "RUN_FOLDS": None if self.isbi_folds is None else list(self.isbi_folds),
                "WORKERS": self.workers, "SEEDS": list(self.seeds), **(self.notebooks.get(report) or {})}


@functools.cache
def load(name: str) -> Profile:
    """The profile ``name`` from its file; an unknown name or a malformed file is a one-line error."""
    if name not in NAMES:
        raise UnetlibError(f"unknown profile {name!r}; choose one of {', '.join(NAMES)}")
    data = _read(FOLDER / f"{name}.yaml")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise UnetlibError(f"profile file {name}.yaml: unknown field(s) {', '.join(unknown)}; known: "
                           f"{', '.join(sorted(_KEYS))}")
    recipe = copy.deepcopy(data.get("recipe") or {})
    datasets = _read(FOLDER / _DATASETS_FILE)
    strange = sorted(set(recipe) - set(datasets) - {"all"})
    if strange:
        raise UnetlibError(f"profile file {name}.yaml: recipe for unknown dataset(s) {', '.join(strange)}; "
                           f"use all or one of {', '.join(datasets)}")
    folds = data.get("isbi_folds")
    return Profile(name=name, about=str(data.get("about", "")), recipe=recipe,
                   isbi_folds=None if folds is None else tuple(folds), workers=int(data.get("workers", 0)),
                   seeds=tuple(data.get("seeds", (0, 1, 2))), appendices=tuple(data.get("appendices") or ()),
                   notebooks=copy.deepcopy(data.get("notebooks") or {}),
                   claims=copy.deepcopy(data.get("claims") or {}), budget=copy.deepcopy(data.get("budget") or {}),
                   goals=copy.deepcopy(data.get("goals") or {}))


def dataset_choices(dataset: str) -> dict:
    """The recipe fields of ``dataset`` that are the same under every profile (``datasets.yaml``)."""
    choices = _read(FOLDER / _DATASETS_FILE)
    if dataset not in choices:
        raise UnetlibError(f"unknown dataset {dataset!r}; choose one of {', '.join(choices)}")
    return copy.deepcopy(choices[dataset] or {})


@functools.cache
def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UnetlibError(f"cannot read profile file {path.name} ({exc}): restore it from the kit") from None
    if not isinstance(data, dict):
        raise UnetlibError(f"profile file {path.name} must be a mapping: restore it from the kit")
    return data
