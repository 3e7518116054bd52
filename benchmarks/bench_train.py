"""Training throughput: the full loop of :func:`unetlib.train.train` against the bare step.

For each width and tile edge, at one tile per step (batch 1; 572 x 572 is the
paper's setting, ``--tiles 508 --optimizer adam --widths 16`` the cpu profile's):

- *bare step*: forward + weighted cross entropy + backward + optimiser step
  (SGD with momentum 0.99, or Adam) on one pre-made tile, in channels_last
  with the kit's autocast, freed buffers reused as the loop reuses them
  (:func:`unetlib.runtime.reuse_freed_memory`); also measured without the
  reuse, in a fresh process (glibc's own handling: the large buffers of a
  step faulted in afresh whenever glibc gave them back);
- *full loop*: :func:`unetlib.train.train` on synthetic 512 x 512 images
  (a fresh augmented tile every step, drawn as the loop draws it on this
  device; loss check, history, progress off, no checkpoints).

The overhead is ``full / bare - 1`` in time per iteration (goal: <= 10 %),
the median over ``--rounds`` alternating measurements of both;
output pixels per second (the full loop's) compare tile sizes.
Writes ``reports/benchmarks/train.json`` and ``train.md``.

Run ``python -m benchmarks.bench_train`` (widths 64, 32, 16) or ``--quick``
(width 8, a couple of iterations: checks that the script runs). ``make bench``
also runs the cpu profile's size as ``train_cpu_profile``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from scipy import ndimage

from benchmarks.common import OUT_DIR, cpu_name, write_report
from unetlib.augment import AugmentParams, random_tile
from unetlib.model import UNet, check_input_size, output_size
from unetlib.recipe import Recipe
from unetlib.runtime import amp_dtype, autocast, pick_device, reuse_freed_memory, to_channels_last
from unetlib.train import TrainConfig, train, weighted_cross_entropy
from unetlib.trainset import training_data

TILE = 572  # the paper's training tile, the default of --tiles


def synthetic_cells(n: int, size: int = 512, seed: int = 0):
    """Images and instance masks of blob-shaped 'cells' (the content does not change the cost)."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(n):
        smooth = ndimage.gaussian_filter(rng.normal(size=(size, size)), 8)
        masks.append(ndimage.label(smooth > 0.02)[0].astype(np.int32))
        images.append(np.clip(128 + 2000 * smooth + rng.normal(0, 10, (size, size)), 0, 255).astype(np.uint8))
    return images, masks


def bare_step_seconds(width: int, device: torch.device, tile: tuple, iterations: int, warmup: int,
                      optimizer_name: str = "sgd", reuse: bool = True) -> tuple[list[float], float]:
    """Seconds per bare training step on one pre-made tile (after ``warmup`` steps), and the page
    faults per timed step; ``reuse``: freed buffers kept for the next step, as the loop does."""
    torch.manual_seed(0)
    model = to_channels_last(UNet(width=width), device).train()
    if optimizer_name == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    x, y, w = (t[None].to(device) for t in tile)
    x = x.contiguous(memory_format=torch.channels_last)
    times, faults = [], 0
    with reuse_freed_memory(device) if reuse else contextlib.nullcontext():
        for i in range(warmup + iterations):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, True):
                logits = model(x)
            loss = weighted_cross_entropy(logits, y, w)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
                faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return times, faults / iterations


def bare_step_without_reuse(width: int, tile_size: int, iterations: int, warmup: int,
                            optimizer_name: str) -> tuple[list[float], float]:
    """:func:`bare_step_seconds` without buffer reuse, in a fresh process: once a process has left
    a reuse block, glibc keeps the settings it left behind, not its own adaptive thresholds."""
    code = (f"import json; from benchmarks.bench_train import _bare_in_this_process as f; "
            f"print(json.dumps(f({width}, {tile_size}, {iterations}, {warmup}, {optimizer_name!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=OUT_DIR.parents[1])
    if done.returncode:
        raise RuntimeError(f"the step without buffer reuse failed:\n{done.stderr}")
    times, faults = json.loads(done.stdout.strip().splitlines()[-1])
    return times, faults


def _bare_in_this_process(width, tile_size, iterations, warmup, optimizer_name):
    _, tile = _prepared(tile_size)
    return bare_step_seconds(width, pick_device(None), tile, iterations, warmup, optimizer_name, reuse=False)


def _prepared(tile_size: int):
    """The benchmark's synthetic training data and its first augmented tile (deterministic)."""
    images, masks = synthetic_cells(4)
    prepared = training_data(Recipe(dataset="isbi2012"), images, masks)  # uint8 / 255, Eq. 2 w0 = 10, sigma = 5
    data = (prepared.inputs, prepared.targets, prepared.weights)
    tile = random_tile(data[0][0], data[1][0], data[2][0], in_size=tile_size, out_size=output_size(tile_size),
                       rng=np.random.default_rng(0), params=AugmentParams())
    return data, tile


def full_loop_seconds(width: int, device: torch.device, data, iterations: int, warmup: int,
                      optimizer_name: str = "sgd", tile_size: int = TILE) -> list[float]:
    """Seconds per iteration of :func:`train` (differences of its history's time stamps)."""
    config = TrainConfig(width=width, tile=tile_size, iterations=warmup + iterations, device=str(device),
                         checkpoint_every=10**9, seed=0, optimizer=optimizer_name)
    result = train(*data, config, progress=False)
    stamps = [h[2] for h in result.history]
    return list(np.diff(stamps[warmup - 1 :])) if warmup else list(np.diff([0.0] + stamps))


def augment_seconds(data, repeats: int, tile_size: int = TILE) -> float:
    """Median seconds to cut one augmented ``tile_size`` tile."""
    images, targets, weights = data
    image = images[0]  # already scaled (uint8 / 255)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        random_tile(image, targets[0], weights[0], in_size=tile_size, out_size=output_size(tile_size),
                    rng=np.random.default_rng(i), params=AugmentParams())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(widths: list[int], iterations: int, warmup: int, optimizer_name: str = "sgd",
        tiles: tuple[int, ...] = (TILE,), rounds: int = 1) -> dict:
    device = pick_device(None)
    rows = []
    for tile_size in tiles:
        data, tile = _prepared(tile_size)
        augment_s = augment_seconds(data, max(3, iterations), tile_size)  # depends on the tile only
        for width in widths:
            # Alternate the two measurements in rounds: a shared machine drifts by more than the
            # overhead being measured, and each round's ratio compares neighbours in time.
            bare_times, fresh_times, full_times, ratios, faults = [], [], [], [], []  # faults: (with, without)
            for _ in range(rounds):
                b, b_faults = bare_step_seconds(width, device, tile, iterations, warmup, optimizer_name)
                # the reuse acts on the CPU only: elsewhere both measurements are the same step
                u, u_faults = (bare_step_without_reuse(width, tile_size, iterations, warmup, optimizer_name)
                               if device.type == "cpu" else (b, b_faults))
                f = full_loop_seconds(width, device, data, iterations, warmup, optimizer_name, tile_size)
                bare_times += b
                fresh_times += u
                full_times += f
                faults.append((b_faults, u_faults))
                ratios.append(statistics.median(f) / statistics.median(b))
            bare, full = statistics.median(bare_times), statistics.median(full_times)
            fresh = statistics.median(fresh_times)
            rows.append({
                "width": width, "tile": tile_size, "output_tile": output_size(tile_size), "batch": 1,
                "optimizer": optimizer_name, "bare_step_s": bare, "full_loop_s": full,
                "bare_step_without_reuse_s": fresh,
                "page_faults_per_step": statistics.median(reused for reused, _ in faults),
                "page_faults_per_step_without_reuse": statistics.median(without for _, without in faults),
                "bare_it_per_s": 1 / bare, "full_it_per_s": 1 / full,
                "output_px_per_s": output_size(tile_size) ** 2 / full,
                "overhead_pct": 100 * (statistics.median(ratios) - 1),
                "overhead_pct_per_round": [100 * (r - 1) for r in ratios],
                "augment_tile_s": augment_s,
            })
            print(f"width {width}, tile {tile_size}: bare {bare:.3f} s/it ({fresh:.3f} without buffer reuse), "
                  f"loop {full:.3f} s/it, overhead {rows[-1]['overhead_pct']:+.1f} %")
    return {
        "benchmark": "train",
        "device": str(device),
        "amp_dtype": str(amp_dtype(device)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "iterations": iterations,
        "warmup": warmup,
        "rounds": rounds,
        "statistic": "median seconds per iteration",
        "optimizer": optimizer_name,
        "rows": rows,
    }


def markdown(result: dict) -> str:
    lines = [
        f"# Training throughput ({result['device']}, amp {result['amp_dtype']}, "
        f"{result['threads']} threads, torch {result['torch']})",
        "",
        f"Batch 1, {result['optimizer']}; {result['rounds']} round(s) of {result['iterations']} iterations "
        f"(after {result['warmup']} warm-up) of each measurement, alternating; medians, and the overhead's "
        "median over the rounds. Output pixels per second of the full loop; one augmented tile "
        "alone is what drawing a training sample costs. The bare step reuses freed buffers as the loop "
        "does; 'without reuse' is the same step with glibc's own handling (page faults per step beside).",
        "",
        "| width | input tile | output tile | bare step s/it | without reuse | page faults (without) | full loop s/it "
        "| overhead | output px/s | one augmented tile |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['width']} | {r['tile']}² | {r['output_tile']}² | {r['bare_step_s']:.3f} | "
                     f"{r['bare_step_without_reuse_s']:.3f} | {r['page_faults_per_step']:,.0f} "
                     f"({r['page_faults_per_step_without_reuse']:,.0f}) | "
                     f"{r['full_loop_s']:.3f} | {r['overhead_pct']:+.1f} % | {r['output_px_per_s'] / 1000:.0f} k | "
                     f"{1000 * r['augment_tile_s']:.0f} ms |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 8, a couple of iterations")
    parser.add_argument("--widths", default="64,32,16", help="comma-separated widths (64,32,16)")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per width and round (10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both measurements (3)")
    parser.add_argument("--tiles", default=str(TILE), help=f"comma-separated input tile edges, 16k + 60 ({TILE})")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="optimiser of both measurements")
    parser.add_argument("--name", default="train", help="report name: NAME.json and NAME.md (train)")
    parser.add_argument("--out", default=str(OUT_DIR), help=f"output folder ({OUT_DIR})")
    args = parser.parse_args(argv)
    widths = [8] if args.quick else [int(w) for w in args.widths.split(",")]
    iterations, warmup = (2, 1) if args.quick else (args.iterations, 2)
    try:
        tiles = tuple(check_input_size(int(t), "--tiles edge") for t in args.tiles.split(","))
    except ValueError as exc:  # a non-number, or check_input_size's UnetlibError naming the nearest sizes
        parser.error(f"--tiles: {exc}")
    result = run(widths, iterations, warmup, args.optimizer, tiles, 1 if args.quick else max(1, args.rounds))
    write_report(args.out, args.name, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
