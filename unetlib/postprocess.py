"""Post-processing: from P(cell) to cell instances, and the choice of its two parameters.

The paper's networks output a probability per pixel; the Cell Tracking
Challenge scores instances. The kit cuts instances as the 4-connected
components of ``P(cell) > threshold`` and removes components smaller than
``min_size`` pixels (:func:`cell_instances`). Touching cells whose separating
border the network only lowered, without taking it below the threshold, come
out as one component; with a ``split_threshold`` each component is split
between its cores ``P(cell) > split_threshold`` along the valleys of P(cell)
(a watershed from those cores, within the component). With
``Recipe.tune_postprocessing`` the values are chosen from a small grid by SEG
on the *training* frames (:func:`tune_postprocessing`; the split threshold
only with ``Recipe.tune_split``); the test frames are never looked at.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from unetlib.errors import UnetlibError
from unetlib.metrics import ctc_seg

__all__ = ["cell_instances", "tune_postprocessing", "TUNE_THRESHOLDS", "TUNE_MIN_SIZES", "TUNE_SPLITS"]

#: The grid searched by :func:`tune_postprocessing`.
TUNE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
TUNE_MIN_SIZES = (0, 20, 50, 100, 200, 400)
TUNE_SPLITS = (None, 0.9, 0.95, 0.98)  # with Recipe.tune_split; None: no splitting


def cell_instances(p_cell: np.ndarray, threshold: float = 0.5, min_size: int = 0,
                   split_threshold: float | None = None) -> np.ndarray:
    """Instance labels from P(cell): 4-connected components of ``p_cell > threshold``.

    With ``split_threshold`` (above ``threshold``) a component holding several
    cores ``p_cell > split_threshold`` is split between them along the valleys
    of P(cell) (a marker watershed); a component without a core stays whole.
    Components smaller than ``min_size`` pixels are removed; labels are
    renumbered 1..n and returned as uint16 (the CTC result format).
    """
    return _remove_small(_components(np.asarray(p_cell), threshold, split_threshold), min_size)


def _components(p_cell: np.ndarray, threshold: float, split_threshold: float | None) -> np.ndarray:
    mask = p_cell > threshold
    if split_threshold is None or split_threshold <= threshold:
        return ndimage.label(mask)[0]

    cores, n = ndimage.label(p_cell > split_threshold)
    labels = watershed(-p_cell, cores, mask=mask, connectivity=1)
    rest, m = ndimage.label(mask & (labels == 0))  # parts of the foreground without a core
    if m:
        labels = np.where(rest > 0, rest + n, labels)
    return labels


def _remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    n = int(labels.max(initial=0))
    if n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= max(min_size, 1)
        keep[0] = False
        remap = np.zeros(n + 1, np.int64)
        remap[keep] = np.arange(1, keep.sum() + 1)
        labels = remap[labels]
    if labels.max(initial=0) > np.iinfo(np.uint16).max:
        raise UnetlibError("more than 65535 objects: cannot be written as a uint16 CTC mask")
    return labels.astype(np.uint16)


def tune_postprocessing(p_cell: np.ndarray, masks: Sequence[np.ndarray],
                        splits: Sequence[float | None] = (None,)) -> tuple[float, int, float | None]:
    """The threshold, minimum size and split threshold (from a small grid) with the best SEG on *training*
    frames.

    ``p_cell`` is the network's P(cell) on the frames it was trained on and
    ``masks`` their annotations; the test sequence is never looked at. Ties go
    to the smaller threshold, then the smaller minimum size, then no (or the
    lower) split threshold.
    """
    reference = {i: np.asarray(m) for i, m in enumerate(masks)}
    best, best_seg = (TUNE_THRESHOLDS[0], TUNE_MIN_SIZES[0], None), -1.0
    for threshold in TUNE_THRESHOLDS:
        for split in splits:
            if split is not None and split <= threshold:
                continue
            components = {i: _components(np.asarray(p_cell[i]), threshold, split) for i in reference}
            for min_size in TUNE_MIN_SIZES:
                found = {i: _remove_small(labels, min_size) for i, labels in components.items()}
                seg = ctc_seg(reference, found).seg
                if seg > best_seg + 1e-12:
                    best, best_seg = (threshold, min_size, split), seg
    return best
