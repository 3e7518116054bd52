"""Statistics over seeds: what a study's runs say, with their spread.

    summarise each variant and unit over seeds (mean, sd, min-max, n)
    -> compare each variant with the baseline, seed by seed (mean difference
       with a 95 % Student-t interval; seeds are paired)
    -> flag runs that ended far above their seed-mates' loss
    -> a verdict per comparison, and the reading in sentences

The rows come from :mod:`unetlib.study` (:class:`~unetlib.study.StudyResult`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from unetlib.errors import UnetlibError
from unetlib.study import MEAN_UNIT, StudyResult

__all__ = ["t_interval", "prediction_interval", "number_intervals", "pooled", "over_seeds",
           "summarize", "compare", "verdict", "VERDICTS", "flag_runs", "FLAG_RATIO",
           "reading", "SUPPORTED", "CONTRADICTED", "NO_EFFECT", "UNDECIDED", "NOT_TESTABLE"]

#: A run is flagged when its final loss exceeds this multiple of the median of its variant and unit.
FLAG_RATIO = 1.5
SUPPORTED, CONTRADICTED, NO_EFFECT, UNDECIDED = "supported", "contradicted", "no effect larger than", "undecided"
NOT_TESTABLE = "not testable at this budget"
#: the verdict words (``NO_EFFECT`` is followed by its size: "no effect larger than ±0.005")
VERDICTS = (SUPPORTED, CONTRADICTED, NO_EFFECT, UNDECIDED, NOT_TESTABLE)


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


def prediction_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Where one more seed should land: ``mean -+ t * sd * sqrt(1 + 1/n)`` (Student's t with n - 1 degrees of
    freedom; NaN for n < 2). Wider than the interval of the mean, which says where the mean lies."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) * math.sqrt(1 + 1 / x.size))
    return float(x.mean()) - half, float(x.mean()) + half


def number_intervals(result: StudyResult, variant: str, metric: str, level: float = 0.95) -> tuple[float, ...]:
    """The experiment's number (the mean over its units) over seeds: ``(mean, low, high, next_low, next_high)``,
    its interval and where one more seed's number should land, the wider of two readings. Over seeds: the
    per-seed means (:func:`t_interval`, :func:`prediction_interval`). From the units: each unit's own spread,
    the units taken as independent networks (the units of one seed train with other seeds on other data, so
    nothing pairs them), Welch-Satterthwaite degrees of freedom. The first alone understates the spread when
    the units of the seeds at hand happen to move in opposite directions."""
    per_seed = list(result.values(variant, MEAN_UNIT, metric).values())
    mean, low, high = t_interval(per_seed, level)
    next_low, next_high = prediction_interval(per_seed, level)
    units = [np.asarray(list(result.values(variant, u, metric).values())) for u in result.units]
    if len(units) < 2 or any(u.size < 2 for u in units):
        return mean, low, high, next_low, next_high
    shares = [u.var(ddof=1) / u.size / len(units) ** 2 for u in units]  # each unit's part of the mean's variance
    if sum(shares) == 0:
        return mean, low, high, next_low, next_high
    df = sum(shares) ** 2 / sum(a ** 2 / (u.size - 1) for a, u in zip(shares, units))
    t = float(stats.t.ppf(0.5 + level / 2, df))
    half = t * math.sqrt(sum(shares))
    next_half = t * math.sqrt(sum(a * (u.size + 1) for a, u in zip(shares, units)))  # s^2 (1 + 1/n) / k^2
    return (mean, min(low, mean - half), max(high, mean + half), min(next_low, mean - next_half),
            max(next_high, mean + next_half))


def pooled(result: StudyResult, variant: str, metric: str = "SEG", weight: str = "objects") -> dict[int, float]:
    """Seed -> the units' ``metric`` weighted by each unit's ``weight`` (from its stored result): for SEG over
    held-out blocks weighted by their annotated cells, every cell of the dataset counts once, as in the
    challenge's own SEG. Seeds that lack a unit are left out."""
    by_seed: dict[int, list[tuple[float, float]]] = {}
    for run in result.runs:
        if run["variant"] == variant and run.get(metric) is not None:
            by_seed.setdefault(run["seed"], []).append((float(run[metric]), float(run["result"][weight])))
    return {seed: sum(v * w for v, w in rows) / sum(w for _, w in rows)
            for seed, rows in sorted(by_seed.items()) if len(rows) == len(result.units)}


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
    better = result.metrics.get(metric) if higher_is_better is None else higher_is_better
    if claimed is None and better is None:
        raise UnetlibError(f"whether a larger {metric} is better is unknown: give higher_is_better or claimed")
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


def verdict(low: float, high: float, claimed: int, practical: float | None = None) -> str:
    """The verdict on a claimed effect from the 95 % interval ``[low, high]`` of the paired difference.

    ``claimed`` is +1 (the claim says the metric goes up) or -1 (down); ``practical`` is the smallest effect
    that would matter (in the metric's units). The interval excludes 0 in the claimed direction: supported;
    the other way: contradicted. It includes 0 but lies within ``[-practical, +practical]``: no effect larger
    than that (the data rule out anything that would matter). Otherwise, or with an undefined interval (fewer
    than two seeds): undecided (more seeds, or a budget where the effect shows). A difference that is the same
    for every seed has a zero-width interval: exactly that difference.
    """
    if claimed not in (1, -1):
        raise UnetlibError(f"claimed must be +1 (the metric goes up) or -1 (down), got {claimed!r}")
    if practical is not None and not practical > 0:
        raise UnetlibError(f"the practical size of an effect must be positive, got {practical!r}")
    if math.isnan(low) or math.isnan(high):
        return UNDECIDED
    if low > 0 or high < 0:
        return SUPPORTED if (low > 0) == (claimed == 1) else CONTRADICTED
    if practical is not None and -practical <= low and high <= practical:
        return f"{NO_EFFECT} ±{practical:g}"
    return UNDECIDED


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
            outcome = {SUPPORTED: f"{row.variant} is better", CONTRADICTED: f"{result.baseline} is better"}.get(
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
