"""Small steps shared by the experiment notebooks: evaluation protocols and post-processing.

Every official test label of the paper's datasets is hidden, so the kit
evaluates on held-out training data:

- ISBI 2012: k-fold over contiguous blocks of the 30 consecutive sections
  (contiguous, so that a test slice's neighbours are not in the training set);
- Cell Tracking Challenge: train on one sequence, test on the other, both ways.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
from scipy import ndimage

__all__ = ["contiguous_folds", "select_folds", "cell_labels", "stopwatch"]


def contiguous_folds(n: int, k: int) -> list[dict]:
    """Split ``range(n)`` into ``k`` contiguous test blocks (sizes differ by at most one).

    Returns one dict per fold: ``{"fold": i, "train": [...], "test": [...]}``.
    """
    if not 2 <= k <= n:
        raise ValueError(f"k must be between 2 and n={n}, got {k}")
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    folds = []
    for i in range(k):
        test = list(range(bounds[i], bounds[i + 1]))
        train = [j for j in range(n) if j not in test]
        folds.append({"fold": i, "train": train, "test": test})
    return folds


def select_folds(folds: list[dict], run_folds) -> list[dict]:
    """The folds to run: all for ``None``, else those whose index is listed."""
    if run_folds is None:
        return folds
    bad = [i for i in run_folds if not 0 <= i < len(folds)]
    if bad:
        raise ValueError(f"RUN_FOLDS {bad} out of range: there are {len(folds)} folds (0..{len(folds) - 1})")
    return [folds[i] for i in run_folds]


def cell_labels(p_cell: np.ndarray, threshold: float = 0.5, min_size: int = 0) -> np.ndarray:
    """Instance labels from P(cell): 4-connected components of ``p_cell > threshold``.

    Components smaller than ``min_size`` pixels are removed; labels are
    renumbered 1..n and returned as uint16 (the CTC result format).
    """
    labels, n = ndimage.label(np.asarray(p_cell) > threshold)
    if min_size > 0 and n:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_size
        keep[0] = False
        remap = np.zeros(n + 1, np.int64)
        remap[keep] = np.arange(1, keep.sum() + 1)
        labels = remap[labels]
    if labels.max() > np.iinfo(np.uint16).max:
        raise ValueError("more than 65535 objects: cannot be written as a uint16 CTC mask")
    return labels.astype(np.uint16)


@contextmanager
def stopwatch(timings: dict, key: str):
    """Add the wall time of the ``with`` block to ``timings[key]`` (seconds)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - start, 3)
