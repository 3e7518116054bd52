"""GPU throughput of the paper's network (width 64): tiled inference, training, memory.

Measured with CUDA synchronisation around each call, medians after a warm-up:

- *inference*: :func:`unetlib.inference.predict` of a 512² and a 2048² image,
  without and with the 8-fold (d4) test-time averaging, bf16 autocast,
  channels_last; next to the bare forward pass of the tile the planner
  chose (the ceiling: tiled inference should reach >= 90 % of it);
- *training*: iterations per second of the bare step (one 572² tile, bf16
  autocast; Adam and SGD) and of the full loop of :func:`unetlib.train.train`
  (augmentation in background threads);
- *memory*: the peak of ``torch.cuda.max_memory_allocated`` in each case.

Writes ``gpu.json`` and ``gpu.md`` to ``reports/benchmarks/`` (or ``--out``).
Needs a CUDA GPU; run it through ``benchmarks/gpu_check.sh``. ``--device cpu``
with a small ``--width``, ``--sizes`` and ``--tile`` runs the same code on the
CPU (the check's dry run).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchmarks.bench_train import bare_step_seconds, full_loop_seconds, synthetic_cells
from benchmarks.common import OUT_DIR, write_report
from unetlib.augment import AugmentParams, random_tile
from unetlib.geometry import _BYTES_PER_PIXEL_PER_WIDTH, tta_transforms
from unetlib.inference import Tiling, _default_budget, _layouts_for, predict
from unetlib.model import UNet, output_size
from unetlib.recipe import Recipe
from unetlib.runtime import autocast, to_channels_last
from unetlib.trainset import training_data


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated() if device.type == "cuda" else 0


def _timed(function, repeats: int, device: torch.device, warmup: int = 2) -> tuple[float, int]:
    """Median seconds of ``function()`` and the peak GPU memory (bytes) over the timed calls."""
    for _ in range(warmup):
        function()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), _peak(device)


def inference_rows(repeats: int, device: torch.device, width: int = 64, sizes=(512, 2048)) -> list[dict]:
    torch.manual_seed(0)
    model = to_channels_last(UNet(width=width), device).eval()
    rows = []
    for size in sizes:
        image = (np.random.default_rng(size).random((size, size)) * 255).astype(np.uint8)
        budget = _default_budget(device)
        layout = next(iter(_layouts_for(image.shape, None, tta_transforms("none"),
                                        _BYTES_PER_PIXEL_PER_WIDTH * width, budget).values()))
        x = torch.zeros((1, 1, *layout.tile), device=device).contiguous(memory_format=torch.channels_last)

        def bare(x=x):
            with torch.inference_mode(), autocast(device, True):
                model(x)

        bare_s, _ = _timed(bare, repeats, device)
        for tta in ("none", "d4"):
            seconds, peak = _timed(lambda i=image, t=tta: predict(model, i, tta=t, tiling=Tiling(device=device.type)),
                                   repeats, device)
            forwards = layout.n_tiles * len(tta_transforms(tta))
            rows.append({"image": f"{size}x{size}", "tta": tta, "tile": list(layout.tile), "tiles": layout.n_tiles,
                         "seconds": seconds, "ms": 1000 * seconds, "megapixels_per_s": size * size / seconds / 1e6,
                         "bare_forward_s": bare_s, "of_bare_forward_pct": 100 * forwards * bare_s / seconds,
                         "peak_memory_gib": peak / 2**30})
            print(f"{size}² tta {tta}: {1000 * seconds:.1f} ms ({rows[-1]['of_bare_forward_pct']:.0f} % of "
                  f"{forwards} bare forwards), peak {peak / 2**30:.2f} GiB")
    return rows


def training_rows(iterations: int, device: torch.device, width: int = 64, tile_size: int = 572) -> list[dict]:
    images, masks = synthetic_cells(4)
    prepared = training_data(Recipe(dataset="isbi2012"), images, masks)
    data = (prepared.inputs, prepared.targets, prepared.weights)
    tile = random_tile(prepared.inputs[0], prepared.targets[0], prepared.weights[0], in_size=tile_size,
                       out_size=output_size(tile_size), rng=np.random.default_rng(0), params=AugmentParams())
    rows = []
    for optimizer in ("adam", "sgd"):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        bare = statistics.median(bare_step_seconds(width, device, tile, iterations, 2, optimizer)[0])
        full = statistics.median(full_loop_seconds(width, device, data, iterations, 2, optimizer, tile_size))
        rows.append({"width": width, "tile": tile_size, "optimizer": optimizer, "bare_it_per_s": 1 / bare,
                     "full_it_per_s": 1 / full, "overhead_pct": 100 * (full / bare - 1),
                     "peak_memory_gib": _peak(device) / 2**30})
        print(f"train width {width}, {optimizer}: bare {1 / bare:.1f} it/s, loop {1 / full:.1f} it/s")
    return rows


def markdown(result: dict) -> str:
    lines = [f"# {result['device']} ({result['gpu']}, torch {result['torch']}, autocast where fast, channels_last)", "",
             "| image | TTA | tile | tiles | ms | MP/s | % of bare forwards | peak GiB |", "|---|---|---|---|---|---|---|---|"]
    for r in result["inference"]:
        lines.append(f"| {r['image']} | {r['tta']} | {r['tile'][0]}x{r['tile'][1]} | {r['tiles']} | {r['ms']:.1f} | "
                     f"{r['megapixels_per_s']:.1f} | {r['of_bare_forward_pct']:.0f} % | {r['peak_memory_gib']:.2f} |")
    t = result["training"][0]
    lines += ["", f"| training, width {t['width']}, {t['tile']}² | bare it/s | loop it/s | overhead | peak GiB |",
              "|---|---|---|---|---|"]
    for r in result["training"]:
        lines.append(f"| {r['optimizer']} | {r['bare_it_per_s']:.1f} | {r['full_it_per_s']:.1f} | "
                     f"{r['overhead_pct']:+.1f} % | {r['peak_memory_gib']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per inference case (10)")
    parser.add_argument("--iterations", type=int, default=50, help="timed training iterations (50)")
    parser.add_argument("--out", default=str(OUT_DIR), help="output folder (reports/benchmarks)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: the dry run's sizes")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--sizes", default="512,2048", help="inference image edges")
    parser.add_argument("--tile", type=int, default=572, help="training tile edge")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU; nothing measured")
        return 1
    device = torch.device(args.device)
    sizes = tuple(int(v) for v in args.sizes.split(","))
    result = {"benchmark": "gpu", "device": args.device,
              "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else "no GPU (dry run)",
              "torch": torch.__version__,
              "inference": inference_rows(args.repeats, device, args.width, sizes),
              "training": training_rows(args.iterations, device, args.width, args.tile)}
    write_report(args.out, "gpu", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
