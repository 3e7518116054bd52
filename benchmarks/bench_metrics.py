"""Time of the challenges' metrics on full-size data.

- ISBI 2012: pixel, Rand and warping error (and all three in one call) on the
  full 30 x 512 x 512 training stack: GT = ``train-labels.tif``, prediction =
  the GT cell mask smoothed (Gaussian, sigma 2 px) plus Gaussian noise
  (sigma 0.1), clipped to [0, 1], as float32. Goal: all three <= 10 s on a
  2-core machine. The numba compile (first call, cached afterwards) is timed
  separately on one slice.
- CTC SEG on every annotated frame of PhC-C2DH-U373 sequence 01, the
  prediction being the GT with each object eroded, dilated or shifted.

Writes ``reports/benchmarks/metrics.json`` and ``metrics.md``. Run
``python -m benchmarks.bench_metrics`` on a quiet machine, or ``--quick``
(2 slices, 3 frames: checks that the script runs). Needs the real data
(``UNETLIB_DATA``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmarks.common import OUT_DIR, cpu_name, write_report


def data_root() -> Path:
    return Path(os.environ.get("UNETLIB_DATA", Path(__file__).resolve().parents[1] / "data"))


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall-clock seconds of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def isbi_inputs(n_slices: int) -> tuple[np.ndarray, np.ndarray]:
    import tifffile

    gt = tifffile.imread(data_root() / "isbi2012" / "train-labels.tif")[:n_slices]
    rng = np.random.default_rng(0)
    prob = ndimage.gaussian_filter((gt > 0).astype(np.float32), (0, 2, 2))
    prob += rng.normal(0, 0.1, gt.shape).astype(np.float32)
    return np.clip(prob, 0, 1).astype(np.float32), gt


def bench_isbi(n_slices: int, repeats: int) -> list[dict]:
    from unetlib.metrics import isbi2012 as m

    prob, gt = isbi_inputs(n_slices)
    compile_s, _ = timed(lambda: m.isbi2012_errors(prob[:1], gt[:1]), 1)
    rows = [dict(metric="first call, 1 slice (numba compile or cache load)", seconds=compile_s, value=None)]
    for name, fn in [
        ("pixel error", m.pixel_error_curve),
        ("Rand error", m.rand_error_curve),
        ("warping error", m.warping_error_curve),
    ]:
        seconds, curve = timed(lambda f=fn: f(prob, gt), repeats)
        rows.append(dict(metric=name, seconds=seconds, value=curve.error))
    seconds, result = timed(lambda: m.isbi2012_errors(prob, gt), repeats)
    rows.append(dict(metric="all three (isbi2012_errors)", seconds=seconds, value=None))
    for row in rows:
        row["input"] = f"{n_slices}x{gt.shape[1]}x{gt.shape[2]}"
    return rows


def perturb(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros_like(labels)
    for k, i in enumerate(i for i in np.unique(labels) if i):
        obj = labels == i
        if k % 3 == 0:
            obj = ndimage.binary_erosion(obj, iterations=3)
        elif k % 3 == 1:
            obj = ndimage.binary_dilation(obj, iterations=3)
        else:
            obj = np.roll(obj, tuple(rng.integers(-8, 9, 2)), axis=(0, 1))
        out[obj & (out == 0)] = i
    return out


def bench_seg(n_frames: int | None, repeats: int) -> list[dict]:
    from unetlib.metrics.ctc import ctc_seg, read_ctc_gt

    gt = read_ctc_gt(data_root() / "PhC-C2DH-U373" / "01_GT")
    frames = sorted(gt)[:n_frames]
    gt = {t: gt[t] for t in frames}
    rng = np.random.default_rng(0)
    pred = {t: perturb(labels, rng) for t, labels in gt.items()}
    seconds, result = timed(lambda: ctc_seg(gt, pred), repeats)
    return [dict(metric="CTC SEG", seconds=seconds, value=result.seg,
                 input=f"U373 01, {len(frames)} annotated frames, {result.n_reference} objects")]


def markdown(report: dict) -> str:
    lines = [
        "# Metrics benchmark",
        "",
        f"Machine: {report['machine']}, {report['cpus']} CPUs; quick: {report['quick']}; "
        f"median of {report['repeats']} run(s). Goal: all three ISBI errors of a 30x512x512 stack <= 10 s.",
        "",
        "| metric | input | seconds | value |",
        "|---|---|---:|---:|",
    ]
    for row in report["rows"]:
        value = "" if row["value"] is None else f"{row['value']:.6g}"
        lines.append(f"| {row['metric']} | {row['input']} | {row['seconds']:.3f} | {value} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 slices, 3 frames, one run: checks the script")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default reports/benchmarks)")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    rows = bench_isbi(2 if args.quick else 30, repeats) + bench_seg(3 if args.quick else None, repeats)
    report = dict(machine=cpu_name(), cpus=os.cpu_count(),
                  quick=args.quick, repeats=repeats, rows=rows)
    write_report(args.out, "metrics", report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
