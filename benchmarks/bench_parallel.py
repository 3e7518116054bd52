"""Two networks at a time or one: training throughput of the ways to use the cores.

The cpu profile trains several networks (folds, directions, seeds). On a
machine with few cores they can train one after another, each with every core
(``WORKERS = 0``), or side by side, each with its share (``WORKERS = N``, a
local Dask cluster). This measures the full training loop
(:func:`unetlib.train.train` on DIC-HeLa sequence 01 with the profile's recipe
and tile) in three ways, after ``--skip`` warm-up steps:

- *serial*: one process with all cores;
- *processes*: ``workers`` plain processes at once, ``cores / workers`` threads each;
- *dask*: the kit's runner (:func:`unetlib.fanout.runner`), the same split.

Reported: median seconds per step of each network, and steps per second of the
machine (the sum over the networks trained at once). Writes
``reports/benchmarks/parallel.json`` and ``.md``. Needs the DIC-HeLa dataset.

``python -m benchmarks.bench_parallel [--steps 80] [--workers 2] [--dataset DIC-C2DH-HeLa]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys

import numpy as np

from benchmarks.common import OUT_DIR, cpu_name, write_report


def step_seconds(dataset: str, steps: int, skip: int, threads: int | None = None, progress: bool = False) -> float:
    """Median seconds per step of the profile's training loop, after ``skip`` steps."""
    import torch

    from unetlib import data, recipe, trainset
    from unetlib.train import train

    if threads:
        torch.set_num_threads(threads)
    r = recipe.preset(dataset, "cpu").replace(**{"train.iterations": steps})
    seq = data.load_ctc(dataset, "01", tra=r.ignore_unannotated)
    frames = sorted(seq.seg)
    markers = [seq.tra[t] for t in frames] if r.ignore_unannotated else None
    d = trainset.training_data(r, [seq.frames[t] for t in frames], [seq.seg[t] for t in frames], markers)
    run = train(d.inputs, d.targets, d.weights, r.train, progress=False)
    times = np.diff([0.0] + [h[2] for h in run.history])
    return float(np.median(times[skip:]))


def _in_process(args):
    return step_seconds(*args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="DIC-C2DH-HeLa", choices=("DIC-C2DH-HeLa", "PhC-C2DH-U373"))
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--skip", type=int, default=20, help="warm-up steps left out of the median")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a few steps: checks that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.skip = 6, 2
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.workers)
    job = (args.dataset, args.steps, args.skip)
    rows = [{"way": "serial", "networks": 1, "threads each": cores,
             "s/step": [step_seconds(*job, threads=cores)]}]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        rows.append({"way": "processes", "networks": args.workers, "threads each": threads,
                     "s/step": pool.map(_in_process, [(*job, threads)] * args.workers)})
    from unetlib import fanout

    run = fanout.runner(args.workers)
    rows.append({"way": "dask (unetlib.fanout)", "networks": args.workers, "threads each": threads,
                 "s/step": run(step_seconds, [dict(dataset=args.dataset, steps=args.steps, skip=args.skip)]
                               * args.workers)})
    for row in rows:
        row["machine steps/s"] = float(sum(1.0 / s for s in row["s/step"]))
    base = rows[0]["machine steps/s"]
    lines = [f"# Two networks at a time or one ({cpu_name()}, {cores} cores)", "",
             f"Full training loop, {args.dataset} cpu recipe, median of steps {args.skip + 1}-{args.steps} "
             f"(`python -m benchmarks.bench_parallel`).", "",
             "| way | networks at once | threads each | s per step (each) | steps per second (machine) | vs serial |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        each = ", ".join(f"{s:.3f}" for s in row["s/step"])
        lines.append(f"| {row['way']} | {row['networks']} | {row['threads each']} | {each} | "
                     f"{row['machine steps/s']:.2f} | {row['machine steps/s'] / base:.2f}x |")
    write_report(OUT_DIR, "parallel", {"dataset": args.dataset, "steps": args.steps, "skip": args.skip,
                                       "rows": rows}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
