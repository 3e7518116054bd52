"""``unetlib evaluate``: score a prediction with the challenges' own metrics.

``unetlib evaluate isbi2012 PRED.tif GT.tif [--json]``
    PRED = float32 stack of P(cell) in [0, 1], GT = 8-bit labels (0 membrane),
    both grey-value TIFFs of the same shape, (H, W) or (S, H, W). A 2-class
    probability map (a class axis of size 2 before H, W whose two values sum to
    1, as ``unetlib predict --probabilities`` writes without ``--class``) is
    scored by its class 1, P(cell), and a line says so. A colour TIFF, other
    shapes, or NaN/inf/out-of-range values are refused with one line naming the
    file and the fix.
``unetlib evaluate ctc RES_DIR GT_DIR [--json]``
    RES_DIR/maskTTT.tif against GT_DIR/SEG/man_segTTT.tif (the challenge's layout).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from unetlib.errors import UnetlibError


def register_cli(subparsers) -> None:
    """Add ``evaluate`` with its ``isbi2012`` and ``ctc`` subcommands."""
    parser = subparsers.add_parser("evaluate", help="the challenges' own metrics (ISBI 2012, CTC SEG)")
    sub = parser.add_subparsers(dest="challenge", metavar="CHALLENGE")
    sub.required = True

    isbi = sub.add_parser("isbi2012", help="warping, Rand and pixel error of the 2015 ISBI leaderboard")
    isbi.add_argument("pred", type=Path, help="float TIFF (stack) of P(cell) in [0, 1]")
    isbi.add_argument("gt", type=Path, help="ground-truth TIFF: 0 = membrane, 255 (or 1) = cell")
    isbi.add_argument("--json", action="store_true", help="print one JSON object (with the curves)")
    isbi.add_argument("--self-pairs", choices=("yes", "no"), default="yes",
                      help="Rand pairs include (p, p) (2015 leaderboard, default) or not (pre-2015)")
    isbi.add_argument("--sort-mode", choices=("jan2015", "float"), default="jan2015",
                      help="warping flip order: Jan-2015 comparator (default) or exact float sort")
    isbi.set_defaults(func=_evaluate_isbi2012)

    ctc = sub.add_parser("ctc", help="Cell Tracking Challenge SEG of a result folder")
    ctc.add_argument("res_dir", type=Path, help="<seq>_RES folder with maskTTT.tif")
    ctc.add_argument("gt_dir", type=Path, help="<seq>_GT folder with SEG/man_segTTT.tif")
    ctc.add_argument("--json", action="store_true", help="print one JSON object (with the per-object table)")
    ctc.set_defaults(func=_evaluate_ctc)


_GREY_FIX = {
    "prediction": "save P(cell) as one float32 channel, e.g. `unetlib predict --class 1 --probabilities OUT.tif`",
    "ground-truth": "save the labels as one 8-bit channel (0 = membrane, 255 = cell)",
}


def _read_stack(path: Path, what: str) -> np.ndarray:
    """Decode the TIFF's only series; refuse a missing, unreadable or colour (RGB, axes ``...S``) file."""
    from unetlib.userfiles import read_user_tiff

    array, axes = read_user_tiff(path, f"{what} file")
    if axes.endswith("S"):
        raise UnetlibError(f"{what} file {path} is a colour TIFF (shape {array.shape}, axes {axes}); "
                           f"{_GREY_FIX[what]}")
    return array


#: The class a 2-class probability map is scored by: every two-class network of the kit has
#: class 0 = background (membrane in ISBI 2012) and class 1 = cell, so class 1 is P(cell).
CELL_CLASS = 1
#: How far the two classes of a probability map may sum from 1 (float32 softmax rounding)
_SUM_TOLERANCE = 1e-3


def _cell_probabilities(prob: np.ndarray, gt: np.ndarray, pred_path: Path, gt_path: Path) -> tuple[np.ndarray, bool]:
    """(P(cell) of the shape of ``gt``, whether it was taken from a 2-class map); other shapes are refused.

    A prediction with a class axis of size 2 before H, W whose two values sum to
    1 at every pixel is the probability map ``unetlib predict --probabilities``
    writes: its class :data:`CELL_CLASS` is P(cell).
    """
    if prob.shape == gt.shape:
        return prob, False
    if prob.shape == gt.shape[:-2] + (2,) + gt.shape[-2:]:
        class_axis = prob.ndim - 3
        if np.issubdtype(prob.dtype, np.floating) and np.allclose(prob.sum(axis=class_axis), 1.0,
                                                                  rtol=0, atol=_SUM_TOLERANCE):
            return np.take(prob, CELL_CLASS, axis=class_axis), True
        raise UnetlibError(
            f"prediction {pred_path} has shape {prob.shape}: two maps per pixel of ground truth {gt_path} "
            f"(shape {gt.shape}) that do not sum to 1, so not the probabilities of two classes; give P(cell) "
            f"alone: `unetlib predict --class 1 --probabilities OUT.tif` writes it"
        )
    raise UnetlibError(
        f"prediction {pred_path} has shape {prob.shape}, ground truth {gt_path} shape {gt.shape}; both "
        f"must be (H, W) or (S, H, W) of the same slices at full resolution"
    )


def _check_isbi_values(prob: np.ndarray, pred_path: Path) -> None:
    """A float map must be finite and within [0, 1] (other dtypes: the metric names the fix)."""
    if not np.issubdtype(prob.dtype, np.floating):
        return
    bad = int(np.count_nonzero(~np.isfinite(prob)))
    if bad:
        raise UnetlibError(f"prediction {pred_path} holds {bad} values that are not finite (NaN or inf); "
                           f"fix the model output before scoring")
    lo, hi = float(prob.min()), float(prob.max())
    if lo < 0.0 or hi > 1.0:
        raise UnetlibError(f"prediction {pred_path} spans [{lo}, {hi}], outside [0, 1]; pass P(cell) "
                           f"(the softmax of the cell class), not logits or 0-255 values")


def _evaluate_isbi2012(args: argparse.Namespace) -> int:
    from unetlib.metrics.isbi2012 import isbi2012_errors

    prob = _read_stack(args.pred, "prediction")
    gt = _read_stack(args.gt, "ground-truth")
    _check_isbi_values(prob, args.pred)
    prob, two_class = _cell_probabilities(prob, gt, args.pred, args.gt)
    if two_class:  # on stderr under --json, whose stdout is one JSON object
        print(f"note: {args.pred} holds the probabilities of 2 classes (background, cell); scoring class "
              f"{CELL_CLASS}, P(cell)", file=sys.stderr if args.json else sys.stdout)
    values = np.unique(gt)
    if values.size == 1:  # every error would be 0 whatever the prediction: a wrong file, not a result
        what = "membrane (0) only, no cell" if values[0] == 0 else "cell only, no membrane (0)"
        raise UnetlibError(f"ground truth {args.gt} holds one value ({values[0]:g}): {what}, so every error "
                           "would be 0 whatever the prediction; give the label stack of the predicted slices")
    try:
        result = isbi2012_errors(prob, gt, self_pairs=args.self_pairs == "yes", sort_mode=args.sort_mode)
    except ValueError as exc:  # the metric's own input checks: name the files
        raise UnetlibError(f"{args.pred} against {args.gt}: {exc}") from None
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"ISBI 2012 metrics of {args.pred} against {args.gt} ({prob.shape[0] if prob.ndim == 3 else 1} slices)")
    print(f"  warping error  {result.warping_error:.7f}  (threshold {result.warping_threshold:.1f})")
    print(f"  Rand error     {result.rand_error:.7f}  (threshold {result.rand_threshold:.1f})")
    print(f"  pixel error    {result.pixel_error:.7f}  (threshold {result.pixel_threshold:.1f})")
    return 0


def _evaluate_ctc(args: argparse.Namespace) -> int:
    from unetlib.metrics.ctc import evaluate_ctc_folder

    result = evaluate_ctc_folder(args.res_dir, args.gt_dir)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    frames = len({row["frame"] for row in result.objects})
    print(f"CTC SEG of {args.res_dir} against {args.gt_dir}")
    print(f"  SEG             {result.seg:.6f}  ({result.n_matched}/{result.n_reference} reference objects "
          f"matched, {frames} annotated frames)")
    print(f"  foreground IoU  {result.foreground_iou:.6f}  (binary foreground, not SEG)")
    return 0
