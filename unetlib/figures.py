"""Figures the notebooks show: weight maps, loss curves, segmentations, every seed's value, the paper's figures.

Each function takes results or arrays, draws one figure and returns it
(``save=`` writes a PNG atomically); none reads data on its own, so the
notebooks stay a narrative around library calls. The sentences and tables of
text beside them are :mod:`unetlib.text`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from unetlib.atomic import write_bytes
from unetlib.data import CTC_DATASETS
from unetlib.results import ExperimentResult
from unetlib.stats import flag_runs, over_seeds
from unetlib.study import MEAN_UNIT

__all__ = [
    "weight_map_panel", "loss_curves", "isbi_examples", "ctc_examples",
    "instance_overlay", "training_sample", "save_figure", "study_values",
    "architecture", "overlap_tiles", "border_profile", "elastic_deformation",
    "segmentation_examples", "budget_curve",
]

_DPI = 120


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return write_bytes(path, buffer.getvalue())


def weight_map_panel(image: np.ndarray, target: np.ndarray, weights: np.ndarray, title: str, *,
                     instances: np.ndarray | None = None, save: str | Path | None = None):
    """An image, its binary target with separation borders, and its Eq. 2 weight map, side by side.

    With ``instances`` (the ground-truth cells) this is the paper's Fig. 3: (a) the image, (b) the
    instances, (c) the target, (d) the weight map.
    """
    fig3 = instances is not None
    fig, ax = plt.subplots(1, 4 if fig3 else 3, figsize=(17, 4.5) if fig3 else (13, 4))
    ax[0].imshow(image, cmap="gray")
    ax[0].set_title(title)
    if fig3:
        instance_overlay(ax[1], image, instances, "(b) ground truth instances")
    ax[-2].imshow(target, cmap="gray")
    ax[-2].set_title("(c) target with separation borders" if fig3 else "target (1 = cell) with separation borders")
    im = ax[-1].imshow(weights, cmap="jet")
    ax[-1].set_title("(d) weight map" if fig3 else "weight map w(x)")
    fig.colorbar(im, ax=ax[-1], fraction=0.046)
    for a in ax:
        a.axis("off")
    if save is not None:
        save_figure(fig, save)
    return fig


def loss_curves(results: dict[str, Sequence], *, title: str = "training loss", window: int = 50, ax=None,
                save: str | Path | None = None):
    """Loss against iteration for each named curve of ``(iteration, loss, seconds)`` rows, with a running mean."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4))
    for label, rows in results.items():
        rows = np.asarray(rows, dtype=float)
        if rows.size == 0:
            continue
        it, loss = rows[:, 0], rows[:, 1]
        line, = ax.plot(it, loss, lw=0.6, alpha=0.35)
        n = max(1, min(window, len(loss) // 4 or 1))
        ax.plot(it[n - 1:], np.convolve(loss, np.ones(n) / n, "valid"), color=line.get_color(), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("weighted cross entropy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    if save is not None:
        save_figure(fig, save)
    return fig


def instance_overlay(ax, image: np.ndarray, labels: np.ndarray, title: str = "", alpha: float = 0.55) -> None:
    """``image`` in grey with ``labels`` (0 = background) in cycling colours."""
    ax.imshow(image, cmap="gray")
    ax.imshow(np.ma.masked_equal(labels % 20 + (labels > 0), 0), cmap="tab20", alpha=alpha, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def isbi_examples(result: ExperimentResult, out_dir: str | Path, save: str | Path | None = None):
    """For each fold: its first held-out section, the ground truth and the predicted P(cell)."""
    runs = result.runs
    fig, axes = plt.subplots(len(runs), 3, figsize=(12, 4 * len(runs)), squeeze=False)
    for row, run in zip(axes, runs):
        with np.load(Path(out_dir) / run["example"]) as ex:
            row[0].imshow(ex["image"], cmap="gray")
            row[1].imshow(ex["gt"], cmap="gray")
            row[2].imshow(ex["prob"], cmap="gray", vmin=0, vmax=1)
        section = run["test_slices"][0]
        row[0].set_title(f"fold {run['fold']}: section {section}", fontsize=9)
        row[1].set_title("ground truth (black: membrane)", fontsize=9)
        row[2].set_title(f"P(cell); fold errors: pixel {run['pixel_error']:.4f}, Rand {run['rand_error']:.4f}",
                         fontsize=9)
        for ax in row:
            ax.axis("off")
    if save is not None:
        save_figure(fig, save)
    return fig


def ctc_examples(result: ExperimentResult, out_dir: str | Path, save: str | Path | None = None):
    """For each direction: the first test frame with its ground truth, P(cell) and the predicted instances."""
    runs = result.runs
    fig, axes = plt.subplots(len(runs), 3, figsize=(14, 4.2 * len(runs)), squeeze=False)
    for row, run in zip(axes, runs):
        with np.load(Path(out_dir) / run["example"]) as ex:
            image, gt, pred, prob = ex["image"], ex["gt"], ex["pred"], ex["prob"]
        instance_overlay(row[0], image, gt.astype(np.int64), f"{run['direction']}: frame {run['test_frames'][0]}, "
                         "ground truth")
        row[1].imshow(prob, cmap="magma", vmin=0, vmax=1)
        row[1].set_title("P(cell)", fontsize=9)
        row[1].axis("off")
        instance_overlay(row[2], image, pred.astype(np.int64),
                         f"predicted instances (direction SEG {run['SEG']:.3f})")
    if save is not None:
        save_figure(fig, save)
    return fig


def training_sample(image, target, weights, x, y, w, title: str = "", save: str | Path | None = None):
    """A source image with its target and weights, next to one augmented training tile (input, target, weights)."""
    fig, ax = plt.subplots(2, 3, figsize=(12, 8))
    for a, (array, cmap, name) in zip(ax[0], ((image, "gray", "image"), (target, "gray", "target"),
                                              (weights, "jet", "weight map w(x)"))):
        a.imshow(array, cmap=cmap)
        a.set_title(f"source {name}", fontsize=9)
    for a, (array, cmap, name) in zip(ax[1], ((x, "gray", "input tile"), (y, "gray", "target (output tile)"),
                                              (w, "jet", "weights (output tile)"))):
        a.imshow(array, cmap=cmap)
        a.set_title(f"augmented {name} {array.shape[0]}²", fontsize=9)
    for a in ax.ravel():
        a.axis("off")
    fig.suptitle(title)
    if save is not None:
        save_figure(fig, save)
    return fig


def study_values(result, metric: str, *, title: str | None = None, save: str | Path | None = None):
    """Every seed's value of ``metric`` per variant, one panel per unit (and the mean over units).

    Each dot is one training run (labelled by its seed); the bar is the mean
    over seeds with +- one standard deviation. Runs flagged by
    :func:`unetlib.stats.flag_runs` (final loss far above their seed-mates')
    are drawn as red crosses.
    """
    flagged = {(f["variant"], f["unit"], f["seed"]) for f in flag_runs(result)}
    units = result.units_with_mean()
    variants = result.variants
    fig, axes = plt.subplots(1, len(units), figsize=(1.2 + 1.6 * len(variants) * len(units), 3.8), squeeze=False)
    for ax, unit in zip(axes[0], units):
        for x, variant in enumerate(variants):
            values = result.values(variant, unit, metric)
            if not values:
                continue
            seeds, y = list(values), np.array(list(values.values()))
            offsets = np.linspace(-0.15, 0.15, len(y)) if len(y) > 1 else np.zeros(1)
            for dx, seed, v in zip(offsets, seeds, y):
                bad = any((variant, u, seed) in flagged for u in ([unit] if unit != MEAN_UNIT else result.units))
                ax.plot(x + dx, v, "x" if bad else "o", color="red" if bad else "C0", ms=7 if bad else 5)
                ax.annotate(str(seed), (x + dx, v), textcoords="offset points", xytext=(4, 2), fontsize=6,
                            color="0.4")
            sd = over_seeds(y)["sd"]
            ax.errorbar(x + 0.3, y.mean(), yerr=0.0 if math.isnan(sd) else sd, fmt="_", color="k", ms=14, capsize=3)
        ax.set_xticks(range(len(variants)), variants, rotation=20, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(variants) - 0.3)
        ax.set_title(f"{unit}" if unit != MEAN_UNIT else "mean of the units", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(metric.replace("_", " "))
    fig.suptitle(title or f"{result.dataset}: {metric} of every seed (bar: mean +- sd; red x: flagged run)",
                 fontsize=10)
    fig.tight_layout()
    if save is not None:
        save_figure(fig, save)
    return fig


# --------------------------------------------------------------------------- the paper's figures (notebooks 00 and 03)


def architecture(shapes: Sequence[tuple[str, tuple[int, int, int]]], save: str | Path | None = None):
    """Fig. 1 recomputed: each layer's output channels and edge, by level, from
    :func:`unetlib.model.layer_shapes` (contracting path blue, expanding path orange)."""
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for x, (name, (c, h, _)) in enumerate(shapes):
        level = 3 if name == "upconv_d4c_u3a" else (4 if name.startswith("conv_d4") else int(name.split("_")[1][1]))
        down = name.split("_")[1].startswith("d")
        ax.bar(x, 0.8, bottom=-level, width=0.12 + 0.1 * np.log2(c / 32), color="tab:blue" if down else "tab:orange")
        ax.text(x, -level + 0.85, f"{c}", ha="center", fontsize=7)
        ax.text(x, -level - 0.15, f"{h}²", ha="center", fontsize=7, rotation=90, va="top")
    ax.set_yticks([0, -1, -2, -3, -4], [f"level {level}" for level in range(5)])
    ax.set_xticks([])
    ax.set_title(f"Fig. 1 recomputed: channels (top) and edge length (below) of each layer's output, "
                 f"{shapes[0][1][1] + 2}×{shapes[0][1][1] + 2} input")
    if save is not None:
        save_figure(fig, save)
    return fig


def overlap_tiles(image: np.ndarray, layout, input_tile: int, save: str | Path | None = None):
    """Fig. 2: one input tile and the centre it predicts (left); every output tile of ``layout``
    (:func:`unetlib.geometry.plan_tiles`) and the part it writes (right), over the mirrored image."""
    margin = (input_tile - layout.out[0]) // 2  # 92 for the paper's network
    ty, tx = layout.out
    pad = margin + max(ty, tx)
    padded = np.pad(image, pad, mode="reflect")
    colors = plt.cm.autumn(np.linspace(0, 1, layout.n_tiles))
    fig, ax = plt.subplots(1, 2, figsize=(14, 7))
    for a in ax:
        a.imshow(padded, cmap="gray")
        a.add_patch(Rectangle((pad, pad), image.shape[1], image.shape[0], fill=False, ec="white", lw=2, ls="--"))
        a.axis("off")
    y0, x0 = next(layout.origins())
    ax[0].add_patch(Rectangle((pad + x0 - margin, pad + y0 - margin), input_tile, input_tile, fill=False,
                              ec="tab:blue", lw=2.5))
    ax[0].add_patch(Rectangle((pad + x0, pad + y0), tx, ty, fill=False, ec="gold", lw=2.5))
    ax[0].set_title(f"one input tile (blue, {input_tile}²) predicts its centre (yellow, {ty}²)", fontsize=10)
    for (y, x), c in zip(layout.origins(), colors):
        ax[1].add_patch(Rectangle((pad + x, pad + y), tx, ty, fill=False, ec=c, lw=1.5))
        wy, wx = layout.write_window(y, x)
        ax[1].add_patch(Rectangle((pad + wx.start, pad + wy.start), wx.stop - wx.start, wy.stop - wy.start,
                                  fc=c, alpha=0.2))
    ax[1].set_title(f"{layout.n_tiles} output tiles at stride {layout.stride[0]} (a multiple of 16);\n"
                    "shaded: the part each tile writes. Outside the white frame: mirrored.", fontsize=10)
    if save is not None:
        save_figure(fig, save)
    return fig


def border_profile(target: np.ndarray, weights: np.ndarray, half_width: int = 40):
    """The weights and the target along the image row through the heaviest pixel of ``weights``
    (a gap between two touching cells): the gap's pixels weigh most."""
    row = int(np.argmax(weights.max(axis=1)))
    peak = int(np.argmax(weights[row]))
    cols = np.arange(max(0, peak - half_width), min(weights.shape[1], peak + half_width))
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.plot(cols, weights[row, cols], label="w(x)")
    ax.plot(cols, target[row, cols] * weights[row, cols].max(), "--", label="target (scaled): 1 = cell")
    ax.set_xlabel(f"column, along image row {row}")
    ax.legend(fontsize=8)
    ax.set_title("across a gap between two touching cells: the gap's pixels weigh most")
    return fig


def elastic_deformation(image: np.ndarray, field: np.ndarray, warped: np.ndarray, step: int = 32,
                        save: str | Path | None = None):
    """An image with a grid, the same image deformed by ``field`` ((2, H, W) displacements), and the field."""
    fig, ax = plt.subplots(1, 3, figsize=(15, 5))
    ax[0].imshow(image, cmap="gray")
    ax[0].set_title(f"input with a {step}-px grid")
    ax[1].imshow(warped, cmap="gray")
    ax[1].set_title("elastically deformed")
    yy, xx = np.mgrid[0:image.shape[0]:step, 0:image.shape[1]:step]
    ax[2].quiver(xx, yy, field[1][::step, ::step], field[0][::step, ::step], angles="xy", scale_units="xy", scale=0.25)
    ax[2].invert_yaxis()
    ax[2].set_aspect("equal")
    ax[2].set_title("displacement field (arrows ×4)")
    for a in ax[:2]:
        a.axis("off")
    if save is not None:
        save_figure(fig, save)
    return fig


def segmentation_examples(results: dict[str, ExperimentResult], out_dir: str | Path,
                          save: str | Path | None = None):
    """Fig. 4: for each cell dataset, the first direction's example frame with its ground truth outlined,
    and the predicted instances."""
    names = [n for n in CTC_DATASETS if n in results]
    fig, ax = plt.subplots(1, 2 * len(names), figsize=(9 * len(names), 4.8), squeeze=False)
    ax = ax[0]
    for i, name in enumerate(names):
        run = results[name].runs[0]
        with np.load(Path(out_dir) / run["example"]) as ex:
            image, gt, pred = ex["image"], ex["gt"], ex["pred"]
        ax[2 * i].imshow(image, cmap="gray")
        ax[2 * i].contour(gt > 0, [0.5], colors="yellow", linewidths=0.8)
        ax[2 * i].set_title(f"{name}: input, ground truth (yellow)", fontsize=9)
        ax[2 * i].axis("off")
        instance_overlay(ax[2 * i + 1], image, pred.astype(np.int64),
                         f"segmentation ({run['direction']}, SEG {run['SEG']:.3f})")
    if save is not None:
        save_figure(fig, save)
    return fig


_ERROR_LABELS = {"warping_error": "warping error", "rand_error": "Rand error", "pixel_error": "pixel error"}


def _label_compute_axis(axis) -> None:
    """A log axis of FLOPs labelled at 1, 2 and 5 of each decade, as '2e14' (matplotlib's own minor labels overlap)."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.0e}".replace("e+", "e")))


def budget_curve(curve: pd.DataFrame, *, paper_values: dict | None = None, goals: dict | None = None,
                 spread: dict | None = None, trends: dict | None = None, save: str | Path | None = None):
    """Each ISBI 2012 error against the training compute (total FLOPs, log axes), one panel per error.

    ``curve``: :func:`unetlib.budget.curve` (large markers: the mean of the units, by width; small ones:
    each unit); ``paper_values``: error -> the paper's number (black line); ``goals``: name -> {error: goal}
    (dashed lines); ``spread``: error -> the standard deviation over seeds at the cpu recipe (an error bar
    on every mean); ``trends``: error -> :class:`unetlib.budget.Trend` (the fitted width-16 power law,
    dotted, drawn on ahead of the points to where it would meet the paper's number when that is near).
    The first point's width is the steps axis (:func:`unetlib.budget.steps_axis`).
    """
    errors = [e for e in _ERROR_LABELS if e in curve.columns]
    fig, axes = plt.subplots(1, len(errors), figsize=(4.6 * len(errors), 4.2), squeeze=False)
    means = curve[curve.unit == MEAN_UNIT]
    widths = sorted(curve.width.unique())
    markers, colours = dict(zip(widths, "os^D")), dict(zip(widths, ("C0", "C1", "C2", "C3")))
    for ax, error in zip(axes[0], errors):
        units = curve[curve.unit != MEAN_UNIT]
        ax.scatter(units.flops, units[error], s=12, color="0.6", zorder=2, label="one fold")
        for width, rows in means.groupby("width"):
            rows = rows.sort_values("flops")
            sd = (spread or {}).get(error)
            ax.errorbar(rows.flops, rows[error], yerr=sd, fmt=markers[width], ms=7, capsize=3, color=colours[width],
                        zorder=3,
                        label=f"width {width}, mean of folds")
            for row in rows.itertuples():
                ax.annotate(f"{row.steps:,}", (row.flops, getattr(row, error)), textcoords="offset points",
                            xytext=(5, 4), fontsize=7, color="0.3")
        fitted = (trends or {}).get(error)
        x_high = means.flops.max() * 1.5
        if paper_values and error in paper_values:
            ax.axhline(paper_values[error], color="k", lw=1.2, label="paper (u-net, challenge test set)")
            reach = fitted.flops_for(paper_values[error]) if fitted is not None else math.inf
            if means.flops.max() < reach < 50 * means.flops.max():  # ahead of the points, and near
                x_high = reach * 1.2
        if fitted is not None:
            axis = int(curve.width.iloc[0])
            xs = np.geomspace(means[means.width == axis].flops.min(), x_high, 50)
            ax.plot(xs, fitted.at(xs), ":", color="C0", lw=1.2,
                    label=f"width-{axis} trend (x{fitted.per_doubling:.2f} per doubling)")
        for k, (name, values) in enumerate((goals or {}).items()):
            if error in values:
                ax.axhline(values[error], color="C3", ls=("--", "-.")[k % 2], lw=1, label=f"goal: {name}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _label_compute_axis(ax.xaxis)
        ax.set_xlabel("training compute (FLOPs per network)")
        ax.set_title(_ERROR_LABELS[error], fontsize=11)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)  # below: no point hidden
    fig.suptitle("ISBI 2012, held-out folds: the errors against training compute (labels: steps)", fontsize=12)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    if save is not None:
        save_figure(fig, save)
    return fig
