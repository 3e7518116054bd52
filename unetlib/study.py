"""Studies: recipe variants x seeds over experiment units, run resumably (their statistics: :mod:`unetlib.stats`).

One training run is one draw: the same recipe with another seed can land
far away (a different initialisation, other tiles, other dropout masks). A
:class:`Study` therefore runs every *variant* of a recipe (a named set of
recipe changes, the first being the baseline) with every *seed* on every
*unit* (an ISBI fold or a CTC direction), and a number is reported only with
its spread:

    plan the jobs -> run each (variant, seed, unit) once, resumably
    -> gather the rows into one study file

and :mod:`unetlib.stats` summarises each variant and unit over seeds and
compares the variants with the baseline, seed by seed. The studies the kit
runs are declared in :mod:`unetlib.decisions` (the cpu recipe's choices over
seeds) and :mod:`unetlib.budget` (ISBI 2012 against training compute).

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

import contextlib
import dataclasses
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetlib import protocols
from unetlib.atomic import folder_lock, write_bytes, write_text
from unetlib.environment import environment
from unetlib.errors import UnetlibError
from unetlib.fanout import serial
from unetlib.recipe import Recipe
from unetlib.results import jsonable
from unetlib.train import CHECKPOINT_NAME
from unetlib.values import counted

__all__ = ["SCHEMA", "METRICS", "MEAN_UNIT", "Study", "StudyResult", "run_study", "run_studies", "job_cost", "run_job",
           "adopt_runs", "gather", "run_folder", "write_study", "read_study"]

SCHEMA = "unetlib-study-v1"
#: Per dataset: the metrics a study reports, and whether larger is better.
METRICS = {
    "isbi2012": {"pixel_error": False, "rand_error": False, "warping_error": False, "border_error": False,
                 "interior_error": False, "held_out_loss": False},
    "PhC-C2DH-U373": {"SEG": True, "foreground_iou": True, "matched_objects": True, "merges": False},
    "DIC-C2DH-HeLa": {"SEG": True, "foreground_iou": True, "matched_objects": True, "merges": False},
}
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
        ISBI fold indices (``(0, 2)``), CTC directions (``("01->02", "02->01")``) or held-out blocks of
        both CTC sequences (``("block0", "block1", "block2")``, :func:`unetlib.protocols.ctc_block`).
    folds : int
        ISBI 2012: the number of contiguous folds the units index (5).
    question : str
        What the study asks, in a sentence (shown with its tables).
    more_seeds : dict
        Variant -> more seeds of that variant alone (e.g. the baseline's headline numbers with a tighter
        interval, or the arms of a claim still undecided); every comparison pairs the seeds both arms have.
    """

    name: str
    recipe: Recipe
    variants: dict
    seeds: tuple
    units: tuple
    folds: int = 5
    question: str = ""
    more_seeds: dict = field(default_factory=dict)

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
        if not isinstance(self.more_seeds, dict) or set(self.more_seeds) - set(self.variants):
            raise UnetlibError(f"Study.more_seeds must map variants of the study to seeds, got {self.more_seeds!r}")
        for name, seeds in (("seeds", list(self.seeds)), *((f"more_seeds[{v!r}]", list(extra) or [0])
                                                            for v, extra in self.more_seeds.items())):
            if not seeds or len(set(seeds)) != len(seeds) or not all(
                    isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in seeds):
                raise UnetlibError(f"Study.{name} must list distinct integers in [0, 2**31), got {seeds!r}")
        units = list(self.units)
        if not units or len(set(units)) != len(units):
            raise UnetlibError(f"Study.units must list distinct units, got {self.units!r}")
        if self.recipe.dataset == "isbi2012":
            protocols.select_folds(protocols.contiguous_folds(30, self.folds), units)
        else:
            blocks = [u for u in units if str(u).startswith("block")]
            if blocks and len(blocks) != len(units):
                raise UnetlibError(f"Study.units {units!r} mix directions and held-out blocks: one protocol per study")
            for unit in units:
                protocols.block_index(unit) if blocks else protocols.check_direction(unit)

    @property
    def baseline(self) -> str:
        return next(iter(self.variants))

    @property
    def metrics(self) -> dict[str, bool]:
        return METRICS[self.recipe.dataset]

    def variant_recipe(self, variant: str, seed: int) -> Recipe:
        """The recipe of ``variant`` with base seed ``seed`` (units add their own offset)."""
        return self.recipe.replace(**self.variants[variant]).seeded(seed)

    def seeds_of(self, variant: str) -> tuple[int, ...]:
        """The seeds ``variant`` runs: the study's, then its :attr:`more_seeds` (and those of the variant whose
        networks it evaluates, so that every network it needs is trained)."""
        users = [v for v in self.variants if v == variant or self.trained_by(v) == variant]
        return tuple(dict.fromkeys([*self.seeds, *(s for v in users for s in self.more_seeds.get(v, ()))]))

    def jobs(self) -> list[tuple[str, int, Any]]:
        """Every ``(variant, seed, unit)``, seed-major: the first seeds of every variant come first; variants
        that only apply another variant's networks differently (:meth:`trained_by`) come after all others."""
        seeds = sorted({s for v in self.variants for s in self.seeds_of(v)}, key=lambda s: (s not in self.seeds, s))
        trained = [v for v in self.variants if self.trained_by(v) == v]
        applied = [v for v in self.variants if self.trained_by(v) != v]
        return [(v, s, u) for group in (trained, applied) for s in seeds for v in group if s in self.seeds_of(v)
                for u in self.units]

    def trained_by(self, variant: str) -> str:
        """The variant whose networks ``variant`` evaluates: the first (in the study's order) whose recipe makes
        the same network (:meth:`Recipe.differs_from`: it changes only how a network is applied, e.g. test-time
        averaging or post-processing); ``variant`` itself when it trains its own."""
        mine = self.variant_recipe(variant, 0)
        return next(v for v in self.variants if v == variant or not mine.differs_from(self.variant_recipe(v, 0)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "recipe": self.recipe.to_dict(), "variants": self.variants,
                "seeds": list(self.seeds), "units": list(self.units), "folds": self.folds,
                "question": self.question, "more_seeds": {v: list(x) for v, x in self.more_seeds.items()}}


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
    return run_studies([(study, out_dir)], root=root, runner=runner, progress=progress)[0]


def run_studies(studies: list[tuple[Study, str | Path]], *, root=None, runner: Callable | None = None,
                progress: bool = True) -> list[StudyResult]:
    """Run several studies (each ``(study, out_dir)`` as in :func:`run_study`) on one runner together.

    On a local cluster the missing jobs of all of them are ordered longest first (by their training
    arithmetic, :func:`job_cost`) and handed out as many at a time as it has workers, so that the runs
    sharing a round of workers take about as long as each other and no worker waits for a long run of
    another study; one study alone keeps its seed-major order (:meth:`Study.jobs`). Each study's
    ``timings["wall"]`` is the wall time of this call, shared by the studies run together.
    """
    plans = [(study, Path(out_dir)) for study, out_dir in studies]
    if len({out.resolve() for _, out in plans}) != len(plans):
        raise UnetlibError("run_studies: give every study its own folder")
    with contextlib.ExitStack() as stack:
        for study, out_dir in plans:  # every folder locked and checked before anything is written
            stack.enter_context(folder_lock(out_dir, "study"))
            _check_same_study(study, out_dir)
        todo, done, total = [], {}, {}
        for study, out_dir in plans:
            write_text(out_dir / "plan.json", json.dumps(study.to_dict(), indent=1) + "\n")
            jobs = study.jobs()
            mine = [job for job in jobs if _stored(study, out_dir, *job) is None]
            todo += [(study, out_dir, job) for job in mine]
            done[out_dir], total[out_dir] = len(jobs) - len(mine), len(jobs)
            if progress:
                seeds = len({seed for _, seed, _ in jobs})  # with the more_seeds of some variants
                print(f"study {study.name}: {counted(len(jobs), 'run')} ({counted(len(study.variants), 'variant')} "
                      f"x {'up to ' if seeds > len(study.seeds) else ''}{counted(seeds, 'seed')} x "
                      f"{counted(len(study.units), 'unit')}), "
                      f"{done[out_dir]} done, {len(mine)} to run", flush=True)
        start = time.perf_counter()
        runner = runner or serial
        # serially one run at a time; on a local cluster as many at a time as it has workers (so that
        # progress is reported as runs finish); on an existing scheduler each phase at once. The runs that
        # evaluate another variant's networks (trained_by) start only once every network is trained.
        width = 1 if runner is serial else getattr(runner, "workers", 0)
        for phase in (False, True):
            batch = [(s, out, job) for s, out, job in todo if (s.trained_by(job[0]) != job[0]) == phase]
            if len(plans) > 1 and width > 1:  # stable: a study's own order among equal runs
                batch.sort(key=lambda item: -job_cost(item[0], item[2][0]))
            calls = [dict(study=s, variant=v, seed=seed, unit=u, out_dir=out, root=root, progress=False)
                     for s, out, (v, seed, u) in batch]  # a line per run, no progress bars
            for first in range(0, len(calls), width or max(1, len(calls))):
                chunk = calls[first:first + (width or len(calls))]
                for call, row in zip(chunk, runner(run_job, chunk), strict=True):
                    out = call["out_dir"]
                    done[out] += 1
                    if progress:
                        print(f"  {call['study'].name + ' ' if len(plans) > 1 else ''}[{done[out]}/{total[out]}] "
                              f"{_describe(row, call['study'])}", flush=True)
        wall = round(time.perf_counter() - start, 1)
        results = []
        for study, out_dir in plans:
            result = gather(study, out_dir)
            result.timings["wall"] = wall
            write_study(out_dir / "study.json", result)
            results.append(result)
        return results


def job_cost(study: Study, variant: str) -> float:
    """A run's training arithmetic: FLOPs per step times steps (:func:`unetlib.budget.step_flops`; 0 for a variant
    that applies another's networks). Orders the jobs of :func:`run_studies`, longest first."""
    from unetlib.budget import step_flops  # budget builds on this module

    if study.trained_by(variant) != variant:
        return 0.0
    recipe = study.variant_recipe(variant, 0)
    return float(step_flops(recipe) * recipe.train.iterations)


def run_job(study: Study, variant: str, seed: int, unit, out_dir: Path, root=None, progress: bool = True) -> dict:
    """One ``(variant, seed, unit)``: train, evaluate, and write its row to ``out_dir/VARIANT/seedS/UNIT.json``."""
    recipe = study.variant_recipe(variant, seed)
    folder = run_folder(out_dir, variant, seed)
    source = study.trained_by(variant)
    if source != variant:  # evaluate another variant's network (a copy: tuning rewrites its recipe)
        if _stored(study, Path(out_dir), source, seed, unit) is None:
            raise UnetlibError(f"{variant} seed {seed} {unit} evaluates the network of {source!r}, which "
                               "is not trained yet: run the study (it trains every network first)")
        _copy_network(run_folder(out_dir, source, seed), folder, recipe.dataset, unit)
    if study.recipe.dataset == "isbi2012":
        split = protocols.select_folds(protocols.contiguous_folds(30, study.folds), [unit])[0]
        result = protocols.isbi_fold(recipe, split, folder, root=root, progress=progress)
    else:
        unit_of = protocols.ctc_block if str(unit).startswith("block") else protocols.ctc_direction
        result = unit_of(recipe, unit, folder, root=root, progress=progress)
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
            wanted = study.variant_recipe(variant, seed)
            name = _row_path(Path(""), variant, seed, unit).name
            for path in sorted(source_dir.glob(f"*/seed{seed}/{name}")):
                try:
                    row = json.loads(path.read_text(encoding="utf-8"))
                    same = _same_run(Recipe.from_dict(row.get("recipe") or {}), wanted)
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
    same = stored is not None and _same_run(stored, expected)
    if not same:
        raise UnetlibError(f"{path} was made with another recipe than study {study.name!r} asks for: "
                           "run the study into another folder (or delete that file to rerun it)")
    return row


def _same_run(stored: Recipe, wanted: Recipe) -> bool:
    """Whether a stored run was made with the recipe a study asks for: every field the same but the unit's
    seed (a unit derives its own) and, where tuned, the post-processing (:meth:`Recipe.differs_from`)."""
    tuned = ("threshold", "min_size", "split_threshold") if wanted.tune_postprocessing else ()
    return not stored.differs_from(wanted, fields=None, ignore=("train.seed", *tuned))


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
