"""Studies: recipe variants x seeds over experiment units, with the spread over seeds.

One training run is one draw: the same recipe with another seed can land
far away (a different initialisation, other tiles, other dropout masks). A
:class:`Study` therefore runs every *variant* of a recipe (a named set of
recipe changes, the first being the baseline) with every *seed* on every
*unit* (an ISBI fold or a CTC direction), and a number is reported only with
its spread:

    plan the jobs -> run each (variant, seed, unit) once, resumably
    -> summarise each variant and unit over seeds (mean, sd, min-max, n)
    -> compare each variant with the baseline, seed by seed (mean difference
       with a 95 % interval) -> flag runs that ended far above their
       seed-mates' loss -> a verdict per comparison

Seeds are paired: seed ``s`` of every variant starts from the same network
and draws the same tiles wherever the variant leaves them alone, so a
difference is measured against the same luck. Unit ``u`` of seed ``s`` trains
with the unit's own seed derived from ``s`` as the experiments do (ISBI fold
``k``: ``s + k``; CTC direction trained on sequence ``NN``: ``s + NN``), so
seed 0 trains as the profile's own run (and is that run on the same kind of
CPU and precision).

Each finished job writes its unit result to ``OUT/VARIANT/seedS/UNIT.json``
at once (from any worker), so an interrupted study loses at most the job in
progress, whose training resumes from its checkpoint. The study file
``OUT/study.json`` (schema :data:`SCHEMA`) gathers them. Only one process may
run a study folder at a time (a lock file names its owner).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from unetlib import protocols
from unetlib.atomic import folder_lock, write_bytes, write_text
from unetlib.data import DIRECTIONS
from unetlib.environment import environment
from unetlib.errors import UnetlibError
from unetlib.recipe import Recipe, preset
from unetlib.results import jsonable
from unetlib.train import CHECKPOINT_NAME
from unetlib.values import counted

__all__ = [
    "SCHEMA", "METRICS", "Study", "StudyResult", "run_study", "adopt_runs", "read_study", "summarize", "compare",
    "flag_runs", "verdict", "t_interval", "VERDICTS", "DECISIONS", "seed_study", "study_from_dict", "run_folder",
    "reading", "over_seeds",
    "BUDGET_POINTS", "budget_study", "reliability", "RELIABILITY_GOALS", "MEAN_UNIT", "run_job", "gather", "write_study",
]

SCHEMA = "unetlib-study-v1"
#: Per dataset: the metrics a study reports, and whether larger is better.
METRICS = {
    "isbi2012": {"pixel_error": False, "rand_error": False, "warping_error": False},
    "PhC-C2DH-U373": {"SEG": True, "foreground_iou": True, "matched_objects": True, "merges": False},
    "DIC-C2DH-HeLa": {"SEG": True, "foreground_iou": True, "matched_objects": True, "merges": False},
}
#: A run is flagged when its final loss exceeds this multiple of the median of its variant and unit.
FLAG_RATIO = 1.5
VERDICTS = ("supported", "not detectable at this budget", "contradicted")
MEAN_UNIT = "mean"  # the pseudo-unit: per seed, the mean over the units (the experiment's number)


@dataclass(frozen=True)
class Study:
    """What to run: ``variants`` (name -> recipe changes; the first is the baseline) x ``seeds`` x ``units``.

    Attributes
    ----------
    name : str
        Names the study (and its result file).
    recipe : Recipe
        The base recipe; every variant is ``recipe.replace(**changes)``.
    variants : dict
        Variant name -> recipe changes (``{}`` for the base recipe itself).
    seeds : tuple of int
        Base seeds; each unit derives its own from it (see the module docstring).
    units : tuple
        ISBI fold indices (``(0, 2)``) or CTC directions (``("01->02", "02->01")``).
    folds : int
        ISBI 2012: the number of contiguous folds the units index (5).
    question : str
        What the study asks, in a sentence (shown with its tables).
    """

    name: str
    recipe: Recipe
    variants: dict
    seeds: tuple
    units: tuple
    folds: int = 5
    question: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.recipe, Recipe):
            raise UnetlibError("Study.recipe must be a unetlib.recipe.Recipe")
        if not self.name or not isinstance(self.name, str) or "/" in self.name:
            raise UnetlibError(f"Study.name must be a non-empty name without '/', got {self.name!r}")
        if not isinstance(self.variants, dict) or not self.variants:
            raise UnetlibError("Study.variants must map at least one variant name to its recipe changes")
        for variant, changes in self.variants.items():
            if not isinstance(variant, str) or not variant or "/" in variant or not isinstance(changes, dict):
                raise UnetlibError(f"variant {variant!r}: give a name without '/' and a dict of recipe changes")
            self.recipe.replace(**changes)  # unknown fields and bad values fail here, before any work
        folders = [run_folder("", v, 0) for v in self.variants]
        if len(set(folders)) != len(folders):
            raise UnetlibError(f"variant names {list(self.variants)} map to the same folder: make them differ "
                               "in letters or digits")
        seeds = list(self.seeds)
        if not seeds or len(set(seeds)) != len(seeds) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in seeds):
            raise UnetlibError(f"Study.seeds must list distinct integers in [0, 2**31), got {self.seeds!r}")
        units = list(self.units)
        if not units or len(set(units)) != len(units):
            raise UnetlibError(f"Study.units must list distinct units, got {self.units!r}")
        if self.recipe.dataset == "isbi2012":
            protocols.select_folds(protocols.contiguous_folds(30, self.folds), units)
        else:
            for unit in units:
                protocols.check_direction(unit)

    @property
    def baseline(self) -> str:
        return next(iter(self.variants))

    @property
    def metrics(self) -> dict[str, bool]:
        return METRICS[self.recipe.dataset]

    def variant_recipe(self, variant: str, seed: int) -> Recipe:
        """The recipe of ``variant`` with base seed ``seed`` (units add their own offset)."""
        return self.recipe.replace(**self.variants[variant]).seeded(seed)

    def jobs(self) -> list[tuple[str, int, Any]]:
        """Every ``(variant, seed, unit)``, seed-major: the first seeds of every variant come first; variants
        that only apply the baseline's networks differently (:meth:`reuses_baseline`) come after all others."""
        trained = [v for v in self.variants if not self.reuses_baseline(v)]
        applied = [v for v in self.variants if self.reuses_baseline(v)]
        return [(v, s, u) for group in (trained, applied) for s in self.seeds for v in group for u in self.units]

    def reuses_baseline(self, variant: str) -> bool:
        """True when ``variant`` trains the very networks of the baseline (it changes only how they are
        applied: test-time averaging, inference tile, post-processing), so it evaluates those."""
        if variant == self.baseline:
            return False
        mine, base = self.variant_recipe(variant, 0), self.variant_recipe(self.baseline, 0)
        return mine.network_identity() == base.network_identity() and mine.train == base.train

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "recipe": self.recipe.to_dict(), "variants": self.variants,
                "seeds": list(self.seeds), "units": list(self.units), "folds": self.folds,
                "question": self.question}


@dataclass
class StudyResult:
    """A study's runs: one row per finished ``(variant, seed, unit)`` with its metrics and final loss."""

    study: dict
    runs: list[dict]
    timings: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.study["recipe"]["dataset"]

    @property
    def variants(self) -> list[str]:
        return list(self.study["variants"])

    @property
    def baseline(self) -> str:
        return self.variants[0]

    @property
    def units(self) -> list:
        return list(self.study["units"])

    @property
    def metrics(self) -> dict[str, bool]:
        return METRICS[self.dataset]

    def units_with_mean(self, with_mean: bool = True) -> list:
        """The units, then :data:`MEAN_UNIT` (the mean over units) when there is more than one."""
        return self.units + ([MEAN_UNIT] if with_mean and len(self.units) > 1 else [])

    def values(self, variant: str, unit, metric: str) -> dict[int, float]:
        """Seed -> value of ``metric`` for ``variant`` on ``unit`` (:data:`MEAN_UNIT`: the mean over units)."""
        if unit == MEAN_UNIT:
            per_unit = [self.values(variant, u, metric) for u in self.units]
            seeds = set.intersection(*(set(v) for v in per_unit)) if per_unit else set()
            return {s: float(np.mean([v[s] for v in per_unit])) for s in sorted(seeds)}
        return {r["seed"]: float(r[metric]) for r in self.runs
                if r["variant"] == variant and r["unit"] == unit and r.get(metric) is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "study": self.study, "runs": self.runs, "timings": self.timings,
                "environment": self.environment}


# --------------------------------------------------------------------------- #
# Running
# --------------------------------------------------------------------------- #
def run_study(study: Study, out_dir: str | Path, *, root=None, runner: Callable | None = None,
              progress: bool = True) -> StudyResult:
    """Run every job of ``study`` not yet done in ``out_dir``; write and return ``out_dir/study.json``.

    Resumable: finished jobs (their unit files) are kept; a job whose stored
    recipe differs from the study's is refused with a one-line error (use
    another folder). ``runner`` as in :func:`unetlib.protocols.run_ctc`
    (serial when None, or a Dask runner from :func:`unetlib.fanout.runner`).
    """
    out_dir = Path(out_dir)
    with folder_lock(out_dir, "study"):
        _check_same_study(study, out_dir)
        write_text(out_dir / "plan.json", json.dumps(study.to_dict(), indent=1) + "\n")
        jobs = study.jobs()
        todo = [job for job in jobs if _stored(study, out_dir, *job) is None]
        done = len(jobs) - len(todo)
        if progress:
            print(f"study {study.name}: {counted(len(jobs), 'run')} ({counted(len(study.variants), 'variant')} x "
                  f"{counted(len(study.seeds), 'seed')} x {counted(len(study.units), 'unit')}), {done} done, "
                  f"{len(todo)} to run", flush=True)
        start = time.perf_counter()
        runner = runner or protocols.serial
        # serially one run at a time; on a local cluster as many at a time as it has workers (so that
        # progress is reported as runs finish); on an existing scheduler each phase at once. The runs that
        # evaluate the baseline's networks (reuses_baseline) start only once every network is trained.
        width = 1 if runner is protocols.serial else getattr(runner, "workers", 0)
        for phase in (False, True):
            calls = [dict(study=study, variant=v, seed=s, unit=u, out_dir=out_dir, root=root, progress=False)
                     for v, s, u in todo if study.reuses_baseline(v) == phase]  # a line per run, no progress bars
            for first in range(0, len(calls), width or max(1, len(calls))):
                for row in runner(run_job, calls[first:first + (width or len(calls))]):
                    done += 1
                    if progress:
                        print(f"  [{done}/{len(jobs)}] {_describe(row, study)}", flush=True)
        result = gather(study, out_dir)
        result.timings["wall"] = round(time.perf_counter() - start, 1)
        write_study(out_dir / "study.json", result)
        return result


def run_job(study: Study, variant: str, seed: int, unit, out_dir: Path, root=None, progress: bool = True) -> dict:
    """One ``(variant, seed, unit)``: train, evaluate, and write its row to ``out_dir/VARIANT/seedS/UNIT.json``."""
    recipe = study.variant_recipe(variant, seed)
    folder = run_folder(out_dir, variant, seed)
    if study.reuses_baseline(variant):  # evaluate the baseline's network (a copy: tuning rewrites its recipe)
        if _stored(study, Path(out_dir), study.baseline, seed, unit) is None:
            raise UnetlibError(f"{variant} seed {seed} {unit} evaluates the network of {study.baseline!r}, which "
                               "is not trained yet: run the study (it trains the baseline first)")
        _copy_network(run_folder(out_dir, study.baseline, seed), folder, recipe.dataset, unit)
    if study.recipe.dataset == "isbi2012":
        split = protocols.select_folds(protocols.contiguous_folds(30, study.folds), [unit])[0]
        result = protocols.isbi_fold(recipe, split, folder, root=root, progress=progress)
    else:
        result = protocols.ctc_direction(recipe, unit, folder, root=root, progress=progress)
    data = result.to_dict()
    row = {"variant": variant, "seed": seed, "unit": unit, "unit_seed": data["seed"],
           **{k: data.get(k) for k in study.metrics}, "final_loss": data["final_loss"],
           "train_seconds": data["seconds"].get("train"), "recipe": data["recipe"],
           "loss_curve": data["loss_curve"], "result": {k: v for k, v in data.items()
                                                        if k not in ("loss_curve", "recipe")},
           "environment": environment()}  # per run: a study's runs may come from several machines
    _write_row(_row_path(out_dir, variant, seed, unit), row)
    return row


def _copy_network(source_folder: Path, target_folder: Path, dataset: str, unit) -> None:
    """Copy a unit's trained network between run folders (atomically; an existing copy is kept)."""
    source = protocols.unit_checkpoint_dir(source_folder, dataset, unit) / CHECKPOINT_NAME
    target = protocols.unit_checkpoint_dir(target_folder, dataset, unit) / CHECKPOINT_NAME
    if source.is_file() and not target.is_file():
        write_bytes(target, source.read_bytes())


def _write_row(path: Path, row: dict) -> None:
    write_text(path, json.dumps(jsonable(row), indent=1, allow_nan=False) + "\n")


def adopt_runs(study: Study, out_dir: str | Path, source_dir: str | Path) -> list[tuple[str, int, Any]]:
    """Copy into ``out_dir`` the finished runs of another study folder that ``study`` would repeat exactly.

    When a recipe adopts a variant, the variant's runs *are* the new recipe's
    runs, and the old recipe's runs are those of the variant that undoes the
    change. A job ``(variant, seed, unit)`` of ``study`` not yet done in
    ``out_dir`` takes the row of ``source_dir`` with the same seed and unit whose
    stored recipe is the one ``study`` asks for (any variant name; the seed and
    tuned post-processing aside, as on resuming), with its network; the row is
    relabelled (``variant``, and ``adopted_from`` naming where it came from).
    ``source_dir`` is only read. Returns the jobs adopted.
    """
    out_dir, source_dir = Path(out_dir), Path(source_dir)
    if out_dir.resolve() == source_dir.resolve():
        raise UnetlibError("adopt_runs copies runs between two study folders: give another out_dir")
    adopted = []
    with folder_lock(out_dir, "study"):
        _check_same_study(study, out_dir)
        for variant, seed, unit in study.jobs():
            if _stored(study, out_dir, variant, seed, unit) is not None:
                continue
            wanted = _comparable(study.variant_recipe(variant, seed))
            name = _row_path(Path(""), variant, seed, unit).name
            for path in sorted(source_dir.glob(f"*/seed{seed}/{name}")):
                try:
                    row = json.loads(path.read_text(encoding="utf-8"))
                    same = _comparable(Recipe.from_dict(row.get("recipe") or {})) == wanted
                except (OSError, UnicodeDecodeError, json.JSONDecodeError, UnetlibError, AttributeError):
                    continue
                if not same or row.get("seed") != seed or row.get("unit") != unit:
                    continue
                _copy_network(path.parent, run_folder(out_dir, variant, seed), study.recipe.dataset, unit)
                row = {**row, "variant": variant, "adopted_from": row.get("adopted_from") or
                       f"{source_dir.name}/{path.parent.parent.name}"}
                _write_row(_row_path(out_dir, variant, seed, unit), row)
                adopted.append((variant, seed, unit))
                break
    return adopted


def gather(study: Study, out_dir: str | Path) -> StudyResult:
    """The study's finished rows in ``out_dir`` (in job order), as a :class:`StudyResult`."""
    rows = [row for job in study.jobs() if (row := _stored(study, Path(out_dir), *job)) is not None]
    return StudyResult(study=study.to_dict(), runs=rows)


def run_folder(out_dir: str | Path, variant: str, seed: int) -> Path:
    """The folder of one variant and seed (checkpoints, results): ``OUT/VARIANT/seedS``, the name made
    file-system safe (e.g. ``"w0 = 10"`` -> ``w0-10``)."""
    safe = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9._]+", "-", variant)).strip("-") or "variant"
    return Path(out_dir) / safe / f"seed{seed}"


def _row_path(out_dir: Path, variant: str, seed: int, unit) -> Path:
    name = f"fold{unit}" if isinstance(unit, int) else str(unit).replace("->", "-to-")
    return run_folder(out_dir, variant, seed) / f"{name}.json"


def _stored(study: Study, out_dir: Path, variant: str, seed: int, unit) -> dict | None:
    """The finished row of a job, None when absent; a row made with another recipe is refused."""
    path = _row_path(out_dir, variant, seed, unit)
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # a damaged row is run again
    expected = study.variant_recipe(variant, seed)
    try:  # through Recipe, so that rows written before a field was added compare with its default
        stored = Recipe.from_dict(row.get("recipe") or {})
    except UnetlibError:
        stored = None
    # the stored recipe carries the unit's own seed and, for CTC, the tuned post-processing
    same = stored is not None and _comparable(stored) == _comparable(expected)
    if not same:
        raise UnetlibError(f"{path} was made with another recipe than study {study.name!r} asks for: "
                           "run the study into another folder (or delete that file to rerun it)")
    return row


def _comparable(recipe: Recipe) -> dict:
    """The recipe as a run is matched on: without the unit's seed and, where tuned, the post-processing."""
    data = recipe.to_dict()
    data["train"] = {k: v for k, v in data["train"].items() if k != "seed"}
    tuned = ("threshold", "min_size", "split_threshold") if recipe.tune_postprocessing else ()
    return {k: v for k, v in data.items() if k not in tuned}


def _check_same_study(study: Study, out_dir: Path) -> None:
    plan = out_dir / "plan.json"
    if not plan.is_file():
        return
    try:
        stored = json.loads(plan.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return
    try:
        same = Recipe.from_dict(stored.get("recipe") or {}) == study.recipe
    except UnetlibError:
        same = False
    if same and study.recipe.dataset == "isbi2012" and stored.get("folds", 5) != study.folds:
        raise UnetlibError(f"{out_dir} holds study {stored.get('name')!r} over {stored.get('folds', 5)} folds, not "
                           f"{study.folds}: its fold files hold other sections; run this study into another folder")
    if not same:
        raise UnetlibError(f"{out_dir} holds study {stored.get('name')!r} of another base recipe: "
                           "run this study into another folder")


def _describe(row: dict, study: Study) -> str:
    values = ", ".join(f"{k} {row[k]:.4g}" for k in study.metrics if row.get(k) is not None)
    return (f"{row['variant']} seed {row['seed']} {row['unit']}: {values}, final loss {row['final_loss']:.3f} "
            f"({row['train_seconds']:.0f} s training)")


def write_study(path: str | Path, result: StudyResult) -> Path:
    """Write the study file atomically, with the machine and revision it ran on."""
    result = dataclasses.replace(result, environment=environment())
    return write_text(path, json.dumps(jsonable(result.to_dict()), indent=1, allow_nan=False) + "\n")


def read_study(path: str | Path) -> StudyResult:
    """Read a study file, checking its schema; errors name the file."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnetlibError(f"cannot read study file {path} ({exc}): rerun the study") from None
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        raise UnetlibError(f"{path} is not a unetlib study file (expected schema {SCHEMA!r}): rerun the study")
    try:
        return StudyResult(study=payload["study"], runs=payload["runs"], timings=payload.get("timings", {}),
                           environment=payload.get("environment", {}))
    except KeyError as exc:
        raise UnetlibError(f"{path} is malformed (no {exc}): rerun the study") from None


# --------------------------------------------------------------------------- #
# Statistics
# --------------------------------------------------------------------------- #
def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student's t interval of the mean of ``values`` (NaN bounds for n < 2)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def summarize(result: StudyResult, metrics: Sequence[str] | None = None, with_mean: bool = True):
    """Per variant, unit and metric: n, mean, sd (n - 1), min, max and the values by seed (a DataFrame).

    With ``with_mean`` (and more than one unit) the pseudo-unit ``"mean"``
    holds, per seed, the mean over the units: the experiment's own number.
    """
    metrics = list(dict.fromkeys([*(metrics or result.metrics), "final_loss"]))
    rows = []
    for variant in result.variants:
        for unit in result.units_with_mean(with_mean):
            for metric in metrics:
                values = result.values(variant, unit, metric)
                if values:
                    rows.append({"variant": variant, "unit": unit, "metric": metric, **over_seeds(values.values()),
                                 "values": {int(s): round(v, 6) for s, v in values.items()}})
    return pd.DataFrame(rows)


def over_seeds(values: Iterable[float]) -> dict[str, float]:
    """``n``, ``mean``, ``sd`` (n - 1; NaN for fewer than two values), ``min`` and ``max`` of seed values."""
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "min": math.nan, "max": math.nan}
    return {"n": int(x.size), "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan,
            "min": float(x.min()), "max": float(x.max())}


def compare(result: StudyResult, metric: str, baseline: str | None = None, *, higher_is_better: bool | None = None,
            claimed: int | None = None, with_mean: bool = True):
    """Each variant against ``baseline`` (default: the first), seed by seed, per unit (a DataFrame).

    Columns: ``variant`` (its name), ``n`` (seeds in both), ``baseline`` and ``variant_mean`` (the arms'
    means),
    ``difference`` (variant - baseline, mean over seeds) with its 95 %
    interval ``low``-``high``, ``spread`` (the larger seed sd of the two arms),
    ``beyond_spread`` (|difference| > spread) and the ``verdict`` for the
    claim that the variant changes the metric in direction ``claimed`` (+1
    up, -1 down; default: the better direction for the metric).
    """
    baseline = baseline or result.baseline
    better = result.metrics.get(metric, False) if higher_is_better is None else higher_is_better
    claimed = claimed if claimed is not None else (1 if better else -1)
    rows = []
    for variant in result.variants:
        if variant == baseline:
            continue
        for unit in result.units_with_mean(with_mean):
            a, b = result.values(baseline, unit, metric), result.values(variant, unit, metric)
            seeds = sorted(set(a) & set(b))
            if not seeds:
                continue
            diff = [b[s] - a[s] for s in seeds]
            mean, low, high = t_interval(diff)
            spread = max(over_seeds(a[s] for s in seeds)["sd"], over_seeds(b[s] for s in seeds)["sd"])
            rows.append({"variant": variant, "unit": unit, "metric": metric, "n": len(seeds),
                         "baseline": float(np.mean([a[s] for s in seeds])), "variant_mean": float(np.mean([b[s] for s in seeds])),
                         "difference": mean, "low": low, "high": high, "spread": spread,
                         "beyond_spread": bool(abs(mean) > spread) if not math.isnan(spread) else False,
                         "verdict": verdict(low, high, claimed)})
    return pd.DataFrame(rows)


def verdict(low: float, high: float, claimed: int) -> str:
    """The verdict on a claimed effect from the 95 % interval ``[low, high]`` of the difference.

    ``claimed`` is +1 (the claim says the metric goes up) or -1 (down). An
    interval that excludes 0 in the claimed direction supports the claim; one
    that includes 0 (or is undefined, n < 2) cannot detect it at this budget;
    one that excludes 0 the other way contradicts it.
    """
    if claimed not in (1, -1):
        raise UnetlibError(f"claimed must be +1 (the metric goes up) or -1 (down), got {claimed!r}")
    if math.isnan(low) or math.isnan(high) or low <= 0 <= high:
        return VERDICTS[1]
    up = low > 0
    return VERDICTS[0] if up == (claimed == 1) else VERDICTS[2]


def flag_runs(result: StudyResult, ratio: float = FLAG_RATIO) -> list[dict]:
    """Runs whose final loss exceeds ``ratio`` x the median of their variant and unit (groups of >= 3).

    Such a run has not trained like its seed-mates (a blow-up, a collapse);
    its numbers are kept in every mean, and listed here so that no table
    averages it in silently.
    """
    flagged = []
    for variant in result.variants:
        for unit in result.units:
            losses = result.values(variant, unit, "final_loss")
            if len(losses) < 3:
                continue
            median = float(np.median(list(losses.values())))
            for seed, loss in losses.items():
                if loss > ratio * median:
                    row = next(r for r in result.runs
                               if r["variant"] == variant and r["unit"] == unit and r["seed"] == seed)
                    flagged.append({"variant": variant, "unit": unit, "seed": seed, "final_loss": loss,
                                    "median_final_loss": median,
                                    **{m: row.get(m) for m in result.metrics}})
    return flagged


#: the reliability goal of each experiment: the largest standard deviation over seeds of one unit's number
RELIABILITY_GOALS = {"isbi2012": ("rand_error", 0.01), "PhC-C2DH-U373": ("SEG", 0.03), "DIC-C2DH-HeLa": ("SEG", 0.03)}


def reliability(results: dict) -> pd.DataFrame:
    """Per dataset (``results``: dataset -> :class:`StudyResult`) and unit of the baseline recipe: the
    standard deviation over seeds of its number against :data:`RELIABILITY_GOALS`, and its flagged runs."""
    rows = []
    for dataset, result in results.items():
        metric, goal = RELIABILITY_GOALS[dataset]
        flagged = flag_runs(result)
        for unit in result.units:
            seeds = over_seeds(result.values(result.baseline, unit, metric).values())
            rows.append({"dataset": dataset, "unit": unit, "metric": metric, "n": seeds["n"], "sd": seeds["sd"],
                         "goal": goal, "met": bool(seeds["sd"] <= goal),
                         "flagged runs": sum(1 for f in flagged if f["unit"] == unit and f["variant"] == result.baseline)})
    return pd.DataFrame(rows)


#: The choices of each dataset's cpu recipe, as variants of it (the first, "cpu", is the recipe itself):
#: a choice is kept only when its alternative is no better, beyond the spread over seeds.
DECISIONS: dict[str, dict[str, dict]] = {
    "isbi2012": {"cpu": {}, "w_c-1": {"class_weights": None}, "5000-steps": {"train.iterations": 5000},
                 "no-dropout": {"train.dropout": 0.0}, "lr-0.002": {"train.lr": 0.002}},
    "PhC-C2DH-U373": {"cpu": {}, "w_c-balanced": {"class_weights": "balanced"}, "split": {"tune_split": True},
                      "touching-copies": {"touching_copies": 1}},
    "DIC-C2DH-HeLa": {
        "cpu": {},
        "no-split": {"tune_split": False},
        "no-clipping": {"train.clip_grad": 0.0},
        "full-resolution": {"resample": 1.0, "train.tile": 508},
        "no-zoom": {"train.augment.scale": 0.0},
        "tta-flips": {"tta": "flips"},
    },
}


def seed_study(dataset: str, profile: str = "cpu", seeds: Sequence[int] = (0, 1, 2), *, decisions: bool = True,
               units: Sequence | None = None, variants: Sequence[str] | None = None) -> Study:
    """The seed study of a dataset's profile recipe: every unit of its experiment, with the decision variants.

    Seed 0 is the profile's own run (the reports' numbers); ``decisions=False``
    runs the recipe alone; ``variants`` names the alternatives to run (the
    recipe itself always runs; names another dataset has are skipped), None or
    empty for all. The alternatives (:data:`DECISIONS`) are those of the cpu
    recipe: other profiles run their recipe alone. Units: the profile's ISBI
    folds, or both CTC directions.
    """
    base = preset(dataset, profile)
    choices = DECISIONS[dataset] if decisions and profile == "cpu" else {profile: {}}
    if variants:  # the recipe itself and the named alternatives this dataset has
        known = {v for table in DECISIONS.values() for v in table}
        if set(variants) - known:
            raise UnetlibError(f"unknown decision variants {sorted(set(variants) - known)}; "
                               f"choose from {sorted(known)}")
        baseline = next(iter(choices))
        choices = {v: c for v, c in choices.items() if v == baseline or v in variants}
    if units is None:
        units = (0, 2) if dataset == "isbi2012" and profile in ("cpu", "smoke") else (
            tuple(range(5)) if dataset == "isbi2012" else tuple(DIRECTIONS))
    return Study(name=f"{dataset}-{profile}-seeds", recipe=base, variants=dict(choices), seeds=tuple(seeds),
                 units=tuple(units), question=f"How far apart do seeds of the {profile} recipe land, and does each "
                 "of its choices beat its alternative by more than that?")


#: The budget study of ISBI 2012 (appendix 07_budget): the cpu recipe with more training compute, along two axes:
#: steps at width 16, and the width (32 with the cpu recipe's 508² tiles; 64 as the gpu recipe trains it: 572² tiles,
#: Adam 5e-4). The first point is the cpu recipe itself. Ordered cheapest first, so a study stopped early has the
#: cheap points of both axes.
BUDGET_POINTS: dict[str, dict] = {
    "w16-2500": {},
    "w16-5000": {"train.iterations": 5000},
    "w16-10000": {"train.iterations": 10000},
    "w64-1500": {"train.width": 64, "train.tile": 572, "train.lr": 0.0005, "train.iterations": 1500},
    "w32-2500": {"train.width": 32},
    "w32-5000": {"train.width": 32, "train.iterations": 5000},
    "w16-20000": {"train.iterations": 20000},
    "w64-4000": {"train.width": 64, "train.tile": 572, "train.lr": 0.0005, "train.iterations": 4000},
}


def budget_study(seeds: Sequence[int] = (0,), units: Sequence = (0, 2), points: Sequence[str] | None = None) -> Study:
    """ISBI 2012's errors against training compute: :data:`BUDGET_POINTS` (or the named ``points``; the cpu
    recipe always runs first) x ``seeds`` x ``units`` (the cpu profile's folds 0 and 2)."""
    if points and set(points) - set(BUDGET_POINTS):
        raise UnetlibError(f"unknown budget points {sorted(set(points) - set(BUDGET_POINTS))}; "
                           f"choose from {list(BUDGET_POINTS)}")
    first = next(iter(BUDGET_POINTS))
    chosen = {p: c for p, c in BUDGET_POINTS.items() if not points or p == first or p in points}
    return Study(name="isbi2012-cpu-budget", recipe=preset("isbi2012", "cpu"), variants=chosen, seeds=tuple(seeds),
                 units=tuple(units), question="How do ISBI 2012's errors fall with training compute (more steps, a "
                 "wider network), and at what compute would they reach the paper's?")


def study_from_dict(data: dict) -> Study:
    """The :class:`Study` a study file (or ``plan.json``) describes."""
    return Study(name=data["name"], recipe=Recipe.from_dict(data["recipe"]), variants=data["variants"],
                 seeds=tuple(data["seeds"]), units=tuple(data["units"]), folds=data.get("folds", 5),
                 question=data.get("question", ""))


def reading(result: StudyResult) -> list[str]:
    """What a study's numbers say, line by line: the spread per unit, each variant against the baseline
    (larger than the seed spread or not), and the runs whose training failed (flagged)."""
    lines = []
    main = next(iter(result.metrics))
    for unit in result.units_with_mean():
        values = result.values(result.baseline, unit, main)
        if values:
            x = over_seeds(values.values())
            sd = f", sd {x['sd']:.4g}" if x["n"] > 1 else ""
            lines.append(f"{result.baseline}, {unit}: {main} {x['mean']:.4g} over {x['n']} seeds "
                         f"({x['min']:.4g}-{x['max']:.4g}{sd})")
    for metric in result.metrics:
        if metric in ("matched_objects", "merges", "foreground_iou"):
            continue
        table = compare(result, metric)
        for row in table.itertuples(index=False):
            size = "larger than" if row.beyond_spread else "within"
            outcome = {VERDICTS[0]: f"{row.variant} is better", VERDICTS[2]: f"{result.baseline} is better"}.get(
                row.verdict, "no difference detectable")
            lines.append(f"{row.variant} vs {result.baseline}, {row.unit}: {metric} {row.variant_mean:.4g} vs "
                         f"{row.baseline:.4g}, difference {row.difference:+.4g} (95 % interval {row.low:+.4g} to "
                         f"{row.high:+.4g}, n = {row.n}), {size} the seed spread ({row.spread:.4g}): {outcome}")
    flagged = flag_runs(result)
    for f in flagged:
        lines.append(f"flagged: {f['variant']} seed {f['seed']} {f['unit']} ended at loss {f['final_loss']:.3f}, "
                     f"{f['final_loss'] / f['median_final_loss']:.1f} x the median of its seed-mates "
                     f"({f['median_final_loss']:.3f}); {main} {f.get(main)}")
    if not flagged:
        lines.append("no run ended far above its seed-mates' loss (none flagged)")
    return lines

