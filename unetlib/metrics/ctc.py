"""The Cell Tracking Challenge segmentation measure SEG (U-Net Table 2, "IOU").

SEG (Maška et al., "A benchmark for comparison of cell tracking algorithms",
Bioinformatics 30(11), 2014; Ulman et al., Nature Methods 14, 2017) as
computed by the organisers' ``SEGMeasure`` and its Java port
(``net.celltrackingchallenge.measures.SEG``): for every reference object R of
every annotated frame, the result object S with ``|R ∩ S| > 0.5 |R|``
(strict; at most one can qualify) is its match, and::

    J(R) = |R ∩ S| / |R ∪ S|   (0 when R has no match)
    SEG  = sum_R J(R) / (number of reference objects)

pooled over all reference objects of all annotated frames. Result objects
without a reference and frames without a ``man_seg`` file have no influence.

This module also reads and writes the challenge's folder layout
(``<seq>_RES/maskTTT.tif``, ``<seq>_GT/SEG/man_segTTT.tif``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unetlib.atomic import write_tiff
from unetlib.errors import UnetlibError
from unetlib.userfiles import read_user_tiff

__all__ = [
    "SEGResult",
    "ctc_seg",
    "read_ctc_gt",
    "read_ctc_results",
    "evaluate_ctc_folder",
    "write_ctc_results",
]

_MASK = re.compile(r"^mask(\d+)\.tiff?$")
_MAN_SEG = re.compile(r"^man_seg(\d+)\.tiff?$")
_MAN_SEG_3D_SLICE = re.compile(r"^man_seg_(\d+)_(\d+)\.tiff?$")


@dataclass(frozen=True)
class SEGResult:
    """SEG of a sequence and its per-object table.

    Attributes
    ----------
    seg : float
        The challenge's SEG in [0, 1].
    n_reference : int
        Number of reference objects over all annotated frames.
    n_matched : int
        Reference objects with a match (``|R ∩ S| > 0.5 |R|``).
    objects : list of dict
        One row per reference object: ``frame``, ``gt_label``,
        ``matched_label`` (0 if none), ``r_size`` = |R|, ``s_size`` = |S|,
        ``intersection`` = |R ∩ S|, ``jaccard`` = J(R), ``covered`` = the
        fraction of R inside the result's foreground (any object).
    foreground_iou : float
        A *different* quantity, not SEG: |GT fg ∩ result fg| / |GT fg ∪ result
        fg| of the binary foregrounds, pixel counts pooled over the annotated
        frames. Unannotated cells count as false positives here.
    """

    seg: float
    n_reference: int
    n_matched: int
    foreground_iou: float
    objects: list[dict[str, Any]] = field(repr=False)

    def table(self):
        """The per-object table as a pandas DataFrame."""
        return pd.DataFrame(self.objects)

    def unmatched(self) -> dict[str, int]:
        """Why reference objects found no match, a diagnosis (not part of SEG).

        ``split``: at least half of R lies in the result's foreground, but no
        single result object holds more than half (cut into pieces);
        ``under_covered``: less than half of R is foreground at all (missed,
        or found only in part).
        """
        rows = [row for row in self.objects if row["matched_label"] == 0]
        split = sum(1 for row in rows if 2 * row["covered"] >= 1)
        return {"unmatched": len(rows), "split": split, "under_covered": len(rows) - split}

    def by_size(self, largest: int) -> dict[str, dict[str, Any]]:
        """Reference objects up to ``largest`` pixels and beyond it, apart (a diagnosis, not part of SEG).

        With ``largest`` = the largest annotated cell of the training data, ``"larger"`` holds the
        test cells bigger than any the network was trained on. Each group: ``cells``, ``matched``
        and ``jaccard`` (its mean J, unmatched cells counting 0; None for an empty group).
        """
        groups = {"within": [r for r in self.objects if r["r_size"] <= largest],
                  "larger": [r for r in self.objects if r["r_size"] > largest]}
        return {name: {"cells": len(rows), "matched": sum(1 for r in rows if r["matched_label"]),
                       "jaccard": float(np.mean([r["jaccard"] for r in rows])) if rows else None}
                for name, rows in groups.items()}

    def merges(self) -> int:
        """Predicted objects that are the match of two or more reference cells (merged neighbours).

        A predicted object S matches a cell R when it covers more than half of
        R, so one object can match several cells that it joins together.
        """
        matches: dict[tuple, int] = {}
        for r in self.objects:
            if r["matched_label"]:
                key = (r["frame"], r["matched_label"])
                matches[key] = matches.get(key, 0) + 1
        return sum(1 for count in matches.values() if count > 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return {
            "SEG": self.seg,
            "n_reference": self.n_reference,
            "n_matched": self.n_matched,
            "foreground_iou": self.foreground_iou,
            "unmatched": self.unmatched(),
            "objects": self.objects,
        }


# ---------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------


def _as_frames(frames, what: str) -> dict[int, np.ndarray]:
    """Mapping frame -> label image, from a mapping or a sequence (index = frame)."""
    if isinstance(frames, Mapping):
        items = frames.items()
    elif isinstance(frames, Sequence) or isinstance(frames, np.ndarray):
        items = enumerate(frames)
    else:
        raise UnetlibError(f"{what} must be a mapping frame -> label image or a sequence, got {type(frames).__name__}")
    return {int(t): _check_label_image(np.asarray(img), f"{what} frame {t}") for t, img in items}


def _check_label_image(image: np.ndarray, what: str) -> np.ndarray:
    if image.ndim != 2:
        raise UnetlibError(f"{what}: expected a 2-D label image, got shape {image.shape}")
    if image.dtype == bool:
        return image.astype(np.uint8)
    if not np.issubdtype(image.dtype, np.integer):
        raise UnetlibError(
            f"{what}: label images must have an integer dtype (e.g. uint16), got {image.dtype}; "
            "label connected components (scipy.ndimage.label) instead of passing probabilities"
        )
    if image.size and image.min() < 0:
        raise UnetlibError(f"{what}: negative labels found; labels must be 0 (background) or positive")
    return image


def _check_frames_match(gt: dict, pred: dict) -> None:
    missing = sorted(set(gt) - set(pred))
    if missing:
        raise UnetlibError(
            f"no result for annotated frame(s) {missing[:10]}; every frame with a GT "
            "segmentation needs a result label image (an empty image if nothing was found)"
        )
    for t in gt:
        if gt[t].shape != pred[t].shape:
            raise UnetlibError(f"frame {t}: result shape {pred[t].shape} differs from GT shape {gt[t].shape}")


# ---------------------------------------------------------------------------
# SEG
# ---------------------------------------------------------------------------


def _frame_objects(frame: int, gt: np.ndarray, pred: np.ndarray) -> list[dict[str, Any]]:
    """Per reference object of one frame: its match and Jaccard index."""
    fg = gt > 0
    # labels renumbered 0..n-1 (0 stays background), so that any label values (up to uint64) pair without overflow
    s_ids, pred = np.unique(pred, return_inverse=True)
    pred = pred.reshape(gt.shape)
    if s_ids[0] != 0:  # no background in the result: index 0 is an object, shift so that 0 means none
        s_ids, pred = np.concatenate([np.zeros(1, s_ids.dtype), s_ids]), pred + 1
    r_ids, r_index, r_sizes = np.unique(gt[fg], return_inverse=True, return_counts=True)
    s_sizes = np.bincount(pred.ravel(), minlength=len(s_ids))
    base = len(s_ids)
    keys, inter = np.unique(r_index.astype(np.int64) * base + pred[fg], return_counts=True)
    pairs = np.stack([keys // base, keys % base])
    rows = []
    for r, r_size in enumerate(r_sizes.tolist()):
        mine = (pairs[0] == r) & (pairs[1] > 0)
        in_foreground = int(inter[mine].sum())
        best_s, best_i = 0, 0
        if mine.any():
            k = int(np.argmax(np.where(mine, inter, -1)))
            best_s, best_i = int(pairs[1, k]), int(inter[k])
        matched = 2 * best_i > r_size  # strict majority of R
        s_size = int(s_sizes[best_s]) if matched else 0
        j = best_i / (r_size + s_size - best_i) if matched else 0.0
        rows.append(dict(
            frame=frame, gt_label=int(r_ids[r]), matched_label=int(s_ids[best_s]) if matched else 0,
            r_size=int(r_size), s_size=s_size, intersection=best_i if matched else 0, jaccard=float(j),
            covered=in_foreground / r_size,
        ))
    return rows


def ctc_seg(gt_frames, pred_frames) -> SEGResult:
    """SEG of a segmentation result against the annotated GT frames.

    Parameters
    ----------
    gt_frames : mapping int -> ndarray, or sequence of ndarray
        Reference label images (0 = background, one positive label per
        object), only for the annotated frames. A sequence is indexed by
        frame number.
    pred_frames : mapping int -> ndarray, or sequence of ndarray
        Result label images (integer dtype); must contain every annotated
        frame (extra frames are ignored).

    Returns
    -------
    SEGResult
        ``.seg`` = sum of J(R) over all reference objects / their number,
        with J(R) = |R∩S| / |R∪S| for the result object S covering more than
        half of R (strict), else 0. ``.foreground_iou`` is the plain binary
        foreground IoU, a different quantity.

    Raises
    ------
    UnetlibError
        Bad label images, a missing result frame, or no reference object at
        all (the Java reference raises here too; py-ctcmetrics returns 0).
    """
    gt = _as_frames(gt_frames, "GT")
    pred = _as_frames(pred_frames, "result")
    _check_frames_match(gt, pred)
    objects = [row for t in sorted(gt) for row in _frame_objects(t, gt[t], pred[t])]
    if not objects:
        raise UnetlibError("no reference (GT) object was found in any annotated frame; SEG is undefined")
    return SEGResult(
        seg=float(sum(row["jaccard"] for row in objects) / len(objects)),
        n_reference=len(objects),
        n_matched=sum(1 for row in objects if row["matched_label"] > 0),
        foreground_iou=_foreground_iou(gt, pred),
        objects=objects,
    )


def _foreground_iou(gt: dict, pred: dict) -> float:
    inter = sum(int(np.count_nonzero((gt[t] > 0) & (pred[t] > 0))) for t in gt)
    union = sum(int(np.count_nonzero((gt[t] > 0) | (pred[t] > 0))) for t in gt)
    return inter / union if union else 1.0


# ---------------------------------------------------------------------------
# The challenge's folder layout
# ---------------------------------------------------------------------------


def _read_label_image(path: Path) -> np.ndarray:
    """A label image, checked (2-D, integer, no negative labels); errors name the file and the fix."""
    try:
        image, _ = read_user_tiff(path, "label image")
        return _check_label_image(image, str(path))
    except UnetlibError as exc:
        raise UnetlibError(f"{exc}; re-export {path.name} as a 2-D uint16 label TIFF") from None


def _numbered_files(folder: Path, pattern: re.Pattern) -> dict[int, Path]:
    """Frame number -> file; two files for one frame (``mask000.tif`` and ``mask0000.tif``) are refused."""
    files: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if m := pattern.match(path.name):
            t = int(m.group(1))
            if t in files:
                raise UnetlibError(f"{folder} holds two files for frame {t} ({files[t].name} and {path.name}): "
                                   "keep one of them")
            files[t] = path
    return files


def read_ctc_gt(gt_dir: str | Path) -> dict[int, np.ndarray]:
    """The annotated GT frames of a sequence: ``<gt_dir>/SEG/man_segTTT.tif`` -> {T: labels}.

    ``gt_dir`` is the ``<seq>_GT`` folder (or its ``SEG`` subfolder).
    """
    gt_dir = Path(gt_dir)
    seg_dir = gt_dir / "SEG" if (gt_dir / "SEG").is_dir() else gt_dir
    if gt_dir.exists() and not gt_dir.is_dir():
        raise UnetlibError(f"GT folder {gt_dir} is a file, not a folder; pass the <seq>_GT folder of the dataset")
    if not seg_dir.is_dir():
        raise UnetlibError(f"GT folder {gt_dir} does not exist; pass the <seq>_GT folder of the dataset")
    if any(_MAN_SEG_3D_SLICE.match(p.name) for p in seg_dir.iterdir()):
        raise UnetlibError(f"{seg_dir} holds 3-D slice annotations (man_seg_TTT_ZZZ.tif); only 2-D datasets are supported")
    files = _numbered_files(seg_dir, _MAN_SEG)
    if not files:
        raise UnetlibError(f"no man_segTTT.tif files in {seg_dir}; pass the <seq>_GT folder of the dataset")
    return {t: _read_label_image(path) for t, path in files.items()}


def read_ctc_results(res_dir: str | Path, frames=None) -> dict[int, np.ndarray]:
    """Result masks ``<res_dir>/maskTTT.tif`` -> {T: labels}.

    Parameters
    ----------
    res_dir : path
        The ``<seq>_RES`` folder.
    frames : iterable of int, optional
        Read only these frames; a missing one raises an error naming the file.
    """
    res_dir = Path(res_dir)
    if res_dir.exists() and not res_dir.is_dir():
        raise UnetlibError(f"result folder {res_dir} is a file, not a folder; pass the <seq>_RES folder of maskTTT.tif")
    if not res_dir.is_dir():
        raise UnetlibError(f"result folder {res_dir} does not exist; write masks with write_ctc_results")
    files = _numbered_files(res_dir, _MASK)
    if frames is not None:
        digits = _digits(files)
        missing = [t for t in frames if t not in files]
        if missing:
            name = res_dir / f"mask{missing[0]:0{digits}d}.tif"
            raise UnetlibError(
                f"missing result mask {name} for an annotated frame "
                f"({len(missing)} missing: {missing[:10]}); write one label image per frame"
            )
        files = {t: files[t] for t in frames}
    return {t: _read_label_image(path) for t, path in files.items()}


def _digits(files: dict[int, Path]) -> int:
    names = [p.stem for p in files.values()]
    return max((len(n) - len("mask") for n in names), default=3)


def evaluate_ctc_folder(res_dir: str | Path, gt_dir: str | Path) -> SEGResult:
    """SEG of a result folder against a GT folder in the challenge's layout.

    ``res_dir`` = ``<seq>_RES`` with ``maskTTT.tif``; ``gt_dir`` = ``<seq>_GT``
    with ``SEG/man_segTTT.tif``. Only annotated frames are read.
    """
    gt = read_ctc_gt(gt_dir)
    pred = read_ctc_results(res_dir, frames=sorted(gt))
    for t in sorted(gt):
        if gt[t].shape != pred[t].shape:
            raise UnetlibError(
                f"result mask of frame {t} in {res_dir} has shape {pred[t].shape} but its GT in {gt_dir} has "
                f"{gt[t].shape}: write masks at the full size of the frames"
            )
    if not any(image.any() for image in gt.values()):
        raise UnetlibError(f"the GT in {gt_dir} holds no object in any annotated frame; SEG is undefined: "
                           "check that it is the dataset's <seq>_GT folder")
    return ctc_seg(gt, pred)


def write_ctc_results(masks, res_dir: str | Path, digits: int = 3) -> list[Path]:
    """Write label images as ``<res_dir>/maskTTT.tif`` (uint16), the challenge's result layout.

    Parameters
    ----------
    masks : mapping int -> ndarray, or sequence of ndarray
        Label image per frame (0 = background).
    res_dir : path
        Created if needed.
    digits : int, default 3
        Zero-padded width of the frame number (3 for the 2-D datasets).

    Returns
    -------
    list of Path
        The files written.
    """
    frames = _as_frames(masks, "mask")
    for t, labels in sorted(frames.items()):  # every frame is checked before anything is written
        if labels.max(initial=0) > np.iinfo(np.uint16).max:
            raise UnetlibError(f"mask frame {t}: label {labels.max()} does not fit uint16; relabel consecutively")
    res_dir = Path(res_dir)
    if res_dir.exists() and not res_dir.is_dir():
        raise UnetlibError(f"result folder {res_dir} is a file, not a folder; give a folder for the masks")
    written = []
    for t, labels in sorted(frames.items()):
        path = res_dir / f"mask{t:0{digits}d}.tif"
        write_tiff(path, labels.astype(np.uint16))  # atomic: a previous mask is only replaced by a complete one
        written.append(path)
    return written
