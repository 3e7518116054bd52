"""Post-processing: from P(cell) to cell instances, and the choice of its two parameters.

The paper's networks output a probability per pixel; the Cell Tracking
Challenge scores instances. The kit cuts instances as the 4-connected
components of ``P(cell) > threshold`` and removes components smaller than
``min_size`` pixels (:func:`cell_instances`). With
``Recipe.tune_postprocessing`` the two values are chosen from a small grid by
SEG on the *training* frames (:func:`tune_postprocessing`); the test frames
are never looked at.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from unetlib.errors import UnetlibError

__all__ = ["cell_instances", "tune_postprocessing", "TUNE_THRESHOLDS", "TUNE_MIN_SIZES"]

#: The grid searched by :func:`tune_postprocessing`.
TUNE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
TUNE_MIN_SIZES = (0, 20, 50, 100, 200, 400)


def cell_instances(p_cell: np.ndarray, threshold: float = 0.5, min_size: int = 0) -> np.ndarray:
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
    if labels.max(initial=0) > np.iinfo(np.uint16).max:
        raise UnetlibError("more than 65535 objects: cannot be written as a uint16 CTC mask")
    return labels.astype(np.uint16)


def tune_postprocessing(p_cell: np.ndarray, masks: Sequence[np.ndarray]) -> tuple[float, int]:
    """The threshold and minimum size (from a small grid) with the best SEG on *training* frames.

    ``p_cell`` is the network's P(cell) on the frames it was trained on and
    ``masks`` their annotations; the test sequence is never looked at. Ties go
    to the smaller threshold, then the smaller minimum size.
    """
    from unetlib.metrics import ctc_seg

    reference = {i: np.asarray(m) for i, m in enumerate(masks)}
    best, best_seg = (TUNE_THRESHOLDS[0], TUNE_MIN_SIZES[0]), -1.0
    for threshold in TUNE_THRESHOLDS:
        for min_size in TUNE_MIN_SIZES:
            found = {i: cell_instances(p_cell[i], threshold, min_size) for i in reference}
            seg = ctc_seg(reference, found).seg
            if seg > best_seg + 1e-12:
                best, best_seg = (threshold, min_size), seg
    return best
