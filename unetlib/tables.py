"""Table 1 and Table 2 of the paper, with the kit's numbers beside the paper's.

The tables are built from result files alone, read through
:class:`unetlib.results.ExperimentResult`, and written (atomically) as
Markdown, CSV and LaTeX.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from unetlib import paper
from unetlib.atomic import write_text
from unetlib.data import CTC_DATASETS, DIRECTIONS
from unetlib.errors import UnetlibError
from unetlib.results import ExperimentResult
from unetlib.stats import number_intervals, over_seeds, pooled, prediction_interval, t_interval
from unetlib.study import MEAN_UNIT, read_study
from unetlib.values import counted

__all__ = ["table1", "table2", "over_seeds_text", "to_markdown", "show",
           "write_table", "results_markdown", "HELD_OUT_NOTE", "seed_table",
           "spread", "read_studies", "goal_table"]

HELD_OUT_NOTE = (
    "Paper rows: the official hidden test sets. Rows 'this kit': held-out training data "
    "(the official test labels were never published), so they are comparable in definition, "
    "not in data."
)
_T1_KEYS = ("warping_error", "rand_error", "pixel_error")
_T1_COLS = ("Warping error", "Rand error", "Pixel error")


def over_seeds_text(values, digits: int = 4) -> str:
    """``mean [low–high]``: the mean over seeds with its 95 % interval, for a table cell ('–' without values)."""
    values = list(values)
    if not values:
        return "–"
    mean, low, high = t_interval(values)
    return _interval_text(mean, low, high, digits)


def _number_text(result, metric: str, digits: int = 4) -> str:
    """The experiment's number of a seed study's recipe as ``mean [low–high]`` (:func:`~unetlib.stats.number_intervals`)."""
    if not result.values(result.baseline, MEAN_UNIT, metric):
        return "–"
    mean, low, high, _, _ = number_intervals(result, result.baseline, metric)
    return _interval_text(mean, low, high, digits)


def _interval_text(mean: float, low: float, high: float, digits: int) -> str:
    return f"{mean:.{digits}f}" + ("" if np.isnan(low) else f" [{low:.{digits}f}–{high:.{digits}f}]")


def table1(result: ExperimentResult | None, study=None) -> pd.DataFrame:
    """Table 1 (ISBI 2012) rows of the paper, then this kit's mean and per-fold rows, and with the seed ``study``
    of the profile's recipe (:class:`~unetlib.study.StudyResult`) its mean over seeds with the 95 % interval."""
    rows = [
        {"Rank": "" if r is None else r, "Group": g, "Source": "paper (challenge test set)",
         **dict(zip(_T1_COLS, vals))}
        for r, g, *vals in paper.TABLE1
    ]
    if result is not None:
        folds = result.runs
        mean_label = f"u-net, this kit ({result.profile}), mean of folds {result.run_values('fold')}"
        rows.append({"Rank": "", "Group": mean_label, "Source": f"held-out training sections ({counted(len(folds), 'fold')})",
                     **{c: result.mean[k] for c, k in zip(_T1_COLS, _T1_KEYS)}})
        for f in folds:
            rows.append({"Rank": "", "Group": f"  fold {f['fold']} (test sections {f['test_slices'][0]}-"
                         f"{f['test_slices'][-1]})", "Source": "held-out training sections",
                         **{c: f[k] for c, k in zip(_T1_COLS, _T1_KEYS)}})
        delta = {c: result.mean[k] - paper.UNET_TABLE1[k] for c, k in zip(_T1_COLS, _T1_KEYS)}
        rows.append({"Rank": "", "Group": "Δ this kit − paper u-net", "Source": "", **delta})
    if study is not None:
        n = len(study.values(study.baseline, MEAN_UNIT, "pixel_error"))
        rows.append({"Rank": "", "Group": f"u-net, this kit, {n} seeds: mean [95 % interval]",
                     "Source": "held-out training sections, the same folds",
                     **{c: _number_text(study, k, 6 if k == "warping_error" else 4) for c, k in zip(_T1_COLS, _T1_KEYS)}})
    return pd.DataFrame(rows)


def table2(results: dict[str, ExperimentResult], studies: dict | None = None, both: dict | None = None) -> pd.DataFrame:
    """Table 2 (SEG, the paper's "IOU") rows of the paper, then this kit's rows: the run of the cross-sequence
    protocol; with the seed ``studies`` (dataset -> :class:`~unetlib.study.StudyResult`) its mean over seeds with
    the 95 % interval; with the ``both``-sequence studies (appendix 08) the paper's training data, pooled SEG of
    the held-out blocks over seeds."""
    names = CTC_DATASETS
    cols = ("PhC-U373", "DIC-HeLa")
    rows = [{"Name": n, "Source": "paper (challenge test set)", cols[0]: a, cols[1]: b}
            for n, a, b in paper.TABLE2]
    ours = {c: results[n] for c, n in zip(cols, names) if n in results}
    if ours:
        profile = "/".join(sorted({r.profile for r in ours.values()}))
        rows.append({"Name": f"u-net, this kit ({profile}), mean of directions",
                     "Source": "train on one sequence, test on the other",
                     **{c: r.mean["SEG"] for c, r in ours.items()}})
        for direction in DIRECTIONS:
            row = {"Name": f"  train {direction.replace('->', ', test ')}", "Source": "held-out sequence"}
            for c, r in ours.items():
                row[c] = next((d["SEG"] for d in r.runs if d["direction"] == direction), np.nan)
            rows.append(row)
        rows.append({"Name": "Δ this kit − paper u-net", "Source": "",
                     **{c: results[n].mean["SEG"] - paper.UNET_TABLE2[n]
                        for c, n in zip(cols, names) if n in results}})
    cross = {c: studies[n] for c, n in zip(cols, names) if n in (studies or {})}
    if cross:
        seeds = "/".join(str(n) for n in sorted({len(r.values(r.baseline, MEAN_UNIT, "SEG")) for r in cross.values()}))
        rows.append({"Name": f"u-net, this kit, {seeds} seeds: mean [95 % interval]",
                     "Source": "train on one sequence, test on the other",
                     **{c: _number_text(r, "SEG") for c, r in cross.items()}})
    blocks = {c: both[n] for c, n in zip(cols, names) if n in (both or {})}
    if blocks:
        pooled_seg = {c: pooled(r, r.baseline) for c, r in blocks.items()}
        seeds = "/".join(str(n) for n in sorted({len(v) for v in pooled_seg.values()}))
        rows.append({"Name": f"u-net, this kit, {seeds} seeds: mean [95 % interval]",
                     "Source": "train on both sequences, test on held-out blocks (the paper's training data)",
                     **{c: over_seeds_text(v.values()) for c, v in pooled_seg.items()}})
    return pd.DataFrame(rows)


#: What the seed table shows per dataset: (label, metric) in the order of the paper's tables.
_SEED_METRICS = {
    "isbi2012": (("Pixel error", "pixel_error"), ("Rand error", "rand_error"), ("Warping error", "warping_error")),
    "PhC-C2DH-U373": (("SEG", "SEG"),),
    "DIC-C2DH-HeLa": (("SEG", "SEG"),),
}
_PAPER = {("isbi2012", k): v for k, v in paper.UNET_TABLE1.items()} | {
    (name, "SEG"): v for name, v in paper.UNET_TABLE2.items()}


def spread(values, digits: int = 4) -> str:
    """``mean (min–max)`` of seed values as text; one value as itself."""
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return "–"
    fmt = f"{{:.{digits}g}}" if digits > 4 else f"{{:.{digits}f}}"
    if x.size == 1:
        return fmt.format(x[0])
    return f"{fmt.format(x.mean())} ({fmt.format(x.min())}–{fmt.format(x.max())})"


def read_studies(folder: str | Path, suffix: str = "") -> dict:
    """The study file of every dataset below ``folder`` (``folder/DATASET{suffix}/study.json``; ``suffix``
    ``"-both"``: the both-sequence protocol's), keyed by dataset; other folders (earlier studies of a recipe
    since changed) are not the recipe's numbers and are skipped."""
    found = {}
    for dataset in ("isbi2012", *CTC_DATASETS):
        path = Path(folder) / f"{dataset}{suffix}" / "study.json"
        if path.is_file():
            result = read_study(path)
            if result.dataset == dataset:
                found[dataset] = result
    return found


def seed_table(studies: dict, variant: str | None = None) -> pd.DataFrame:
    """Each experiment's numbers over seeds: per dataset, metric and unit (and their mean) the mean, sd,
    min, max and n of the baseline variant (the profile's recipe), beside the paper's number."""
    rows = []
    for dataset in ("isbi2012", *CTC_DATASETS):
        if dataset not in studies:
            continue
        result = studies[dataset]
        name = variant or result.baseline
        units = result.units_with_mean()
        units = units[-1:] + units[:-1] if len(units) > 1 else units  # the experiment's number first
        for label, metric in _SEED_METRICS[dataset]:
            for unit in units:
                values = result.values(name, unit, metric)
                if not values:
                    continue
                x = over_seeds(values.values())
                if unit == MEAN_UNIT:
                    _, low, high, next_low, next_high = number_intervals(result, name, metric)
                else:
                    (_, low, high), (next_low, next_high) = t_interval(list(values.values())), prediction_interval(
                        list(values.values()))
                digits = 6 if metric == "warping_error" else 4
                where = ("mean of " + ("folds " if dataset == "isbi2012" else "directions ") +
                         ", ".join(str(u) for u in result.units)) if unit == MEAN_UNIT else (
                    f"fold {unit}" if dataset == "isbi2012" else unit)
                rows.append({"Dataset": dataset, "Metric": label, "Unit": where, "n seeds": x["n"],
                             "Mean": x["mean"], "95 % interval of the mean": _range(low, high, digits),
                             "SD": x["sd"], "Min": x["min"], "Max": x["max"],
                             "one more seed (95 %)": _range(next_low, next_high, digits),
                             "Paper": _PAPER.get((dataset, metric), np.nan) if unit == MEAN_UNIT or
                             len(result.units) == 1 else np.nan})
    return pd.DataFrame(rows)


def goal_table(goals: dict, studies: dict, both: dict | None = None) -> pd.DataFrame:
    """A profile's ``goals`` (its file's ``goals``: dataset -> {number: goal}) against the seed ``studies`` (and the
    ``both``-sequence studies for ``SEG_both_sequences``): per goal the mean over seeds with its 95 % interval, min,
    max and n, and whether the mean meets it (an error at most the goal, a SEG at least). Goals whose study has not
    run are left out."""
    rows = []
    for dataset, named in goals.items():
        for name, goal in named.items():
            for metric, unit, values, number, paper_value in _goal_values(dataset, name, studies, both or {}):
                if not values:
                    continue
                x = over_seeds(values.values())
                _, low, high = number_intervals(number, number.baseline, name)[:3] if number else t_interval(
                    list(values.values()))
                digits = 6 if name == "warping_error" else 4
                lower = name.endswith("_error")
                rows.append({"Dataset": dataset, "Metric": metric, "Unit": unit, "Goal": f"{'≤' if lower else '≥'} {goal:g}",
                             "n seeds": x["n"], "Mean": x["mean"], "95 % interval of the mean": _range(low, high, digits),
                             "Min": x["min"], "Max": x["max"],
                             "Met by the mean": bool(x["mean"] <= goal if lower else x["mean"] >= goal),
                             "Paper": paper_value})
    return pd.DataFrame(rows)


def _goal_values(dataset: str, name: str, studies: dict, both: dict) -> list[tuple]:
    """(metric, unit, seed -> value, the study when the value is its experiment's number (the mean over units) or
    None, the paper's number or NaN) of one goal of a profile file; none when its study has not run."""
    errors = {key: label for label, key in _SEED_METRICS["isbi2012"]}
    if dataset == "isbi2012" and name in errors:
        study = studies.get(dataset)
        if study is None:
            return []
        return [(errors[name], f"mean of folds {', '.join(map(str, study.units))}",
                 study.values(study.baseline, MEAN_UNIT, name), study, _PAPER[(dataset, name)])]
    if dataset in CTC_DATASETS and name in ("SEG", "direction_SEG", "SEG_both_sequences"):
        study = (both if name == "SEG_both_sequences" else studies).get(dataset)
        if study is None:
            return []
        if name == "SEG":
            return [("SEG", "mean of directions (trained on one sequence)", study.values(study.baseline, MEAN_UNIT, "SEG"),
                     study, _PAPER[(dataset, "SEG")])]
        if name == "SEG_both_sequences":
            return [("SEG", "held-out blocks (trained on both sequences)", pooled(study, study.baseline), None,
                     _PAPER[(dataset, "SEG")])]
        return [("SEG", unit, study.values(study.baseline, unit, "SEG"), None, np.nan) for unit in study.units]
    raise UnetlibError(f"unknown goal {name!r} of {dataset}: goals name an ISBI error (pixel_error, rand_error, "
                       "warping_error) or a cell dataset's SEG, direction_SEG or SEG_both_sequences")


def _range(low: float, high: float, digits: int) -> str:
    """``low–high`` with ``digits`` decimals, '–' when undefined (fewer than two seeds)."""
    return "–" if np.isnan(low) else f"{low:.{digits}f}–{high:.{digits}f}"


def _fmt(value, column: str = "") -> str:
    """A cell as the paper prints numbers: 4 decimals (a warping error 6), large numbers whole with thousands
    separators (FLOPs in powers of ten), '–' for a missing value; a label's leading spaces kept as an indent."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}" if abs(value) < 10**7 else f"{float(value):.3g}".replace("e+", "e")
    if isinstance(value, (float, np.floating)):
        if column.startswith("Warping") or column.startswith("warping"):
            return f"{value:.6f}"
        if abs(value) >= 10**7:
            return f"{value:.3g}".replace("e+", "e")
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.4g}" if abs(value) >= 1 else f"{value:.4f}"
    text = str(value)
    indent = len(text) - len(text.lstrip(" "))
    return "&emsp;" * (indent // 2) + text.lstrip(" ") if indent else text


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency), numbers as :func:`_fmt` writes them (a row
    whose "Metric" is "Warping error", or a column named "Warping ...", gets 6 decimals)."""
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = []
    for row in df.itertuples(index=False):
        warping = "Warping" if "Metric" in df.columns and str(row[list(df.columns).index("Metric")]).startswith(
            "Warping") else ""
        body.append("| " + " | ".join(_fmt(v, warping or str(c)) for v, c in zip(row, df.columns)) + " |")
    return "\n".join([header, rule, *body])


def show(df: pd.DataFrame):
    """A table for a notebook: rendered from :func:`to_markdown` (no index, '–' for missing, the paper's
    digits), so that every notebook's tables read like the paper's."""
    from IPython.display import Markdown

    return Markdown(to_markdown(df))


def write_table(df: pd.DataFrame, stem: str | Path, caption: str) -> list[Path]:
    """Write ``stem``.md, .csv and .tex; return the paths."""
    stem = Path(stem)
    md = write_text(stem.with_suffix(".md"), f"{caption}\n\n{to_markdown(df)}\n\n{HELD_OUT_NOTE}\n")
    csv = write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    tex = write_text(stem.with_suffix(".tex"), df.to_latex(
        index=False, na_rep="--", caption=caption, formatters={c: (lambda v, c=c: _fmt(v, c)) for c in df.columns}))
    return [md, csv, tex]


SEED_NOTE = (
    "Over seeds: the same recipe trained with other seeds (seed 0 trains with the seeds of the run in the "
    "tables above: on a CPU of the same vendor, family, model and instruction set, with the same precision and "
    "threads, all recorded in every result file, it is that run digit for digit; on another CPU generation it is "
    "another draw); "
    "mean with the 95 % Student-t interval of the mean, standard deviation (n - 1), min and max over seeds, and "
    "where one more seed should land (95 % prediction interval: mean -+ t sd sqrt(1 + 1/n)), per unit and for "
    "the experiment's number (the mean of its units, seed by seed). For the experiment's number both intervals are "
    "the wider of two readings: over the per-seed means, and from each unit's own spread with the units taken as "
    "independent networks (one seed's units train with other seeds on other data; Welch-Satterthwaite degrees of "
    "freedom), so that units that happen to move in opposite directions over the seeds at hand do not narrow it."
)


def results_markdown(results: dict[str, ExperimentResult], timings: dict[str, float], profile: str,
                     studies: dict | None = None, studies_folder: str = "", both: dict | None = None,
                     goals: dict | None = None) -> str:
    """The README's results section: machine, revisions, wall times, Table 1 and Table 2, the held-out note,
    and, when a seed study is given, every number over seeds and the profile's ``goals`` against them."""
    isbi = results["isbi2012_em"]
    hw = isbi.environment.get("hardware", {})
    machine = hw.get("gpu") or f"{hw.get('cpu_model') or 'CPU'}, {hw.get('cpu_count')} cores"
    if not hw.get("gpu"):
        machine += ", bf16" if hw.get("cpu_bf16") else ", fp32 (no native bf16)"
    revisions = ", ".join(f"{name} at git {str(results[name].environment.get('git_revision'))[:12]}"
                          for name in ("isbi2012_em", *CTC_DATASETS) if name in results)
    lines = [f"Profile `{profile}` on {machine}; {revisions}.", ""]
    if timings:
        lines += ["Wall time per notebook: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
                  + f"; total {sum(timings.values()) / 60:.1f} min.", ""]
    studies = studies or {}
    lines += ["**Table 1 (ISBI 2012)**", "", to_markdown(table1(isbi, studies.get("isbi2012"))), "",
              "**Table 2 (SEG)**", "", to_markdown(table2(results, studies, both)), "", HELD_OUT_NOTE]
    if studies:
        table = seed_table(studies)
        seeds = ", ".join(f"{d} {counted(int(n), 'seed')}" for d, n in
                          table.groupby("Dataset", sort=False)["n seeds"].max().items())
        where = f" (`{studies_folder}`)" if studies_folder else ""
        lines += ["", f"**Over seeds**{where}: the `{profile}` recipe with {seeds}", "", to_markdown(table), "",
                  SEED_NOTE]
        met = goal_table(goals or {}, studies, both)
        if len(met):
            lines += ["", f"**Against the `{profile}` profile's goals** (its file's `goals`; the mean over seeds, "
                      "met when it is at or beyond the goal)", "", to_markdown(met)]
    return "\n".join(lines) + "\n"
