"""Training throughput: the full loop of :func:`unetlib.train.train` against the bare step.

For each width, at one tile per step (batch 1; 572 x 572 is the paper's
setting, ``--tile 508 --optimizer adam --widths 16`` the cpu profile's):

- *bare step*: forward + weighted cross entropy + backward + optimiser step
  (SGD with momentum 0.99, or Adam) on one pre-made tile, in channels_last
  with the kit's autocast;
- *full loop*: :func:`unetlib.train.train` on synthetic 512 x 512 images
  (a fresh augmented tile every step, drawn as the loop draws it on this
  device; loss check, history, progress off, no checkpoints).

The overhead is ``full / bare - 1`` in time per iteration (goal: <= 10 %).
Writes ``reports/benchmarks/train.json`` and ``train.md``.

Run ``python -m benchmarks.bench_train`` (widths 64, 32, 16) or ``--quick``
(width 8, a couple of iterations: checks that the script runs). ``make bench``
also runs the cpu profile's size as ``train_cpu_profile``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from scipy import ndimage

from unetlib.augment import AugmentParams, random_tile
from unetlib.model import UNet, output_size
from unetlib.protocols import training_data
from unetlib.recipe import Recipe
from unetlib.runtime import amp_dtype, autocast, pick_device, to_channels_last
from unetlib.train import TrainConfig, train, weighted_cross_entropy
from benchmarks.common import OUT_DIR, cpu_name, write_report

TILE = 572  # the default; --tile changes it


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
                      optimizer_name: str = "sgd") -> list[float]:
    """Seconds per bare training step on one pre-made tile (after ``warmup`` steps)."""
    torch.manual_seed(0)
    model = to_channels_last(UNet(width=width), device).train()
    if optimizer_name == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    x, y, w = (t[None].to(device) for t in tile)
    x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(warmup + iterations):
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
    return times


def full_loop_seconds(width: int, device: torch.device, data, iterations: int, warmup: int,
                      optimizer_name: str = "sgd") -> list[float]:
    """Seconds per iteration of :func:`train` (differences of its history's time stamps)."""
    config = TrainConfig(width=width, tile=TILE, iterations=warmup + iterations, device=str(device),
                         checkpoint_every=10**9, seed=0, optimizer=optimizer_name)
    result = train(*data, config, progress=False)
    stamps = [h[2] for h in result.history]
    return list(np.diff(stamps[warmup - 1 :])) if warmup else list(np.diff([0.0] + stamps))


def augment_seconds(data, repeats: int) -> float:
    """Median seconds to cut one augmented tile of the benchmark's size."""
    images, targets, weights = data
    image = images[0]  # already scaled (uint8 / 255)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        random_tile(image, targets[0], weights[0], in_size=TILE, out_size=output_size(TILE),
                    rng=np.random.default_rng(i), params=AugmentParams())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(widths: list[int], iterations: int, warmup: int, optimizer_name: str = "sgd") -> dict:
    device = pick_device(None)
    images, masks = synthetic_cells(4)
    prepared = training_data(Recipe(dataset="isbi2012"), images, masks)  # uint8 / 255, Eq. 2 w0 = 10, sigma = 5
    image, targets, weights = prepared.inputs[0], prepared.targets, prepared.weights
    data = (prepared.inputs, targets, weights)
    tile = random_tile(image, targets[0], weights[0], in_size=TILE, out_size=output_size(TILE),
                       rng=np.random.default_rng(0), params=AugmentParams())
    rows = []
    for width in widths:
        bare = statistics.median(bare_step_seconds(width, device, tile, iterations, warmup, optimizer_name))
        full = statistics.median(full_loop_seconds(width, device, data, iterations, warmup, optimizer_name))
        rows.append({
            "width": width, "tile": TILE, "batch": 1, "optimizer": optimizer_name,
            "bare_step_s": bare, "full_loop_s": full,
            "bare_it_per_s": 1 / bare, "full_it_per_s": 1 / full,
            "overhead_pct": 100 * (full / bare - 1),
        })
        print(f"width {width}: bare {bare:.3f} s/it, loop {full:.3f} s/it, overhead {rows[-1]['overhead_pct']:+.1f} %")
    return {
        "benchmark": "train",
        "device": str(device),
        "amp_dtype": str(amp_dtype(device)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "iterations": iterations,
        "warmup": warmup,
        "augment_tile_s": augment_seconds(data, max(3, iterations)),
        "statistic": "median seconds per iteration",
        "optimizer": optimizer_name,
        "rows": rows,
    }


def markdown(result: dict) -> str:
    lines = [
        f"# Training throughput ({result['device']}, amp {result['amp_dtype']}, "
        f"{result['threads']} threads, torch {result['torch']})",
        "",
        f"Tile {TILE} x {TILE}, batch 1, {result['optimizer']}; median of {result['iterations']} "
        f"iterations after {result['warmup']} warm-up. One augmented tile alone: "
        f"{1000 * result['augment_tile_s']:.0f} ms.",
        "",
        "| width | bare step it/s | full loop it/s | overhead |",
        "|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['width']} | {r['bare_it_per_s']:.3f} | {r['full_it_per_s']:.3f} | {r['overhead_pct']:+.1f} % |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    global TILE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 8, a couple of iterations")
    parser.add_argument("--widths", default="64,32,16", help="comma-separated widths (64,32,16)")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per width (10)")
    parser.add_argument("--tile", type=int, default=TILE, help=f"input tile edge, 16k + 60 ({TILE})")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="optimiser of both measurements")
    parser.add_argument("--name", default="train", help="report name: NAME.json and NAME.md (train)")
    parser.add_argument("--out", default=str(OUT_DIR), help=f"output folder ({OUT_DIR})")
    args = parser.parse_args(argv)
    TILE = args.tile
    widths = [8] if args.quick else [int(w) for w in args.widths.split(",")]
    iterations, warmup = (2, 1) if args.quick else (args.iterations, 2)
    result = run(widths, iterations, warmup, args.optimizer)
    write_report(args.out, args.name, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
