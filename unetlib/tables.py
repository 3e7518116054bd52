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
from unetlib.results import ExperimentResult

__all__ = ["table1", "table2", "to_markdown", "write_table", "results_markdown", "HELD_OUT_NOTE"]

HELD_OUT_NOTE = (
    "Paper rows: the official hidden test sets. Rows 'this kit': held-out training data "
    "(the official test labels were never published), so they are comparable in definition, "
    "not in data."
)
_T1_KEYS = ("warping_error", "rand_error", "pixel_error")
_T1_COLS = ("Warping error", "Rand error", "Pixel error")


def table1(result: ExperimentResult | None) -> pd.DataFrame:
    """Table 1 (ISBI 2012) rows of the paper, then this kit's mean and per-fold rows."""
    rows = [
        {"Rank": "" if r is None else r, "Group": g, "Source": "paper (challenge test set)",
         **dict(zip(_T1_COLS, vals))}
        for r, g, *vals in paper.TABLE1
    ]
    if result is not None:
        folds = result.runs
        mean_label = f"u-net, this kit ({result.profile}), mean of folds {result.run_values('fold')}"
        rows.append({"Rank": "", "Group": mean_label, "Source": f"held-out training sections ({len(folds)} folds)",
                     **{c: result.mean[k] for c, k in zip(_T1_COLS, _T1_KEYS)}})
        for f in folds:
            rows.append({"Rank": "", "Group": f"  fold {f['fold']} (test sections {f['test_slices'][0]}-"
                         f"{f['test_slices'][-1]})", "Source": "held-out training sections",
                         **{c: f[k] for c, k in zip(_T1_COLS, _T1_KEYS)}})
        delta = {c: result.mean[k] - paper.UNET_TABLE1[k] for c, k in zip(_T1_COLS, _T1_KEYS)}
        rows.append({"Rank": "", "Group": "Δ this kit − paper u-net", "Source": "", **delta})
    return pd.DataFrame(rows)


def table2(results: dict[str, ExperimentResult]) -> pd.DataFrame:
    """Table 2 (SEG, the paper's "IOU") rows of the paper, then this kit's rows."""
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
    return pd.DataFrame(rows)


def _fmt(value, column: str = "") -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "–"
        return f"{value:.6f}" if column.startswith("Warping") else f"{value:.4f}"
    return str(value)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_fmt(v, c) for v, c in zip(row, df.columns)) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def write_table(df: pd.DataFrame, stem: str | Path, caption: str) -> list[Path]:
    """Write ``stem``.md, .csv and .tex; return the paths."""
    stem = Path(stem)
    md = write_text(stem.with_suffix(".md"), f"{caption}\n\n{to_markdown(df)}\n\n{HELD_OUT_NOTE}\n")
    csv = write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    tex = write_text(stem.with_suffix(".tex"), df.to_latex(
        index=False, na_rep="--", caption=caption, formatters={c: (lambda v, c=c: _fmt(v, c)) for c in df.columns}))
    return [md, csv, tex]


def results_markdown(results: dict[str, ExperimentResult], timings: dict[str, float], profile: str) -> str:
    """The README's results section: machine, revisions, wall times, Table 1 and Table 2, the held-out note."""
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
    lines += ["**Table 1 (ISBI 2012)**", "", to_markdown(table1(isbi)), "",
              "**Table 2 (SEG)**", "", to_markdown(table2(results)), "", HELD_OUT_NOTE]
    return "\n".join(lines) + "\n"
