"""Overlap-tile inference throughput against its ceiling and against MONAI's sliding window.

For each width (64 = the paper, 32, 16 = the ``cpu`` profile) and image size
(512, 2048), one run, same precision (fp32 unless ``--amp``), same device:

- *unetlib*: :func:`unetlib.inference.predict` with its automatic tile (probabilities);
  and once more with glibc's default handling of large buffers (each one a
  fresh mapping, faulted in page by page: what :func:`unetlib.runtime.reuse_freed_memory`
  avoids), with the minor page faults of each;
- *ceiling*: the same network's bare forward on one tile of the chosen size,
  as output megapixels per second (goal: unetlib >= 90 % of it; the image's
  edge waste counts against unetlib);
- *MONAI*: ``sliding_window_inference`` (roi 512 or the image, overlap 0.25,
  gaussian blending) with a same-padded twin of the U-Net of equal width
  (padding 1 in every 3x3 convolution: identical FLOPs per pixel);
- *redundancy*: FLOPs spent / FLOPs of one same-padded forward over the image;
- *peak RSS* of a fresh process predicting an 8192 x 8192 image with a narrow
  network (width 4), for both (the output alone is 512 MB).

Writes ``reports/benchmarks/tiling.json`` and ``tiling.md``. Run
``python -m benchmarks.bench_tiling`` on a quiet machine, or ``--quick`` (tiny
sizes, width 4: checks that the script runs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

from benchmarks.common import OUT_DIR, cpu_name, write_report
from unetlib import inference, runtime
from unetlib.geometry import _BYTES_PER_PIXEL_PER_WIDTH, plan_tiles
from unetlib.inference import Tiling, _default_budget, predict
from unetlib.model import UNet, count_flops
from unetlib.runtime import amp_dtype, autocast, pick_device, reuse_freed_memory, to_channels_last

OVERLAP = 0.25
ROI = 512


# --------------------------------------------------------------------------- #
# The same-padded twin for MONAI
# --------------------------------------------------------------------------- #
class SamePaddedUNet(nn.Module):
    """The paper's U-Net with padding 1 in every 3x3 convolution (output = input size)."""

    def __init__(self, width: int, in_channels: int = 1, num_classes: int = 2) -> None:
        super().__init__()
        c = [width * 2**level for level in range(5)]
        self.down = nn.ModuleList([self._pair(in_channels, c[0])] + [self._pair(c[i - 1], c[i]) for i in range(1, 5)])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(c[i], c[i - 1], 2, stride=2) for i in range(4, 0, -1)])
        self.up_convs = nn.ModuleList([self._pair(2 * c[i - 1], c[i - 1]) for i in range(4, 0, -1)])
        self.score = nn.Conv2d(c[0], num_classes, 1)
        self.pool = nn.MaxPool2d(2)

    @staticmethod
    def _pair(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        for up, convs, skip in zip(self.ups, self.up_convs, reversed(skips[:-1])):
            x = convs(torch.cat([up(x), skip], dim=1))
        return self.score(x)


# --------------------------------------------------------------------------- #
# Measurements
# --------------------------------------------------------------------------- #
def forward_flops(model: nn.Module, height: int, width: int) -> int:
    """FLOPs (multiply-add = 2) of one forward at ``height x width`` (:func:`unetlib.model.count_flops`)."""
    return count_flops(model, height, width)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def faulted(fn) -> tuple[float, int]:
    """Seconds and minor page faults of ``fn()``."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds, _ = timed(fn)
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@contextlib.contextmanager
def default_allocator():
    """Predict without :func:`unetlib.runtime.reuse_freed_memory`: the heap it kept given back first, then
    glibc's own handling (every buffer of 32 MiB or more a fresh mapping)."""
    kept = inference.reuse_freed_memory
    libc = runtime._glibc()
    if libc is not None:
        libc.malloc_trim(0)
    inference.reuse_freed_memory = lambda device: contextlib.nullcontext()
    try:
        yield
    finally:
        inference.reuse_freed_memory = kept


def bench_unetlib(width: int, size: int, device: torch.device, amp: bool) -> dict:
    torch.manual_seed(0)
    model = to_channels_last(UNet(width=width), device).eval()
    image = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    layout = plan_tiles((size, size), bytes_per_pixel=_BYTES_PER_PIXEL_PER_WIDTH * model.width,
                        memory_budget=_default_budget(device), first_touch=inference._first_touch(device, width))
    tile = torch.rand(1, 1, *layout.tile, device=device).contiguous(memory_format=torch.channels_last)

    def bare():
        with torch.inference_mode(), autocast(device, amp), reuse_freed_memory(device):
            out = model(tile)
            _sync(device)
            out = model(tile)  # the second pass of the block: its buffers come from the first
            _sync(device)
        return out

    def run():
        return predict(model, image, tiling=Tiling(device=device, amp=amp, progress=False))

    bare()  # warm-up: oneDNN/cuDNN pick their kernels for this shape
    t_bare = sorted(timed(bare)[0] / 2 for _ in range(3))[1]  # median of 3: the ceiling is the steadiest number
    t_pred, faults = faulted(run)
    with default_allocator():
        t_default, faults_default = faulted(run)
    tile_flops = forward_flops(UNet(width=width), *layout.tile)
    same_flops = forward_flops(SamePaddedUNet(width), size, size)
    ceiling_mps = layout.out[0] * layout.out[1] / t_bare / 1e6
    mps = size * size / t_pred / 1e6
    return {
        "tile": list(layout.tile), "tiles": layout.n_tiles, "seconds": t_pred, "mpix_per_s": mps,
        "page_faults": faults, "default_allocator_seconds": t_default, "default_allocator_page_faults": faults_default,
        "ceiling_tile_seconds": t_bare, "ceiling_mpix_per_s": ceiling_mps, "fraction_of_ceiling": mps / ceiling_mps,
        "forward_share": layout.n_tiles * t_bare / t_pred,
        "redundancy": layout.n_tiles * tile_flops / same_flops,
    }


def bench_monai(width: int, size: int, device: torch.device, amp: bool) -> dict | None:
    try:
        from monai.inferers import sliding_window_inference
    except ImportError as exc:  # the optional `bench` extra
        return {"skipped": f"monai not importable ({exc}); pip install -e '.[bench]'"}
    torch.manual_seed(0)
    model = to_channels_last(SamePaddedUNet(width), device).eval()
    roi = min(ROI, size)
    image = torch.from_numpy(np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)).to(device)
    windows = []

    def predictor(x):
        windows.append(x.shape[0])
        return model(x.contiguous(memory_format=torch.channels_last))

    def run():
        with torch.inference_mode(), autocast(device, amp):
            out = sliding_window_inference(image, (roi, roi), 1, predictor, overlap=OVERLAP, mode="gaussian")
            out = torch.softmax(out.float(), dim=1)
        _sync(device)
        return out

    with torch.inference_mode(), autocast(device, amp):
        model(torch.rand(1, 1, roi, roi, device=device).contiguous(memory_format=torch.channels_last))  # warm-up
    seconds, _ = timed(run)
    roi_flops = forward_flops(SamePaddedUNet(width), roi, roi)
    same_flops = forward_flops(SamePaddedUNet(width), size, size)
    return {"roi": roi, "windows": sum(windows), "seconds": seconds, "mpix_per_s": size * size / seconds / 1e6,
            "redundancy": sum(windows) * roi_flops / same_flops}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- #
# Peak memory in a fresh process
# --------------------------------------------------------------------------- #
def rss_child(method: str, size: int, width: int, device: str, amp: bool) -> None:
    """Run in a child process: predict one ``size x size`` image, print baseline and peak RSS (bytes)."""
    device = pick_device(device)
    torch.manual_seed(0)
    image = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    if method == "unetlib":
        model = UNet(width=width)
        baseline = _rss()
        out = predict(model, image, tiling=Tiling(device=device, amp=amp, progress=False))
    else:
        from monai.inferers import sliding_window_inference

        model = to_channels_last(SamePaddedUNet(width), device).eval()
        baseline = _rss()
        with torch.inference_mode(), autocast(device, amp):
            x = torch.from_numpy(image).to(device)[None, None].float().div_(255)
            logits = sliding_window_inference(x, (ROI, ROI), 1, model, overlap=OVERLAP, mode="gaussian",
                                              device=torch.device("cpu"))
            out = torch.softmax(logits.float(), dim=1).numpy()
    print(json.dumps({"baseline_rss": baseline, "peak_rss": _maxrss(), "output_bytes": out.nbytes}))


def _maxrss() -> int:
    """Peak resident memory of this process image (bytes).

    Linux's VmHWM, which starts afresh at exec; ``ru_maxrss`` would carry over
    the parent's peak from before the fork.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _rss() -> int:
    """Current resident memory (bytes; Linux), else the peak so far."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return _maxrss()


def bench_rss(method: str, size: int, width: int, device: str, amp: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.bench_tiling", "--rss-child", method, str(size), str(width),
               "--device", device] + (["--amp"] if amp else [])
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return {"skipped": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["seconds"] = time.perf_counter() - start
    return report


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #
def _ratio(mpix_per_s: float, monai: dict) -> str:
    return "" if "skipped" in monai else f"{mpix_per_s / monai['mpix_per_s']:.2f}x"


def markdown(report: dict) -> str:
    lines = [
        f"# Overlap-tile inference ({report['device']}, {report['precision']}, {report['threads']} threads)",
        "",
        "| width | image | unetlib tile x n | unetlib MP/s | ceiling MP/s | % of ceiling | redundancy "
        "| MONAI MP/s | MONAI windows | MONAI redundancy | unetlib / MONAI | without buffer reuse: MP/s, / MONAI "
        "| page faults with / without reuse |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["throughput"]:
        u, m = row["unetlib"], row["monai"]
        tile = f"{u['tile'][0]}x{u['tile'][1]} x {u['tiles']}"
        monai = ("skipped", "", "") if "skipped" in m else (f"{m['mpix_per_s']:.3f}", f"{m['roi']}² x {m['windows']}",
                                                             f"{m['redundancy']:.2f}")
        default_mps = row["size"] ** 2 / u["default_allocator_seconds"] / 1e6
        lines.append(
            f"| {row['width']} | {row['size']}² | {tile} | {u['mpix_per_s']:.3f} | {u['ceiling_mpix_per_s']:.3f} "
            f"| {100 * u['fraction_of_ceiling']:.0f} % | {u['redundancy']:.2f} | {monai[0]} | {monai[1]} | {monai[2]} "
            f"| {_ratio(u['mpix_per_s'], m)} | {default_mps:.3f}, {_ratio(default_mps, m)} "
            f"| {u['page_faults']:,} / {u['default_allocator_page_faults']:,} |"
        )
    lines += ["", f"Peak RSS, {report['rss_size']}² image, width {report['rss_width']} "
              "(fresh process, after imports and the uint8 image; the float32 output alone is the output column):", "",
              "| method | baseline RSS MB | peak RSS MB | output MB | seconds |", "|---|---|---|---|---|"]
    for method, r in report["rss"].items():
        if "skipped" in r:
            lines.append(f"| {method} | skipped: {r['skipped']} | | | |")
        else:
            lines.append(f"| {method} | {r['baseline_rss'] / 1e6:.0f} | {r['peak_rss'] / 1e6:.0f} "
                         f"| {r['output_bytes'] / 1e6:.0f} | {r['seconds']:.1f} |")
    lines += ["", "Redundancy = FLOPs spent / FLOPs of one same-padded forward over the image. "
              "Ceiling = bare forward of one tile of unetlib's size, output pixels per second. "
              "Without buffer reuse: the same prediction with glibc's default thresholds, where every buffer of "
              "32 MiB or more is a fresh mapping faulted in page by page (minor page faults of the whole call)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and width 4 (checks the script)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--amp", action="store_true", help="autocast where supported (default fp32)")
    parser.add_argument("--rss-child", nargs=3, metavar=("METHOD", "SIZE", "WIDTH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]), int(args.rss_child[2]), args.device, args.amp)
        return 0
    device = pick_device(args.device)
    widths, sizes = ([4], [128, 256]) if args.quick else ([64, 32, 16], [512, 2048])
    rss_size, rss_width = (1024, 4) if args.quick else (8192, 4)
    precision = str(amp_dtype(device)).replace("torch.", "") if args.amp and amp_dtype(device) else "fp32"
    report = {"device": str(device), "precision": precision, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": cpu_name(),
              "quick": args.quick, "rss_size": rss_size, "rss_width": rss_width, "throughput": [], "rss": {}}
    for width in widths:
        for size in sizes:
            row = {"width": width, "size": size,
                   "unetlib": bench_unetlib(width, size, device, args.amp),
                   "monai": bench_monai(width, size, device, args.amp)}
            report["throughput"].append(row)
            print(json.dumps(row), flush=True)
    for method in ("unetlib", "monai"):
        report["rss"][method] = bench_rss(method, rss_size, rss_width, args.device, args.amp)
    write_report(OUT_DIR, "tiling", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
