"""Data-pipeline cost per 572 x 572 training sample: the Eq. 2 weight map and the elastic deformation.

Measured, as wall-clock medians on the CPU:

- *weight map*: :func:`unetlib.weights.training_target` on a real Cell
  Tracking Challenge mask (DIC-C2DH-HeLa, mirrored to 572 x 572; skipped with a
  note when the data are absent) and on a synthetic 512 x 512 mask with 40
  cells, next to the brute-force version (one
  full-image distance transform per cell);
- *elastic deformation*: :func:`unetlib.augment.deform` of an image (bicubic)
  plus its labels (nearest) with a 3x3, sigma = 10 px field;
  :func:`unetlib.augment.random_tile` (572 -> 388, every augmentation on);
  and ``elasticdeform.deform_random_grid(points=3, sigma=10)`` on the same
  input when that optional package imports (its wheel may fail under NumPy 2).

Writes ``augment.json`` and ``augment.md`` to ``reports/benchmarks/`` (or
``--out``). Run ``python -m benchmarks.bench_augment`` on a quiet machine, or
``--quick`` (a few repeats: checks that the script runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from benchmarks.common import OUT_DIR, cpu_name, write_report
from unetlib.augment import AugmentParams, deform, displacement_field, elastic_grid, random_tile
from unetlib.weights import separation_target, training_target

SIZE = 572
OUT_SIZE = 388
HELA_MASK = Path("DIC-C2DH-HeLa") / "01_GT" / "SEG" / "man_seg002.tif"


# --------------------------------------------------------------------------- #
# Inputs
# --------------------------------------------------------------------------- #
def data_root() -> Path:
    return Path(os.environ.get("UNETLIB_DATA", Path(__file__).resolve().parents[1] / "data"))


def real_mask() -> tuple[np.ndarray | None, str]:
    """The HeLa mask mirrored to SIZE x SIZE, or None and the reason."""
    path = data_root() / HELA_MASK
    if not path.is_file():
        return None, f"{HELA_MASK} not found under the data root (set UNETLIB_DATA)"
    import tifffile

    mask = tifffile.imread(path)
    pad = [(0, max(SIZE - n, 0)) for n in mask.shape]
    return np.pad(mask, pad, mode="reflect")[:SIZE, :SIZE], str(HELA_MASK)


def synthetic_mask(shape=(512, 512), cells=40, radius=25, seed=0) -> np.ndarray:
    """Cells grown from random seeds up to ``radius`` pixels: many touch."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.int32)
    seeds[rng.integers(0, shape[0], cells), rng.integers(0, shape[1], cells)] = np.arange(1, cells + 1)
    distance, (rows, cols) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    return np.where(distance < radius, seeds[rows, cols], 0).astype(np.int32)


def brute_force_border(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """The slow way: one full-image distance transform per cell."""
    cells = np.where(separation_target(instances) > 0, instances, 0)
    labels = [v for v in np.unique(cells) if v]
    distances = np.sort(np.stack([ndimage.distance_transform_edt(cells != v) for v in labels]), axis=0)
    return w0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))


# --------------------------------------------------------------------------- #
# Timing
# --------------------------------------------------------------------------- #
def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench_weights(repeats: int) -> list[dict]:
    rows = []
    synthetic = synthetic_mask()
    cases = [("synthetic 512² (40 cells)", synthetic)]
    mask, note = real_mask()
    if mask is None:
        rows.append({"input": "real CTC mask", "skipped": note})
    else:
        cases.insert(0, (f"{note} mirrored to {SIZE}²", mask))
    for name, instances in cases:
        rows.append({
            "input": name,
            "cells": int(len(np.unique(instances)) - 1),
            "unetlib_ms": median_ms(lambda m=instances: training_target(m), repeats),
            "brute_force_ms": median_ms(lambda m=instances: brute_force_border(m), max(1, repeats // 3)),
        })
    return rows


def bench_elastic(repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    image = rng.random((SIZE, SIZE)).astype(np.float32)
    labels = synthetic_mask((SIZE, SIZE)).astype(np.uint8)  # < 256 cells
    weights = np.ones((SIZE, SIZE), np.float32)
    rows = []

    def unetlib_deform():
        field = displacement_field(elastic_grid(rng), image.shape).astype(np.float32)
        return deform(image, field, order=3), deform(labels, field, order=0)

    rows.append({"method": "unetlib deform (image bicubic + labels nearest)", "ms": median_ms(unetlib_deform, repeats)})

    def unetlib_tile():
        return random_tile(image, labels, weights, in_size=SIZE, out_size=OUT_SIZE, rng=rng, params=AugmentParams())

    rows.append({"method": f"unetlib random_tile {SIZE}->{OUT_SIZE} (all augmentations)",
                 "ms": median_ms(unetlib_tile, repeats)})
    rows.append(bench_elasticdeform(image, labels, repeats))
    return rows


def bench_elasticdeform(image, labels, repeats: int) -> dict:
    name = "elasticdeform.deform_random_grid(points=3, sigma=10), order [3, 0]"
    try:
        import elasticdeform
    except Exception as exc:  # ImportError, or the wheel's failure under NumPy 2
        return {"method": name, "skipped": f"elasticdeform not importable ({type(exc).__name__}: {exc})"}
    return {"method": name, "ms": median_ms(
        lambda: elasticdeform.deform_random_grid([image, labels], sigma=10, points=3, order=[3, 0]), repeats)}


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #
def markdown(report: dict) -> str:
    lines = [
        f"# Data pipeline per training sample ({report['threads']} torch threads, "
        f"{report['repeats']} repeats{', quick' if report['quick'] else ''})",
        "",
        "| weight map input | cells | unetlib ms | brute force ms |",
        "|---|---|---|---|",
    ]
    for row in report["weight_map"]:
        if "skipped" in row:
            lines.append(f"| {row['input']} | skipped: {row['skipped']} | | |")
        else:
            lines.append(f"| {row['input']} | {row['cells']} | {row['unetlib_ms']:.1f} | {row['brute_force_ms']:.1f} |")
    lines += ["", f"| elastic deformation, {SIZE}² | ms |", "|---|---|"]
    for row in report["elastic"]:
        lines.append(f"| {row['method']} | {row.get('ms', 0):.1f} |" if "ms" in row
                     else f"| {row['method']} | skipped: {row['skipped']} |")
    lines += ["", "Medians of wall-clock time on the CPU; the weight map includes the separation target."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few repeats (checks the script)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default reports/benchmarks)")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 30
    report = {"threads": torch.get_num_threads(), "torch": torch.__version__, "numpy": np.__version__,
              "machine": cpu_name(), "quick": args.quick, "repeats": repeats,
              "weight_map": bench_weights(repeats), "elastic": bench_elastic(repeats)}
    write_report(args.out, "augment", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
