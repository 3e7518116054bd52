"""``unetlib evaluate``: score a prediction with the challenges' own metrics.

``unetlib evaluate isbi2012 PRED.tif GT.tif [--json]``
    PRED = float32 stack of P(cell) in [0, 1], GT = 8-bit labels (0 membrane).
``unetlib evaluate ctc RES_DIR GT_DIR [--json]``
    RES_DIR/maskTTT.tif against GT_DIR/SEG/man_segTTT.tif (the challenge's layout).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def _read_stack(path: Path, what: str):
    import tifffile

    if not path.is_file():
        raise UnetlibError(f"{what} file {path} not found; check the path")
    try:
        return tifffile.imread(path)
    except Exception as exc:
        raise UnetlibError(f"cannot read {what} file {path} as TIFF: {exc}") from exc


def _evaluate_isbi2012(args: argparse.Namespace) -> int:
    from unetlib.metrics.isbi2012 import isbi2012_errors

    prob = _read_stack(args.pred, "prediction")
    gt = _read_stack(args.gt, "ground-truth")
    result = isbi2012_errors(prob, gt, self_pairs=args.self_pairs == "yes", sort_mode=args.sort_mode)
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
