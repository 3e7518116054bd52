"""The text the notebooks show beside their figures: a recipe in one line, its choices with
their reasons, and what an experiment's numbers say against the paper's.

Each function takes a recipe or a result and returns text (a string, lines, or a
styled table); none reads data or draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from unetlib import paper
from unetlib.results import ExperimentResult

__all__ = ["recipe_summary", "choices_table", "interpret"]


def recipe_summary(recipe) -> str:
    """One line: the network, tiles, schedule and post-processing of a recipe."""
    t = recipe.train
    post = ""
    if recipe.dataset != "isbi2012":
        post = ("; instances: components of P(cell) > threshold, threshold and minimum size tuned on the "
                "training sequence" if recipe.tune_postprocessing else
                f"; instances: components of P(cell) > {recipe.threshold}, at least {recipe.min_size} px")
    return (f"{recipe.dataset}, profile {recipe.profile}: width {t.width}, {t.tile}² training tiles, {t.batch} per "
            f"step, {t.iterations} iterations of {t.optimizer} (peak lr {t.lr:g}, {t.schedule}, warm-up {t.warmup}); "
            f"inputs {recipe.normalize!r}, test-time averaging {recipe.tta!r}{post}")


def choices_table(recipe, only: Sequence[str] | None = None):
    """The recipe's choices where the paper is silent, with their reasons (a pandas DataFrame with the
    columns choice, value and why; show it with :func:`unetlib.tables.show`).

    ``only`` keeps the choices whose name starts with one of the given prefixes
    (e.g. ``["train."]``), to show them beside the cell that uses them.
    """
    rows = [r for r in recipe.choices() if only is None or r[0].startswith(tuple(only))]
    return pd.DataFrame([(name, str(value), why) for name, value, why in rows], columns=["choice", "value", "why"])


def interpret(result: ExperimentResult) -> list[str]:
    """What the numbers say: each against the paper's, the worst run, and where the errors come from."""
    lines = []
    if result.dataset == "isbi2012":
        for key in ("pixel_error", "rand_error", "warping_error"):
            ours, theirs = result.mean[key], paper.UNET_TABLE1[key]
            worst = max(result.runs, key=lambda r: r[key])
            lines.append(f"{key.replace('_', ' ')}: {ours:.6g} here vs {theirs:.6g} in the paper "
                         f"({100 * (ours - theirs) / theirs:+.0f} %); worst fold {worst['fold']} "
                         f"({worst[key]:.6g}, sections {worst['test_slices'][0]}-{worst['test_slices'][-1]})")
        lines.append("The warping error counts split and merge pixels of the whole stack: "
                     f"{result.mean['warping_error'] * 512 * 512:.0f} per 512x512 section here.")
        return lines
    ours, theirs = result.mean["SEG"], paper.UNET_TABLE2[result.dataset]
    lines.append(f"SEG: {ours:.4f} here vs {theirs:.4f} in the paper ({ours - theirs:+.4f})")
    for run in result.runs:
        found, total = run["matched_objects"], run["objects"]
        mean_jaccard = run["SEG"] * total / found if found else 0.0
        lines.append(
            f"{run['direction']}: SEG {run['SEG']:.4f}; {found} of {total} annotated cells found "
            f"({total - found} not covered by more than half), the found ones with a mean Jaccard index of {mean_jaccard:.3f}; "
            f"foreground IoU {run['foreground_iou']:.3f}; instances: P(cell) > {run['threshold']}, "
            f">= {run['min_size']} px"
            + (f", split between cores > {run['split_threshold']}" if run.get("split_threshold") is not None else "")
            + f" ({run['postprocessing']})")
        larger = run.get("by_size", {}).get("larger")
        if larger and larger["cells"]:
            within = run["by_size"]["within"]
            rest = (f", against {within['matched']} of {within['cells']} (mean {within['jaccard']:.3f}) within the "
                    "training sizes" if within["cells"] else "")
            lines.append(
                f"  {larger['cells']} of its {total} test cells are larger than any annotated training cell: "
                f"{larger['matched']} of them found (mean Jaccard {larger['jaccard']:.3f}, unfound cells counting 0)"
                + rest)
    missed = sum(r["objects"] - r["matched_objects"] for r in result.runs) / max(1, sum(r["objects"] for r in result.runs))
    lines.append("Most of the gap is cells not found: missed, or broken into pieces none of which covers half of "
                 "the cell" if missed > 0.2 else
                 "Most cells are found; the gap is in their outlines: cells predicted too small or too large, or "
                 "merged with a neighbour (a merged pair scores about 0.5 each)")
    return lines
