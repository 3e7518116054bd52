"""How ISBI 2012's errors fall with training compute: the budget study (appendix 07_budget).

    train the cpu recipe at more steps (width 16) and wider (32; 64 as the gpu
    recipe trains it) -> count each network's arithmetic (FLOPs per step from
    the model, times steps) and time it -> each error against compute, with
    the trend that would reach the paper's number
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from unetlib import profiles
from unetlib.errors import UnetlibError
from unetlib.model import UNet, count_flops
from unetlib.recipe import Recipe, preset
from unetlib.study import MEAN_UNIT, Study, StudyResult

__all__ = ["budget_study", "ERRORS", "step_flops", "curve", "Trend", "trend", "steps_axis", "equal_compute", "predict",
           "reading"]


def budget_study(profile: str = "cpu", seeds: Sequence[int] | None = None, units: Sequence | None = None,
                 points: Sequence[str] | None = None) -> Study:
    """ISBI 2012's errors against training compute: the budget points of ``profile`` (its file's
    ``budget.points``: name -> changes to its ISBI recipe; the first is the recipe itself), or the named
    ``points`` (the first always runs) x ``seeds`` (default: the first of the profile's) x ``units`` (default:
    the profile's ISBI folds)."""
    spec = profiles.load(profile)
    declared = (spec.budget or {}).get("points") or {}
    if not declared:
        raise UnetlibError(f"profile {profile!r} declares no budget points; choose one of "
                           f"{', '.join(p for p in profiles.NAMES if profiles.load(p).budget)}")
    if points and set(points) - set(declared):
        raise UnetlibError(f"unknown budget points {sorted(set(points) - set(declared))}; choose from {list(declared)}")
    first = next(iter(declared))
    chosen = {p: dict(c or {}) for p, c in declared.items() if not points or p == first or p in points}
    return Study(name=f"isbi2012-{profile}-budget", recipe=preset("isbi2012", profile), variants=chosen,
                 seeds=tuple(seeds if seeds is not None else spec.seeds[:1]),
                 units=tuple(units if units is not None else (spec.isbi_folds or range(5))),
                 question="How do ISBI 2012's errors fall with training compute (more steps, a wider network), "
                          "and at what compute would they reach the paper's?")


#: the three errors of the budget study, in Table 1's order
ERRORS = ("warping_error", "rand_error", "pixel_error")


@functools.cache
def _step_flops(width: int, variant: str, tile: int, batch: int) -> int:
    return count_flops(UNet(width=width, variant=variant), tile, tile, batch=batch, training=True)


def step_flops(recipe: Recipe) -> int:
    """FLOPs of one training step of ``recipe``'s network (forward and backward of its tiles; the same on any
    machine, :func:`unetlib.model.count_flops`)."""
    t = recipe.train
    return _step_flops(t.width, t.variant, t.tile, t.batch)


def curve(result: StudyResult) -> pd.DataFrame:
    """One row per budget point and unit (and ``"mean"``, the mean over the units, seed by seed): the
    network's width, tile and steps, its FLOPs per step and in all, its training seconds and the three
    errors; ``machine`` says where it trained (CPU and precision, from the run's own record). The first
    point's width is the steps axis (:func:`trend`)."""
    rows = []
    for point in result.variants:
        recipe = Recipe.from_dict(result.study["recipe"]).replace(**result.study["variants"][point])
        per_step = step_flops(recipe)
        runs = [r for r in result.runs if r["variant"] == point]
        for unit in [*result.units, MEAN_UNIT]:  # the mean row even of one unit: the trends read it
            chosen = runs if unit == MEAN_UNIT else [r for r in runs if r["unit"] == unit]
            if not chosen or (unit == MEAN_UNIT and len(chosen) < len(result.units)):
                continue
            hardware = (chosen[0].get("environment") or {}).get("hardware") or {}
            rows.append({
                "point": point, "unit": unit, "width": recipe.train.width, "tile": recipe.train.tile,
                "steps": recipe.train.iterations, "flops_per_step": per_step,
                "flops": per_step * recipe.train.iterations,
                "train_seconds": float(np.mean([r["train_seconds"] for r in chosen])),
                **{e: float(np.mean([r[e] for r in chosen])) for e in ERRORS},
                "machine": f"{hardware.get('cpu_model', '?')}, {hardware.get('precision', '?')}" if hardware else "?",
            })
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Trend:
    """A power law ``error = scale * flops ** slope`` fitted to the width-16 points (mean of the units)."""

    metric: str
    slope: float
    scale: float
    points: int
    last_factor: float  # the error's ratio over the last measured step of compute, per doubling

    @property
    def per_doubling(self) -> float:
        """The factor by which the fitted error falls per doubling of compute."""
        return float(2.0 ** self.slope)

    def flops_for(self, target: float) -> float:
        """The compute at which the fitted trend reaches ``target`` (inf when it does not fall)."""
        if self.slope > -1e-9:
            return math.inf
        log_flops = math.log(target / self.scale) / self.slope
        return math.exp(log_flops) if log_flops < 700 else math.inf

    def at(self, flops):
        """The fitted error at ``flops`` (a number or an array)."""
        value = self.scale * np.asarray(flops, dtype=float) ** self.slope
        return float(value) if value.ndim == 0 else value


def steps_axis(table: pd.DataFrame) -> int:
    """The width of the steps axis: the first point's (the profile's recipe)."""
    return int(table.width.iloc[0])


def trend(table: pd.DataFrame, metric: str, width: int | None = None) -> Trend:
    """The power law of ``metric`` against total FLOPs over the points of ``width`` (default: the steps axis)
    of a :func:`curve` table (their mean over units), least squares in log-log; needs at least two points."""
    width = steps_axis(table) if width is None else width
    rows = table[(table.unit == MEAN_UNIT) & (table.width == width)].sort_values("flops")
    if len(rows) < 2:
        raise UnetlibError(f"a trend needs at least two finished width-{width} points, got {len(rows)}")
    x, y = np.log(rows.flops.to_numpy(float)), np.log(rows[metric].to_numpy(float))
    slope, intercept = np.polyfit(x, y, 1)
    last = float((y[-1] - y[-2]) / (x[-1] - x[-2]))
    return Trend(metric, float(slope), float(math.exp(intercept)), len(rows), float(2.0 ** last))


def equal_compute(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Width against steps at equal compute: each point wider than the steps axis (mean of the units) beside
    the steps axis at the same FLOPs (the point with the same compute to 5 %, else the axis's trend within its
    measured range; beyond that range, the axis's point of most compute, whose FLOPs ``narrow_flops`` says):
    ``value`` against ``narrow`` (from ``narrow_from``), ``difference`` (wider - narrow)."""
    means, width = table[table.unit == MEAN_UNIT], steps_axis(table)
    narrow = means[means.width == width]
    fitted = trend(table, metric) if len(narrow) >= 2 else None
    rows = []
    for row in means[means.width != width].itertuples():
        same = narrow[(narrow.flops - row.flops).abs() <= 0.05 * row.flops]
        largest = narrow.sort_values("flops").iloc[-1] if len(narrow) else None
        if len(same):
            other, how, at = float(same.iloc[0][metric]), f"width {width}, {int(same.iloc[0].steps):,} steps", row.flops
        elif fitted is not None and narrow.flops.min() <= row.flops <= narrow.flops.max():
            other, how, at = fitted.at(row.flops), f"width-{width} trend", row.flops
        elif largest is not None and row.flops > largest.flops:
            other, how, at = float(largest[metric]), f"width {width}, {int(largest.steps):,} steps", float(largest.flops)
        else:
            other, how, at = math.nan, f"below the width-{width} points", math.nan
        rows.append({"point": row.point, "flops": row.flops, "value": getattr(row, metric), "narrow": other,
                     "narrow_from": how, "narrow_flops": at, "difference": getattr(row, metric) - other})
    return pd.DataFrame(rows, columns=["point", "flops", "value", "narrow", "narrow_from", "narrow_flops",
                                       "difference"])


def predict(table: pd.DataFrame, flops: float) -> pd.DataFrame:
    """What the steps axis of a :func:`curve` table says a network of ``flops`` training compute gives (the mean of
    the study's units), per error: ``measured`` (an axis point within 5 % of that compute, else NaN), ``fitted``
    (the power law of :func:`trend`) and ``last_rate`` (beyond the axis's last point: its value carried on at the
    rate of the last doubling measured, the more cautious reading of a flattening curve; NaN within the range)."""
    if not flops > 0:
        raise UnetlibError(f"a prediction needs the training compute in FLOPs (> 0), got {flops!r}")
    axis = table[(table.unit == MEAN_UNIT) & (table.width == steps_axis(table))].sort_values("flops")
    same = axis[(axis.flops - flops).abs() <= 0.05 * flops]
    rows = []
    for metric in ERRORS:
        fitted = trend(table, metric)
        last_value, last_flops = float(axis[metric].iloc[-1]), float(axis.flops.iloc[-1])
        beyond = flops > 1.05 * last_flops
        rows.append({"error": metric, "flops": float(flops),
                     "measured": float(same[metric].iloc[0]) if len(same) else math.nan,
                     "fitted": fitted.at(flops),
                     "last_rate": last_value * fitted.last_factor ** math.log2(flops / last_flops) if beyond else math.nan})
    return pd.DataFrame(rows, columns=["error", "flops", "measured", "fitted", "last_rate"])


#: Beyond this many doublings of compute (a million times the last point's) a target counts as out of reach.
MAX_DOUBLINGS = 20


def _doubled(flops: float, doublings: float) -> float:
    """``flops`` doubled ``doublings`` times; inf beyond :data:`MAX_DOUBLINGS` (a rate near 1 would need no end of
    doublings, and a number of 300 digits says nothing a reader can use)."""
    return flops * 2.0 ** doublings if doublings <= MAX_DOUBLINGS else math.inf


#: one seed per point: two single seeds of one recipe differ by at most 1.96 sqrt(2) sd, 95 % of the time (normal seeds
#: with the seed study's sd), so a difference between two points counts when it is larger than this many sds
CHANCE_SDS = 1.96 * math.sqrt(2)


def reading(table: pd.DataFrame, targets: dict[str, dict[str, float]], seconds_per_flop: float | None = None,
            spread: dict | None = None) -> list[str]:
    """What the curve says, per error, in sentences: the steps axis's trend per doubling of compute (and over its
    last doubling), the compute at which it would reach each of ``targets`` (name -> {error: value}; in hours
    of one network at ``seconds_per_flop`` when given), and width against steps at equal compute (with the seed
    ``spread`` of the cpu recipe, error -> sd, when given: one seed per point, so a difference counts when it is
    larger than :data:`CHANCE_SDS` sds)."""
    lines, width = [], steps_axis(table)
    base = table[(table.unit == MEAN_UNIT) & (table.width == width)].flops.min()
    for metric in ERRORS:
        try:
            fitted = trend(table, metric)
        except UnetlibError as exc:
            lines.append(f"{metric}: {exc}")
            continue
        label = metric.replace("_", " ")
        text = (f"{label}: over the {fitted.points} width-{width} points the error changes by a factor "
                f"{fitted.per_doubling:.3f} per doubling of compute (over the last doubling measured: "
                f"{fitted.last_factor:.3f}).")
        rows = table[(table.unit == MEAN_UNIT) & (table.width == width)].sort_values("flops")
        last_value, last_flops = float(rows[metric].iloc[-1]), float(rows.flops.iloc[-1])
        for name, values in targets.items():
            if metric not in values:
                continue
            target = values[metric]
            if float(rows[metric].max()) <= target:
                text += f" It is below {name} ({target:g}) at every point."
                continue
            if last_value <= target:
                text += f" It reaches {name} ({target:g}) within the measured range."
                continue
            need = fitted.flops_for(target)
            local = _doubled(last_flops, math.log(target / last_value) / math.log(fitted.last_factor)
                             if fitted.last_factor < 1 else math.inf)
            if not math.isfinite(need):
                text += f" It does not fall, so it stays above {name} ({target:g})."
                continue
            hours = f", about {need * seconds_per_flop / 3600:,.0f} h for one network here" if seconds_per_flop else ""
            text += (f" The fitted trend would reach {name} ({target:g}) at {need:.2g} FLOPs ({need / base:,.1f} x the "
                     f"recipe's{hours})")
            if not math.isfinite(local):
                text += (f"; at the last doubling's rate it would not get there within {MAX_DOUBLINGS} more doublings "
                         "(a million times the compute).")
            else:
                text += f"; at the last doubling's rate it would need {local / base:,.0f} x." if local > 2 * need else "."
        lines.append(text)
        for row in equal_compute(table, metric).itertuples():
            if math.isnan(row.narrow):
                continue
            sd = (spread or {}).get(metric)
            chance = None if sd is None else CHANCE_SDS * sd  # two single seeds of one recipe differ by less, 95 % of the time
            size = "" if chance is None else (
                f" ({'larger than' if abs(row.difference) > chance else 'within'} the {chance:.2g} by which two "
                "single seeds of one recipe differ, 95 % of the time)")
            better = "better" if row.difference < 0 else "worse"
            if row.narrow_flops < 0.95 * row.flops:  # beyond the narrow points: against the one of most compute
                lines.append(f"  with {row.flops / row.narrow_flops:.1f} x the compute of the {row.narrow_from} "
                             f"({row.flops:.2g} FLOPs), {row.point} gives {row.value:.4g} against {row.narrow:.4g}: "
                             f"the wider network is {better} by {abs(row.difference):.2g}{size}")
                continue
            lines.append(f"  at equal compute ({row.flops:.2g} FLOPs) {row.point} gives {row.value:.4g} against "
                         f"{row.narrow:.4g} from the {row.narrow_from}: the wider network is {better} by "
                         f"{abs(row.difference):.2g}{size}")
    return lines
