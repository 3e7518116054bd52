"""The ISBI 2012 EM segmentation challenge's own metrics (U-Net Table 1).

Three errors, each computed per 2-D slice, pooled over the stack
(micro-average) and optimised over a fixed list of thresholds, exactly as the
challenge server scored the 2015 leaderboard that U-Net quotes:

* **pixel error** = 1 - max_t F(t) of the cell-class pixel classification;
* **Rand error** = 1 - max_t F(t) of the *foreground-restricted* Rand index;
* **warping error** = min_t (split + merge pixels after warping the ground
  truth towards the thresholded prediction) / (number of pixels).

The server used the metric classes of Fiji's *Trainable Weka Segmentation*
(``trainableSegmentation.metrics``, release 2.1.8 of January 2015, author
I. Arganda-Carreras), described in Arganda-Carreras et al., "Crowdsourcing
the creation of image segmentation algorithms for connectomics",
Front. Neuroanat. 9:142 (2015). The warping error follows Jain et al.,
"Boundary learning by optimization with topological constraints", CVPR 2010.
The implementation here follows the kit's specification of that code
(``docs/metrics.md``) and reproduces the organisers' outputs bit for bit.

Conventions: ``prob`` is P(cell) in [0, 1] (0 = certainly membrane); ``gt`` is
0 for membrane and one positive value (1 or 255) for cell. A prediction
pixel is cell at threshold t iff ``prob > t``, compared in double precision.

This module checks the inputs and pools the three errors over slices and
thresholds; the warp of one slice (with the replica of Java 6's merge sort
that orders its flips) is :mod:`unetlib.metrics.warping`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit
from scipy import ndimage
from tqdm import tqdm

from unetlib.errors import UnetlibError
from unetlib.metrics.warping import SIMPLE_POINT_TABLE as SIMPLE_POINT_TABLE  # re-exported: one of this module's names
from unetlib.metrics.warping import SORT_MODES, warping_counts

__all__ = [
    "PIXEL_RAND_THRESHOLDS",
    "WARPING_THRESHOLDS",
    "SORT_MODES",
    "java_thresholds",
    "f_score",
    "ErrorCurve",
    "ISBI2012Result",
    "pixel_error_curve",
    "rand_error_curve",
    "warping_error_curve",
    "isbi2012_errors",
]

def java_thresholds(start: float, stop: float, step: float) -> np.ndarray:
    """Thresholds generated like the organisers' Java loop ``for (t = start; t <= stop; t += step)``.

    The loop runs in double precision, so rounding accumulates
    (0.30000000000000004, ..., 0.9999999999999999).
    """
    values = []
    t = float(start)
    while t <= stop:
        values.append(t)
        t += step
    return np.array(values, dtype=np.float64)


#: The 11 thresholds of the pixel and Rand errors, ``0.0 ... 0.9999999999999999``.
PIXEL_RAND_THRESHOLDS = java_thresholds(0.0, 1.0, 0.1)
#: The 10 thresholds of the warping error, ``0.0 ... 0.8999999999999999``.
WARPING_THRESHOLDS = java_thresholds(0.0, 0.9, 0.1)


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCurve:
    """One metric evaluated at every threshold of its list.

    Attributes
    ----------
    name : str
        ``"pixel"``, ``"rand"`` or ``"warping"``.
    thresholds : ndarray of float64, shape (T,)
    values : ndarray of float64, shape (T,)
        F-score per threshold (pixel, Rand) or warping error per threshold.
    error : float
        ``1 - max(values)`` (pixel, Rand) or ``min(values)`` (warping).
    best_threshold : float
        The first threshold reaching the optimum.
    per_slice : dict of str to ndarray, each of shape (S, T)
        The counts behind ``values`` for each slice: ``tp``, ``fp``, ``fn``
        (pixels or pixel pairs) or ``splits``, ``merges`` (pixels).
    """

    name: str
    thresholds: np.ndarray
    values: np.ndarray
    error: float
    best_threshold: float
    per_slice: dict[str, np.ndarray] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (arrays become lists)."""
        return {
            "name": self.name,
            "thresholds": self.thresholds.tolist(),
            "values": self.values.tolist(),
            "error": float(self.error),
            "best_threshold": float(self.best_threshold),
            "per_slice": {k: v.tolist() for k, v in self.per_slice.items()},
        }


@dataclass(frozen=True)
class ISBI2012Result:
    """The three ISBI 2012 errors of one stack, with their curves.

    Attributes
    ----------
    warping_error, rand_error, pixel_error : float
        The leaderboard numbers (lower is better).
    warping_threshold, rand_threshold, pixel_threshold : float
        The threshold at which each optimum was reached (chosen independently).
    thresholds : ndarray, shape (11,)
        Thresholds of the pixel and Rand curves.
    warping_thresholds : ndarray, shape (10,)
        Thresholds of the warping curve.
    pixel_f, rand_f : ndarray, shape (11,)
        F-score per threshold.
    warping_splits, warping_merges : ndarray of int64, shape (10,)
        Split and merge pixels per threshold, summed over slices.
    warping_curve : ndarray, shape (10,)
        ``(splits + merges) / (S * H * W)`` per threshold.
    per_slice : dict of str to ndarray
        ``pixel_tp/fp/fn``, ``rand_tp/fp/fn`` of shape (S, 11) and
        ``warping_splits/merges`` of shape (S, 10).
    settings : dict
        The options used (``self_pairs``, ``sort_mode``, ...).
    """

    warping_error: float
    rand_error: float
    pixel_error: float
    warping_threshold: float
    rand_threshold: float
    pixel_threshold: float
    thresholds: np.ndarray
    warping_thresholds: np.ndarray
    pixel_f: np.ndarray
    rand_f: np.ndarray
    warping_splits: np.ndarray
    warping_merges: np.ndarray
    warping_curve: np.ndarray
    per_slice: dict[str, np.ndarray] = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (arrays become lists)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, np.ndarray):
                out[key] = value.tolist()
            elif key == "per_slice":
                out[key] = {k: v.tolist() for k, v in value.items()}
            else:
                out[key] = value
        return out


# ---------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------


def _as_stack(prob: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``prob`` and ``gt``; return ``(prob, gt_cell)`` as (S, H, W) stacks."""
    prob, gt = np.asarray(prob), np.asarray(gt)
    _check_shapes(prob, gt)
    prob = _check_probabilities(prob)
    gt_cell = _binary_ground_truth(gt)
    if prob.ndim == 2:
        prob, gt_cell = prob[None], gt_cell[None]
    return prob, gt_cell


def _check_shapes(prob: np.ndarray, gt: np.ndarray) -> None:
    if prob.shape != gt.shape:
        raise UnetlibError(
            f"prediction shape {prob.shape} differs from ground-truth shape {gt.shape}; "
            "pass the probability map of the same slices at full resolution"
        )
    if prob.ndim not in (2, 3) or prob.size == 0:
        raise UnetlibError(
            f"expected one slice (H, W) or a stack (S, H, W), got shape {prob.shape}"
        )


def _check_probabilities(prob: np.ndarray) -> np.ndarray:
    if prob.dtype == np.float16:  # exact in float32
        prob = prob.astype(np.float32)
    if prob.dtype not in (np.float32, np.float64):
        fix = ("convert 8-bit maps with prob = image / 255.0" if prob.dtype == np.uint8 else
               "save P(cell) as float32 values in [0, 1]")
        raise UnetlibError(
            f"prediction must be a float32/float64 map of P(cell) in [0, 1], got dtype {prob.dtype}; {fix}"
        )
    if np.isnan(prob).any():
        raise UnetlibError("prediction contains NaN; fix the model output before scoring")
    lo, hi = float(prob.min()), float(prob.max())
    if lo < 0.0 or hi > 1.0:
        raise UnetlibError(
            f"prediction values span [{lo}, {hi}], outside [0, 1]; pass P(cell) "
            "(e.g. the softmax of the cell channel), not logits or 0-255 values"
        )
    return prob


def _binary_ground_truth(gt: np.ndarray) -> np.ndarray:
    if gt.dtype == bool:
        return gt
    if not (np.issubdtype(gt.dtype, np.integer) or np.issubdtype(gt.dtype, np.floating)):
        raise UnetlibError(f"ground truth must be a numeric image, got dtype {gt.dtype}")
    values = np.unique(gt)
    if values.size > 2 or (values < 0).any() or np.isnan(values).any():
        shown = values[:6].tolist()
        raise UnetlibError(
            f"ground truth must be binary (0 = membrane, one positive value such as 1 or 255 "
            f"= cell); found {values.size} distinct values {shown}; for a label image "
            "use the CTC SEG metric, or binarise with gt > 0"
        )
    if values.size == 2 and values[0] != 0:
        raise UnetlibError(
            f"ground truth values {values.tolist()} have no 0 (membrane); "
            "expected 0 for membrane and one positive value for cell"
        )
    return gt > 0


def _check_options(sort_mode: str, warping_radius: int) -> None:
    if sort_mode not in SORT_MODES:
        raise UnetlibError(f"sort_mode must be one of {SORT_MODES}, got {sort_mode!r}")
    if int(warping_radius) != warping_radius:
        raise UnetlibError(f"warping_radius must be an integer number of pixels, got {warping_radius!r}")


# ---------------------------------------------------------------------------
# F-score and curves
# ---------------------------------------------------------------------------


def f_score(tp, fp, fn) -> np.ndarray:
    """F1 as the organisers compute it (``ClassificationStatistics``).

    ``precision = 1 if fp == 0 else tp / (tp + fp)``,
    ``recall = 1 if fn == 0 else tp / (tp + fn)``,
    ``F = 2 P R / (P + R)``, or 0 when ``P + R == 0``.
    Counts may be arrays (element-wise).
    """
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(fp == 0, 1.0, tp / (tp + fp))
        recall = np.where(fn == 0, 1.0, tp / (tp + fn))
        f = np.where(precision + recall == 0, 0.0, 2 * precision * recall / (precision + recall))
    return f


def _best_of(values: np.ndarray, thresholds: np.ndarray, maximise: bool) -> tuple[float, float]:
    """Running optimum with a strict comparison: the first optimiser wins."""
    best, best_t = (0.0, thresholds[0]) if maximise else (np.inf, thresholds[0])
    for value, t in zip(values, thresholds):
        if (value > best) if maximise else (value < best):
            best, best_t = float(value), float(t)
    return best, float(best_t)


def _f_curve(name: str, counts: np.ndarray, thresholds: np.ndarray) -> ErrorCurve:
    """Pool per-slice (tp, fp, fn) counts of shape (S, T, 3) into an F curve."""
    tp, fp, fn = counts.sum(axis=0).T
    values = f_score(tp, fp, fn)
    best_f, best_t = _best_of(values, thresholds, maximise=True)
    per_slice = {"tp": counts[..., 0], "fp": counts[..., 1], "fn": counts[..., 2]}
    return ErrorCurve(name, thresholds.copy(), values, 1.0 - best_f, best_t, per_slice)


def _warping_curve(counts: np.ndarray, thresholds: np.ndarray, n_pixels: int) -> ErrorCurve:
    """Pool per-slice (splits, merges) of shape (S, T, 2) into a warping curve."""
    values = counts.sum(axis=(0, 2)) / float(n_pixels)
    best, best_t = _best_of(values, thresholds, maximise=False)
    per_slice = {"splits": counts[..., 0], "merges": counts[..., 1]}
    return ErrorCurve("warping", thresholds.copy(), values, best, best_t, per_slice)


def _map_slices(per_slice, n: int, progress: bool, desc: str) -> list:
    """``[per_slice(s) for s in range(n)]``, slices spread over the CPU cores.

    The numba kernels release the GIL, so threads run slices in parallel;
    results keep slice order.
    """
    workers = max(1, min(n, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(per_slice, range(n))
        if progress:
            results = tqdm(results, total=n, desc=desc, unit="slice")
        return list(results)


# ---------------------------------------------------------------------------
# Pixel error (A.2)
# ---------------------------------------------------------------------------


def _pixel_counts(prob: np.ndarray, gt_cell: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(tp, fp, fn) per threshold for one slice, shape (T, 3)."""
    p = prob.astype(np.float64)
    n_gt = int(gt_cell.sum())
    out = np.zeros((len(thresholds), 3), dtype=np.int64)
    for k, t in enumerate(thresholds):
        pred = p > t
        tp = int(np.count_nonzero(pred & gt_cell))
        out[k] = tp, int(np.count_nonzero(pred)) - tp, n_gt - tp
    return out


def pixel_error_curve(prob, gt, *, progress: bool = False) -> ErrorCurve:
    """Pixel error = 1 - maximal F-score of pixel similarity (Fiji ``PixelError``).

    For each of the 11 thresholds t in ``PIXEL_RAND_THRESHOLDS`` the cell class
    is the positive class: TP = #(prob > t and gt > 0), FP = #(prob > t and
    gt == 0), FN = #(prob <= t and gt > 0), summed over all slices; then
    ``F(t)`` as in :func:`f_score` and ``error = 1 - max_t F(t)``
    (``getPixelErrorMaximalFScore(0.0, 1.0, 0.1)``).

    Parameters
    ----------
    prob : ndarray, (H, W) or (S, H, W), float32 or float64
        P(cell) in [0, 1].
    gt : ndarray, same shape
        0 = membrane, one positive value = cell.
    progress : bool, default False
        Show a progress bar over slices.
    """
    prob, gt_cell = _as_stack(prob, gt)
    counts = np.stack(
        _map_slices(lambda s: _pixel_counts(prob[s], gt_cell[s], PIXEL_RAND_THRESHOLDS), len(prob), progress, "pixel")
    )
    return _f_curve("pixel", counts, PIXEL_RAND_THRESHOLDS)


# ---------------------------------------------------------------------------
# Rand error (A.3)
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _rand_sums(gt_labels, pred_labels, n_gt, n_pred):  # pragma: no cover - numba
    """Pair sums of the contingency table restricted to GT foreground.

    Returns ``(sum_ij c_ij^2 for j >= 1, sum_i a_i^2, sum_j b_j^2 for j >= 1,
    z = #pixels with GT label >= 1 and prediction label 0, n)``.
    """
    row = np.zeros(n_gt + 1, np.int64)
    col = np.zeros(n_pred + 2, np.int64)
    z = 0
    n = 0
    for q in range(gt_labels.size):
        i = gt_labels[q]
        if i == 0:
            continue
        n += 1
        row[i] += 1
        j = pred_labels[q]
        if j == 0:
            z += 1
        else:
            col[j + 1] += 1
    # counting sort of the (i >= 1, j >= 1) pixels by prediction label
    sum_b = 0
    for j in range(1, n_pred + 1):
        sum_b += col[j + 1] * col[j + 1]
        col[j + 1] += col[j]
    order = np.empty(col[n_pred + 1], np.int32)
    fill = col.copy()
    for q in range(gt_labels.size):
        i = gt_labels[q]
        j = pred_labels[q]
        if i != 0 and j != 0:
            order[fill[j]] = i
            fill[j] += 1
    scratch = np.zeros(n_gt + 1, np.int64)
    sum_c = 0
    for j in range(1, n_pred + 1):
        for k in range(col[j], col[j + 1]):
            scratch[order[k]] += 1
        for k in range(col[j], col[j + 1]):
            c = scratch[order[k]]
            if c > 0:
                sum_c += c * c
                scratch[order[k]] = 0
    sum_a = 0
    for i in range(1, n_gt + 1):
        sum_a += row[i] * row[i]
    return sum_c, sum_a, sum_b, z, n


def _rand_counts(prob: np.ndarray, gt_cell: np.ndarray, thresholds: np.ndarray, self_pairs: bool) -> np.ndarray:
    """(tp, fp, fn) pixel-pair counts per threshold for one slice, shape (T, 3)."""
    p = prob.astype(np.float64)
    gt_labels, n_gt = ndimage.label(gt_cell)
    out = np.zeros((len(thresholds), 3), dtype=np.int64)
    for k, t in enumerate(thresholds):
        pred_labels, n_pred = ndimage.label(p > t)
        sum_c, sum_a, sum_b, z, n = _rand_sums(gt_labels.ravel(), pred_labels.ravel(), n_gt, n_pred)
        c, a, b = sum_c + z, sum_a, sum_b + z
        if not self_pairs:
            c, a, b = c - n, a - n, b - n
        out[k] = c, b - c, a - c
    return out


def rand_error_curve(prob, gt, *, self_pairs: bool = True, progress: bool = False) -> ErrorCurve:
    """Foreground-restricted Rand error (Fiji ``RandError.getForegroundRestrictedRandIndexMaximalFScore``).

    At each of the 11 thresholds, per slice: GT segments = 4-connected
    components of gt > 0; predicted segments = 4-connected components of
    prob > t. Only GT-foreground pixels count (the GT zero component is
    excluded); predicted-membrane pixels inside it are singletons. With the
    contingency table c_ij (GT segment i >= 1, predicted segment j, j = 0 for
    membrane), a_i = sum_j c_ij, b_j = sum_i c_ij and z = sum_i c_i0::

        C = sum_{i, j>=1} c_ij^2 + z,  A = sum_i a_i^2,  B = sum_{j>=1} b_j^2 + z
        TP = C,  FP = B - C,  FN = A - C

    summed over slices, ``F(t)`` as in :func:`f_score` (= 2C / (A + B)), and
    ``error = 1 - max_t F(t)``.

    Parameters
    ----------
    prob, gt : ndarray
        As in :func:`pixel_error_curve`.
    self_pairs : bool, default True
        True: ordered pixel pairs including (p, p) ("N^2" normalisation of the
        2015 leaderboard). False: unordered pairs of distinct pixels (code
        before 2015-01-12); C, A, B each lose n = #GT-foreground pixels.
    progress : bool, default False
        Show a progress bar over slices.
    """
    prob, gt_cell = _as_stack(prob, gt)
    counts = np.stack(
        _map_slices(
            lambda s: _rand_counts(prob[s], gt_cell[s], PIXEL_RAND_THRESHOLDS, self_pairs), len(prob), progress, "rand"
        )
    )
    return _f_curve("rand", counts, PIXEL_RAND_THRESHOLDS)


# ---------------------------------------------------------------------------
# Warping error (A.5): the warp of one slice is in warping.py
# ---------------------------------------------------------------------------


def warping_error_curve(
    prob,
    gt,
    *,
    sort_mode: str = "jan2015",
    fiji_uniform_slice_quirk: bool = False,
    warping_radius: int = 20,
    progress: bool = False,
) -> ErrorCurve:
    """Minimum-splits-and-mergers warping error (Fiji ``WarpingError``, Jain et al. 2010).

    For each of the 10 thresholds t in ``WARPING_THRESHOLDS`` and each slice,
    the GT cell mask L is warped towards T = (prob > t) by flipping, in
    decreasing order of ``|prob - t|``, mismatched pixels that are simple
    points (cell 4-adjacency, membrane 8-adjacency), pass after pass until a
    pass flips nothing. Each remaining mismatch is classified from the
    4-connected components around it; only topological *splits* and
    *merges* count (not holes or object additions/deletions), one per pixel::

        warping(t) = sum_slices (#split + #merge pixels) / (S * H * W)
        error = min_t warping(t)

    (``getMinimumSplitsAndMergersErrorValue(0.0, 0.9, 0.1, false, 20)``).

    Parameters
    ----------
    prob, gt : ndarray
        As in :func:`pixel_error_curve`.
    sort_mode : {"jan2015", "float"}, default "jan2015"
        Order of the flips within a pass. ``"jan2015"``: the comparator
        ``(int)((z2 - z1) * 10000)`` of the January 2015 release under Java 6's
        merge sort (zvals closer than ~1e-4 tie and keep column-major order),
        as on the 2015 leaderboard. ``"float"``: exact stable descending sort
        (Fiji from June 2015 on).
    fiji_uniform_slice_quirk : bool, default False
        Reproduce Fiji's scoring of a GT slice without any membrane pixel
        (all its mismatches count 0). Off: such slices are scored like any other.
    warping_radius : int, default 20
        Radius (pixels) of the (2r+1)^2 window of the split test for a cell
        pixel touching membrane and one component; r < 1 or r larger than the
        image uses the whole image.
    progress : bool, default False
        Show a progress bar over slices.
    """
    _check_options(sort_mode, warping_radius)
    prob, gt_cell = _as_stack(prob, gt)
    def per_slice(s: int) -> np.ndarray:
        return warping_counts(
            prob[s], gt_cell[s], WARPING_THRESHOLDS, sort_mode, warping_radius, fiji_uniform_slice_quirk
        )

    counts = np.stack(_map_slices(per_slice, len(prob), progress, "warping"))
    return _warping_curve(counts, WARPING_THRESHOLDS, prob.size)


# ---------------------------------------------------------------------------
# All three
# ---------------------------------------------------------------------------


def isbi2012_errors(
    prob,
    gt,
    *,
    self_pairs: bool = True,
    sort_mode: str = "jan2015",
    fiji_uniform_slice_quirk: bool = False,
    warping_radius: int = 20,
    progress: bool = False,
) -> ISBI2012Result:
    """The three errors of the ISBI 2012 leaderboard of 2015 (U-Net Table 1).

    Equivalent to the organisers' script of 2015-01-22: warping error
    (:func:`warping_error_curve`), foreground-restricted Rand error
    (:func:`rand_error_curve`) and pixel error (:func:`pixel_error_curve`),
    each with its own best threshold. The defaults reproduce the leaderboard.

    Parameters
    ----------
    prob : ndarray, (H, W) or (S, H, W), float32 or float64
        P(cell) in [0, 1] (0 = membrane), e.g. the cell-channel softmax.
    gt : ndarray, same shape
        0 = membrane, one positive value (1 or 255) = cell.
    self_pairs : bool, default True
        Rand error pair counting (see :func:`rand_error_curve`).
    sort_mode : {"jan2015", "float"}, default "jan2015"
        Warping flip order (see :func:`warping_error_curve`).
    fiji_uniform_slice_quirk : bool, default False
        See :func:`warping_error_curve`.
    warping_radius : int, default 20
        See :func:`warping_error_curve`.
    progress : bool, default False
        Show a progress bar over slices.

    Returns
    -------
    ISBI2012Result

    Examples
    --------
    >>> gt = np.full((8, 8), 255, np.uint8); gt[:, 4] = 0
    >>> isbi2012_errors((gt > 0).astype(np.float32), gt).rand_error
    0.0
    """
    _check_options(sort_mode, warping_radius)
    prob, gt_cell = _as_stack(prob, gt)

    def per_slice(s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            _pixel_counts(prob[s], gt_cell[s], PIXEL_RAND_THRESHOLDS),
            _rand_counts(prob[s], gt_cell[s], PIXEL_RAND_THRESHOLDS, self_pairs),
            warping_counts(
                prob[s], gt_cell[s], WARPING_THRESHOLDS, sort_mode, warping_radius, fiji_uniform_slice_quirk
            ),
        )

    pixel, rand, warp = zip(*_map_slices(per_slice, len(prob), progress, "isbi2012"))
    pixel_curve = _f_curve("pixel", np.stack(pixel), PIXEL_RAND_THRESHOLDS)
    rand_curve = _f_curve("rand", np.stack(rand), PIXEL_RAND_THRESHOLDS)
    warp_curve = _warping_curve(np.stack(warp), WARPING_THRESHOLDS, prob.size)
    return _combine(pixel_curve, rand_curve, warp_curve, dict(
        self_pairs=self_pairs, sort_mode=sort_mode,
        fiji_uniform_slice_quirk=fiji_uniform_slice_quirk, warping_radius=int(warping_radius),
    ))


def _combine(pixel: ErrorCurve, rand: ErrorCurve, warp: ErrorCurve, settings: dict) -> ISBI2012Result:
    per_slice = {f"pixel_{k}": v for k, v in pixel.per_slice.items()}
    per_slice |= {f"rand_{k}": v for k, v in rand.per_slice.items()}
    per_slice |= {f"warping_{k}": v for k, v in warp.per_slice.items()}
    return ISBI2012Result(
        warping_error=warp.error,
        rand_error=rand.error,
        pixel_error=pixel.error,
        warping_threshold=warp.best_threshold,
        rand_threshold=rand.best_threshold,
        pixel_threshold=pixel.best_threshold,
        thresholds=pixel.thresholds,
        warping_thresholds=warp.thresholds,
        pixel_f=pixel.values,
        rand_f=rand.values,
        warping_splits=warp.per_slice["splits"].sum(axis=0),
        warping_merges=warp.per_slice["merges"].sum(axis=0),
        warping_curve=warp.values,
        per_slice=per_slice,
        settings=settings,
    )
