"""The GPU check: every stage runs, each within its time budget, and one archive brings back what it measured.

``python -m benchmarks.gpu_check OUT [--dry-run] [--budget SECONDS]`` (``benchmarks/gpu_check.sh`` sets up
an offline machine first). Stages, each a separate process with its own time limit, run in order
even when an earlier one failed:

1. ``imports``: every module the check needs, numba compiling, PyTorch seeing the GPU;
2. ``cuda_tests``: the CUDA tests (``pytest -m cuda``): tiling on the GPU against the CPU within the
   stated TF32 / bf16 tolerances, an AMP training step, a GPU checkpoint read on the CPU;
3. ``benchmarks``: tiled inference and training speed, peak memory (``benchmarks/gpu.*``);
4. ``learning``: the paper profile (SGD, momentum 0.99, one 572² tile, width 64) for 300 steps on
   PhC-U373 01->02; it passes when the held-out foreground IoU beats both trivial predictors (all
   background, all cell) by 0.05;
5. ``gpu_profile``: the ``gpu`` profile, headless (result files, Table 1, Table 2) with the workers
   its profile files name; it gets the time the others left.

``OUT/status.json`` records each stage's status, seconds and budget; the exit status is 0 only
when every stage passed. Everything a reader needs (logs, status, benchmark tables, the profile's
result files and tables) is packed into ``OUT/gpu_check.tar.gz`` (at most 16 MiB; checkpoints,
caches, example arrays and masks stay behind). ``--dry-run`` runs the same stages on the CPU at
smoke sizes and writes the same layout (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ARCHIVE_LIMIT = 16 * 2**20
#: Stage -> seconds on one H200 (the last stage gets the rest of --budget).
BUDGETS = {"imports": 60, "cuda_tests": 90, "benchmarks": 120, "learning": 120, "gpu_profile": None}
#: What the archive keeps (by suffix) and leaves out (by folder name).
KEEP = (".json", ".md", ".csv", ".tex", ".log", ".txt")
SKIP_DIRS = {"checkpoints", "cache", "__pycache__"}
LEARNING_MARGIN = 0.05

_IMPORTS = """
import importlib, torch
for name in ("numpy", "scipy", "skimage", "numba", "tifffile", "imagecodecs", "yaml", "pandas", "distributed",
             "unetlib.protocols", "unetlib.fanout", "unetlib.study", "unetlib.metrics.isbi2012",
             "unetlib.metrics.ctc", "benchmarks.bench_gpu"):
    importlib.import_module(name)
from unetlib.metrics.isbi2012 import isbi2012_errors  # compiles the numba kernels on a tiny case
import numpy as np
isbi2012_errors(np.full((1, 8, 8), 0.9, np.float32), np.full((1, 8, 8), 255, np.uint8))
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
assert torch.cuda.is_available() or {dry}, "PyTorch sees no CUDA GPU"
"""


def stage_commands(out: Path, dry: bool, python: str) -> dict[str, list[str]]:
    """The command line of every stage (the dry run: CPU, smoke sizes)."""
    bench = ["--device", "cpu", "--width", "4", "--sizes", "256", "--tile", "188", "--repeats", "1",
             "--iterations", "2"] if dry else []
    return {
        "imports": [python, "-c", _IMPORTS.format(dry=dry)],
        "cuda_tests": [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests/test_gpu.py",
                       "tests/test_augment.py"],
        "benchmarks": [python, "-m", "benchmarks.bench_gpu", "--out", str(out / "benchmarks"), *bench],
        "learning": [python, "-m", "benchmarks.gpu_check", "--learning", str(out / "learning")]
                    + (["--dry-run"] if dry else []),
        "gpu_profile": [python, "-m", "unetlib.reproduce", "--profile", "smoke" if dry else "gpu", "--headless",
                        "--no-fetch", "--output-dir", str(out / "profile")],
    }


def run_stages(out: Path, dry: bool, budget: float, python: str = sys.executable) -> dict:
    """Run every stage in order within its budget; return (and write) the status of each."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if dry:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run never touches a GPU, even on a GPU machine
    start, status = time.monotonic(), {}
    for name, command in stage_commands(out, dry, python).items():
        left = budget - (time.monotonic() - start)
        limit = BUDGETS[name] if BUDGETS[name] is not None else left
        limit = max(5.0, min(limit, left))
        began = time.monotonic()
        print(f"== {name} (budget {limit:.0f} s)", flush=True)
        with open(out / f"{name}.log", "w") as log:
            try:
                done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=limit)
                state = "passed" if done.returncode == 0 else f"failed (exit {done.returncode})"
            except subprocess.TimeoutExpired:
                state = f"timed out after {limit:.0f} s"
        seconds = round(time.monotonic() - began, 1)
        status[name] = {"status": state, "seconds": seconds, "budget_s": round(limit)}
        print(f"   {state} in {seconds} s", flush=True)
        _write_json(out / "status.json", {"dry_run": dry, "stages": status,
                                          "total_s": round(time.monotonic() - start, 1)})
    return status


def pack(out: Path, limit: int = ARCHIVE_LIMIT) -> Path:
    """``OUT/gpu_check.tar.gz`` of the logs, status, tables and result files (figures too while they fit)."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and not SKIP_DIRS & set(p.relative_to(out).parts)
                   and p.name != "gpu_check.tar.gz")
    chosen = [p for p in files if p.suffix in KEEP]
    figures = [p for p in files if p.suffix == ".png"]
    archive = out / "gpu_check.tar.gz"
    for extra in (figures, []):  # figures are the first to stay behind when the archive would be too large
        with tarfile.open(archive, "w:gz") as tar:
            for path in chosen + extra:
                tar.add(path, arcname=path.relative_to(out).as_posix())
        if archive.stat().st_size <= limit:
            return archive
    raise SystemExit(f"gpu_check: the archive is {archive.stat().st_size} bytes, over {limit}")


def learning_check(out: Path, dry: bool) -> int:
    """Train the paper profile briefly on PhC-U373 01->02; pass when the held-out foreground IoU beats the
    trivial predictors (all background: 0; all cell: the cell fraction) by :data:`LEARNING_MARGIN`."""
    import numpy as np

    from unetlib import data, protocols, recipe

    if dry:  # the CPU, a tiny network: the same code path (it need not learn at this size)
        r = recipe.preset("PhC-C2DH-U373", "smoke").replace(**{"train.iterations": 40}, tta="none")
    else:
        r = recipe.preset("PhC-C2DH-U373", "paper").replace(**{"train.iterations": 300}, tta="none")
    r = r.replace(tune_postprocessing=False, threshold=0.5, min_size=0)
    result = protocols.ctc_direction(r, "01->02", out, progress=False)
    test = data.load_ctc("PhC-C2DH-U373", "02", tra=False)
    cell_fraction = float(np.mean([(m > 0).mean() for m in test.seg.values()]))
    trivial = max(0.0, cell_fraction)  # all cell: IoU = cell pixels / all pixels; all background: 0
    passed = result.foreground_iou > trivial + LEARNING_MARGIN
    report = {"recipe": r.to_dict(), "foreground_iou": result.foreground_iou, "SEG": result.SEG,
              "trivial_all_background": 0.0, "trivial_all_cell": cell_fraction, "margin": LEARNING_MARGIN,
              "first_loss": result.loss_curve[0][1], "final_loss": result.final_loss, "passed": passed}
    _write_json(out / "learning.json", report)
    print(json.dumps({k: v for k, v in report.items() if k != "recipe"}))
    return 0 if passed else 1


def _write_json(path: Path, payload: dict) -> None:
    from unetlib.atomic import write_text

    write_text(path, json.dumps(payload, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="gpu-check", help="folder for the results and the archive")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU at smoke sizes (the same stages)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all stages (480)")
    parser.add_argument("--learning", metavar="DIR", help=argparse.SUPPRESS)  # stage 4, run as its own process
    args = parser.parse_args(argv)
    if args.learning:
        return learning_check(Path(args.learning), args.dry_run)
    out = Path(args.out)
    status = run_stages(out, args.dry_run, args.budget)
    archive = pack(out)
    print(f"wrote {archive} ({archive.stat().st_size / 2**20:.1f} MiB); stages: "
          + ", ".join(f"{k} {v['status']}" for k, v in status.items()))
    return 0 if all(v["status"] == "passed" for v in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
