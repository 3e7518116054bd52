"""Overlap-tile inference (paper Sec. 2 and Fig. 2): seamless prediction of any image.

The network sees a tile of ``16 k + 60`` pixels and predicts its centre, 92
pixels smaller on every side; the missing context at the image border is
extrapolated by mirroring. Where the tiles lie, and why the stitched result
equals one pass of the network over the whole mirror-extrapolated image, is
:mod:`unetlib.geometry`'s business; how pixel values become inputs is
:mod:`unetlib.preprocess`'s. This module only runs the tiles and stitches:

    validate -> plan (layouts, batch size) -> for every image of the stack and
    every test-time transform: cut tiles -> scale -> forward -> write windows
    -> average the logits -> softmax / argmax

The network is any callable that maps a ``(N, C, 16k + 60, 16k + 60)`` float
tensor to ``(N, K, 16k - 124, 16k - 124)`` logits with the U-Net's 92-pixel
border and 16-pixel pooling grid. A :class:`unetlib.model.UNet` states its
channels (``in_channels``, ``num_classes``); for another callable the input
is taken as single-channel and the class count is read off one forward pass.

Memory stays bounded: tiles are cut straight from the (unpadded) image through
mirrored indices, scaled per tile and streamed through the network in
batches; the output array is the only full-size buffer (plus one logit buffer
when labels are averaged over test-time transforms).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from unetlib.errors import UnetlibError
from unetlib.geometry import (
    _BYTES_PER_PIXEL_PER_WIDTH,
    PADDINGS,
    TileLayout,
    mirror_index,
    plan_tiles,
    tta_transforms,
)
from unetlib.model import BORDER, MIN_INPUT
from unetlib.preprocess import check_bit_depth, check_mode, normalizer, row_blocks
from unetlib.runtime import autocast, pick_device, reuse_freed_memory, to_channels_last

__all__ = ["predict", "check_image", "Tiling", "softmax", "OUTPUTS", "PADDINGS"]

OUTPUTS = ("probabilities", "logits", "labels")
_MAX_AUTO_BATCH = 16
#: On the CPU, the first touch of a forward's fresh memory costs about as much as computing
#: ``_FIRST_TOUCH_WIDTH / width`` of its input pixels once (page faults: about 2.5 us per 4 KiB page,
#: 450 bytes per input pixel at width 16, against 0.46 us of fp32 compute per input pixel there;
#: the bytes grow with the width, the compute with its square). See docs/performance.md.
_FIRST_TOUCH_WIDTH = 10.0


@dataclass(frozen=True)
class Tiling:
    """How :func:`predict` runs the tiles (none of this changes the result beyond float rounding).

    Attributes
    ----------
    tile : int or (int, int) or None
        Input tile edge(s), ``16 k + 60`` pixels (572 in the paper). None: the
        edges feeding the fewest input pixels under ``memory_budget``; on the
        CPU counting also the first touch of one tile's memory, so a large image
        gets several reusable tiles rather than one huge one (see
        :func:`unetlib.geometry.plan_tiles`).
    batch_size : int or None
        Tiles per forward pass; None: one on the CPU (a batch computes no faster
        there and touches that much more fresh memory), else as many as fit
        ``memory_budget`` (at most 16).
    memory_budget : float or None
        Bytes one forward pass may use; None: half the free GPU memory, or half
        the available RAM up to 4 GiB.
    device : str or None
        None: CUDA when available, else the CPU.
    amp : bool
        Autocast where it is fast (bf16/fp16 on CUDA, bf16 on CPUs with native bf16).
    progress : bool or None
        A progress bar over tiles; None shows one for stacks on a terminal.
    padding : {"mirror", "zero"}
        How the missing context beyond the image border is filled: mirrored
        (the paper, Fig. 2) or zeros of the scaled input (what a same-padded
        network sees; for the comparison of notebook 05_claims). This one
        changes the result near the border.
    """

    tile: int | tuple[int, int] | None = None
    batch_size: int | None = None
    memory_budget: float | None = None
    device: str | None = None
    amp: bool = True
    progress: bool | None = None
    padding: str = "mirror"

    def __post_init__(self) -> None:
        if self.padding not in PADDINGS:
            raise UnetlibError(f"Tiling.padding must be one of {PADDINGS}, got {self.padding!r}")


@dataclass
class _Plan:
    """Everything fixed for one call."""

    network: Callable
    device: torch.device
    amp: bool
    output: str
    num_classes: int
    transforms: list
    layouts: dict  # transformed (H, W) -> TileLayout
    batch_size: int
    normalize: str
    bar: tqdm
    padding: str = "mirror"
    bit_depth: int | None = None


# --------------------------------------------------------------------------- #
# The public function
# --------------------------------------------------------------------------- #
def predict(
    model: Callable,
    image,
    *,
    tta: str | None = "none",
    normalize: str = "unit",
    output: str = "probabilities",
    tiling: Tiling | None = None,
    bit_depth: int | None = None,
) -> np.ndarray:
    """Seamless overlap-tile prediction of an image or a stack (paper Sec. 2, Fig. 2).

    Parameters
    ----------
    model : UNet or callable
        A valid-convolution network (92-pixel border, see the module docstring).
        A ``torch.nn.Module`` is put in eval mode during the call (its
        training flag is restored afterwards) and moved to the device in
        channels_last layout, where it stays.
    image : array_like
        Integer or float pixels. Single-channel models: ``(H, W)`` or a stack
        ``(S, H, W)``; models with ``in_channels = C > 1``: ``(C, H, W)`` or
        ``(S, C, H, W)`` (channels first). Any size of at least 1 pixel.
    tta : {"none", "flips", "d4"}
        Test-time averaging: the release's 4 flips, or the 8 symmetries of the
        square (the paper's "7 rotated versions" plus the identity). The
        *logits* of the transformed predictions, mapped back, are averaged (as
        the release does before its argmax).
    normalize : {"unit", "zscore", "minmax", "none"}
        Input scaling, see :mod:`unetlib.preprocess`; must be the one the
        network was trained with (a checkpoint's recipe records it).
    output : {"probabilities", "logits", "labels"}
        ``(K, H, W)`` float32 softmax or logits, or ``(H, W)`` argmax labels
        (uint8 up to 256 classes). Stacks get a leading ``S``.
    tiling : Tiling, optional
        Tile size, batch size, memory budget, device, precision, progress bar.
    bit_depth : int, optional
        The bits an unsigned integer image holds (12 for a 12-bit camera's
        uint16 image): ``"unit"`` divides by ``2**bit_depth - 1`` instead of
        its dtype's maximum.

    Returns
    -------
    numpy.ndarray
        It equals the network applied once to the whole mirror-extrapolated
        image (to float rounding), for every tile size.
    """
    tiling = Tiling() if tiling is None else tiling
    stack, is_stack = _validate(model, image, output, normalize)
    check_bit_depth(stack, bit_depth)
    training = getattr(model, "training", None)
    plan = None
    try:
        if training is not None:
            model.eval()
        plan = _make_plan(model, stack, tiling, tta, output, normalize, is_stack, bit_depth)
        result = _allocate_output(stack, plan)
        with torch.inference_mode(), reuse_freed_memory(plan.device):
            for index in range(stack.shape[0]):
                _predict_slice(stack[index], result[index], plan)
    finally:
        if training is not None:
            model.train(training)
        if plan is not None:
            plan.bar.close()
    return result if is_stack else result[0]


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Softmax of ``logits`` along ``axis`` (float32, numerically stable)."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted.astype(np.float32, copy=False)


def label_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned dtype holding labels ``0 .. num_classes - 1``."""
    if num_classes <= 256:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16) if num_classes <= 65536 else np.dtype(np.int32)


# --------------------------------------------------------------------------- #
# Validation and planning
# --------------------------------------------------------------------------- #
def _validate(model, image, output: str, normalize: str) -> tuple[np.ndarray, bool]:
    if output not in OUTPUTS:
        raise UnetlibError(f"output must be one of {OUTPUTS}, got {output!r}")
    check_mode(normalize)
    if not callable(model):
        raise UnetlibError(f"{type(model).__name__} is not callable; pass a network that maps tiles to logits")
    return check_image(image, int(getattr(model, "in_channels", 1)))


def check_image(image, in_channels: int) -> tuple[np.ndarray, bool]:
    """The image as ``(S, C, H, W)`` (a view where possible) and whether it was a stack.

    Refuses, in one line, an image a network of ``in_channels`` cannot take:
    pixels that are not numbers, axes that do not fit (see :func:`predict`),
    no pixels, NaN or infinite values.
    """
    stack, is_stack = _as_stack(image, in_channels)
    _check_values(stack)
    return stack, is_stack


def _as_stack(image, in_channels: int) -> tuple[np.ndarray, bool]:
    """The image as ``(S, C, H, W)`` (a view where possible) and whether it was a stack.

    Convention: single-channel models take ``(H, W)`` or a stack ``(S, H, W)``;
    models with ``in_channels > 1`` take ``(C, H, W)`` or ``(S, C, H, W)``.
    """
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise UnetlibError(f"image dtype {image.dtype} is not numeric; give an integer or float array")
    if in_channels == 1:
        if image.ndim == 2:
            return image[None, None], False
        if image.ndim == 3:
            return image[:, None], True
        raise UnetlibError(
            f"image has shape {image.shape}, but the model takes 1 channel: give (H, W) or a "
            "stack (S, H, W) without a channel axis (e.g. convert colour images to grey)"
        )
    if image.ndim in (3, 4) and image.shape[-3] == in_channels:
        return (image[None] if image.ndim == 3 else image), image.ndim == 4
    hint = ""
    if image.ndim >= 3 and image.shape[-1] == in_channels:
        hint = " (channels last? use np.moveaxis(image, -1, -3))"
    raise UnetlibError(
        f"image has shape {image.shape}, but the model takes {in_channels} channels: give "
        f"({in_channels}, H, W) or a stack (S, {in_channels}, H, W){hint}"
    )


def _check_values(stack: np.ndarray) -> None:
    if min(stack.shape) == 0:
        raise UnetlibError(f"image is empty (shape {stack.shape}); give at least one pixel")
    if stack.dtype.kind == "f":
        for block in row_blocks(stack):
            if not np.isfinite(block).all():
                raise UnetlibError("image contains NaN or infinite values; replace them (e.g. np.nan_to_num) first")


def _make_plan(model, stack, tiling: Tiling, tta, output, normalize, is_stack, bit_depth=None) -> _Plan:
    device = pick_device(tiling.device)
    if isinstance(model, torch.nn.Module):
        model = to_channels_last(model, device)
    budget = _default_budget(device) if tiling.memory_budget is None else float(tiling.memory_budget)
    width = int(getattr(model, "width", 64))
    bpp = _BYTES_PER_PIXEL_PER_WIDTH * width
    transforms = tta_transforms(tta)
    first_touch = _first_touch(device, width, stack.shape[0] * len(transforms))
    layouts = _layouts_for(stack.shape[-2:], tiling.tile, transforms, bpp, budget, first_touch)
    batch_size = tiling.batch_size
    if batch_size is None:
        batch_size = _auto_batch(list(layouts.values()), bpp, budget) if device.type != "cpu" else 1
    if int(batch_size) < 1:
        raise UnetlibError(f"batch_size must be at least 1, got {batch_size}")
    num_classes = _num_classes(model, stack.shape[1], device, tiling.amp)
    n_tiles = stack.shape[0] * sum(layouts[t(_probe(stack.shape[-2:])).shape].n_tiles for t in transforms)
    disable = (None if is_stack else True) if tiling.progress is None else not tiling.progress
    bar = tqdm(total=n_tiles, unit="tile", desc="predict", disable=disable)
    return _Plan(model, device, bool(tiling.amp), output, num_classes, transforms, layouts, int(batch_size),
                 normalize, bar, tiling.padding, bit_depth)


def _num_classes(model, channels: int, device: torch.device, amp: bool) -> int:
    """``model.num_classes``, or the channel count of one forward pass of a blank tile."""
    if hasattr(model, "num_classes"):
        return int(model.num_classes)
    with torch.inference_mode():
        probe = np.zeros((1, channels, MIN_INPUT, MIN_INPUT), np.float32)
        return int(_forward(model, probe, device, amp).shape[1])


def _first_touch(device: torch.device, width: int, passes: int = 1) -> float:
    """The first touch of a tile's memory in :func:`unetlib.geometry.plan_tiles`' units: on the CPU only,
    paid once per call and so shared by its ``passes`` (slices x test-time transforms)."""
    return _FIRST_TOUCH_WIDTH / width / passes if device.type == "cpu" else 0.0


def _layouts_for(shape, tile, transforms, bpp: float, budget: float, first_touch: float = 0.0) -> dict:
    """One layout per transformed image shape; a given tile is transposed with the image."""
    height, width = (int(s) for s in shape)
    layouts = {(height, width): plan_tiles((height, width), tile, bytes_per_pixel=bpp, memory_budget=budget,
                                           first_touch=first_touch)}
    probe = _probe((height, width))
    for transform in transforms:
        shape_t = transform(probe).shape
        if shape_t not in layouts:
            tile_t = layouts[(height, width)].tile[::-1]
            layouts[shape_t] = plan_tiles(shape_t, tile_t, bytes_per_pixel=bpp, memory_budget=budget)
    return layouts


def _probe(shape) -> np.ndarray:
    """A zero-memory array of ``shape`` to see how a transform reshapes an image."""
    return np.broadcast_to(np.zeros((), dtype=bool), tuple(int(s) for s in shape))


def _default_budget(device: torch.device) -> float:
    """Half the free GPU memory on CUDA; on the CPU, half the available RAM, at most 4 GiB."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.5 * free
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 * 2**30
    return min(0.5 * available, 4 * 2**30)


def _auto_batch(layouts: Sequence[TileLayout], bytes_per_pixel: float, budget: float) -> int:
    layout = layouts[0]
    per_tile = bytes_per_pixel * layout.tile[0] * layout.tile[1]
    fits = int(budget // per_tile)
    return max(1, min(fits, max(one.n_tiles for one in layouts), _MAX_AUTO_BATCH))


def _allocate_output(stack: np.ndarray, plan: _Plan) -> np.ndarray:
    n, _, height, width = stack.shape
    if plan.output == "labels":
        return np.empty((n, height, width), dtype=label_dtype(plan.num_classes))
    return np.empty((n, plan.num_classes, height, width), dtype=np.float32)


# --------------------------------------------------------------------------- #
# Streaming: tile batches in, stitched output out
# --------------------------------------------------------------------------- #
def _predict_slice(image: np.ndarray, out: np.ndarray, plan: _Plan) -> None:
    """Predict one ``(C, H, W)`` image into ``out`` (``(K, H, W)`` or ``(H, W)``)."""
    scaling = normalizer(image, plan.normalize, plan.bit_depth)
    if len(plan.transforms) == 1:
        _stitch(image, out, scaling, plan, finish=plan.output, accumulate=False)
        return
    # average logits over transforms: out itself holds the sum unless labels are asked for
    summed = out if plan.output != "labels" else np.empty((plan.num_classes, *image.shape[1:]), np.float32)
    summed[...] = 0.0
    for transform in plan.transforms:
        _stitch(transform(image), transform(summed), scaling, plan, finish="logits", accumulate=True)
    for summed_rows, out_rows in zip(row_blocks(summed), row_blocks(out)):  # views: out is written in place
        out_rows[...] = _finish(summed_rows / len(plan.transforms), plan.output, out.dtype)


def _stitch(image: np.ndarray, target: np.ndarray, scaling, plan: _Plan, *, finish: str, accumulate: bool) -> None:
    """Run every tile of ``image`` and write its window into ``target`` (a possibly transformed view)."""
    layout = plan.layouts[image.shape[1:]]
    for batch, origins in _tile_batches(image, layout, scaling, plan.batch_size, plan.padding):
        logits = _forward(plan.network, batch, plan.device, plan.amp)
        _check_logits(logits, batch, layout, plan.num_classes)
        for tile_logits, (y, x) in zip(logits, origins):
            rows, cols = layout.write_window(y, x)
            region = tile_logits[:, : rows.stop - rows.start, : cols.stop - cols.start]
            if accumulate:
                target[:, rows, cols] += region
            else:
                target[..., rows, cols] = _finish(region, finish, target.dtype)
        plan.bar.update(len(origins))


def _tile_batches(
    image: np.ndarray, layout: TileLayout, scaling: tuple[np.ndarray, np.ndarray], batch_size: int,
    padding: str = "mirror",
) -> Iterator[tuple[np.ndarray, list[tuple[int, int]]]]:
    """Yield ``(batch (N, C, th, tw) float32, origins)``; only one batch exists at a time."""
    offset, scale = scaling
    origins = list(layout.origins())
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = np.empty((len(chunk), image.shape[0], *layout.tile), dtype=np.float32)
        for slot, (y, x) in enumerate(chunk):
            batch[slot] = _cut_tile(image, y, x, layout)
        batch -= offset
        batch *= scale
        if padding == "zero":
            for slot, (y, x) in enumerate(chunk):
                rows, cols = _tile_span(y, layout.tile[0]), _tile_span(x, layout.tile[1])
                batch[slot][:, (rows < 0) | (rows >= image.shape[-2]), :] = 0.0
                batch[slot][:, :, (cols < 0) | (cols >= image.shape[-1])] = 0.0
        yield batch, chunk


def _tile_span(origin: int, size: int) -> np.ndarray:
    """Image coordinates of a tile's input pixels along one axis (outside the image where < 0 or >= length)."""
    return np.arange(origin - BORDER, origin - BORDER + size)


def _cut_tile(image: np.ndarray, y: int, x: int, layout: TileLayout) -> np.ndarray:
    """The mirror-extrapolated input of the tile whose output starts at ``(y, x)``."""
    rows = mirror_index(_tile_span(y, layout.tile[0]), image.shape[-2])
    cols = mirror_index(_tile_span(x, layout.tile[1]), image.shape[-1])
    return image[:, rows[:, None], cols[None, :]]


def _forward(network: Callable, batch: np.ndarray, device: torch.device, amp: bool) -> np.ndarray:
    x = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
    with autocast(device, amp):
        logits = network(x)
    return logits.float().cpu().numpy()


def _check_logits(logits: np.ndarray, batch: np.ndarray, layout: TileLayout, num_classes: int) -> None:
    expected = (batch.shape[0], num_classes, *layout.out)
    if logits.shape != expected:
        raise UnetlibError(
            f"the model returned {logits.shape} for tiles {batch.shape}, expected {expected}: "
            "the model is not a valid-convolution U-Net with num_classes outputs"
        )
    if not np.isfinite(logits).all():
        raise UnetlibError(
            "the network produced NaN or infinite logits: the input is far outside the range it was "
            "trained on (check --normalize / the checkpoint's recipe) or the weights are corrupt"
        )


def _finish(logits: np.ndarray, output: str, dtype: np.dtype) -> np.ndarray:
    """Turn ``(C, h, w)`` logits into the requested output for that region."""
    if output == "logits":
        return logits
    if output == "probabilities":
        return softmax(logits, axis=0)
    return logits.argmax(axis=0).astype(dtype)
