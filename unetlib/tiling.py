"""Overlap-tile inference (paper Sec. 2 and Fig. 2): seamless prediction of any image.

The network sees a tile of ``16 k + 60`` pixels and predicts its centre, 92
pixels smaller on every side; the missing context at the image border is
extrapolated by mirroring (reflection without repeating the edge pixel, like
numpy's ``reflect``, repeated for images smaller than the context).

Seamless by construction
------------------------
The output of a valid-convolution U-Net at a pixel depends on the input around
it *and* on where the 2x2 max-pool grid (period 16 after four poolings) lies.
Here every tile's input origin sits at ``-92 + 16 m`` in image coordinates, so
all tiles share one pooling grid with a single virtual whole-image pass over the
mirror-extrapolated image that starts at ``-92``. Tile outputs are therefore
*identical* to that one pass (to float rounding), whatever the tile size: the
stride between tiles is the largest multiple of 16 not above the tile's output
edge (``16 k - 124`` is never a multiple of 16), and the few overlapping pixels
are simply not written twice. No blending is needed or done.

Memory stays bounded: tiles are cut straight from the (unpadded) image through
mirrored indices, normalised per tile, and streamed through the network in
batches; the output array is the only full-size buffer (plus one logit buffer
when labels are averaged over test-time transforms).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unetlib.errors import UnetlibError
from unetlib.model import BORDER, MIN_INPUT, check_input_size, input_size_for_output
from unetlib.runtime import autocast, pick_device, to_channels_last

__all__ = [
    "predict",
    "normalize_image",
    "plan_tiles",
    "TileLayout",
    "mirror_index",
    "tta_transforms",
    "softmax",
    "register_cli",
    "OUTPUTS",
    "TTA_MODES",
    "NORMALIZATIONS",
    "GRID",
]

GRID = 16  #: period of the pooling grid after four 2x2 max-pools (pixels)
OUTPUTS = ("probabilities", "logits", "labels")
TTA_MODES = ("none", "flips", "d4", "rotations")
NORMALIZATIONS = ("auto", "none", "zscore", "minmax")
_BYTES_PER_PIXEL_PER_WIDTH = 4 * 8  # fp32 activations alive at the peak, about 8 * width maps
_MAX_AUTO_BATCH = 16
_CHUNK_ROWS = 256  # rows per block for whole-image statistics and finishing passes


# --------------------------------------------------------------------------- #
# Mirror extrapolation
# --------------------------------------------------------------------------- #
def mirror_index(index: np.ndarray, size: int) -> np.ndarray:
    """Map coordinates outside ``[0, size)`` back inside by repeated mirroring.

    Reflection does not repeat the edge pixel (numpy ``reflect``): for
    ``size = 4`` the coordinates ``-2, -1, 0, 3, 4, 5`` map to ``2, 1, 0, 3, 2, 1``.
    Far coordinates reflect again (period ``2 * (size - 1)``), so a 92-pixel
    context also works for images of only a few pixels; a 1-pixel axis repeats.
    """
    index = np.asarray(index, dtype=np.int64)
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    folded = np.mod(index, period)
    return np.where(folded >= size, period - folded, folded)


# --------------------------------------------------------------------------- #
# Tile layout
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of one image lie, per axis ``(rows, columns)``.

    Attributes
    ----------
    shape : (int, int)
        Image height and width (pixels).
    tile : (int, int)
        Input tile edge, ``16 k + 60`` (pixels).
    stride : (int, int)
        Distance between tile origins, a multiple of 16 (pixels).
    counts : (int, int)
        Number of tiles along each axis.
    """

    shape: tuple[int, int]
    tile: tuple[int, int]
    stride: tuple[int, int]
    counts: tuple[int, int]

    @property
    def out(self) -> tuple[int, int]:
        """Output tile edge, ``tile - 184`` (pixels)."""
        return self.tile[0] - 2 * BORDER, self.tile[1] - 2 * BORDER

    @property
    def n_tiles(self) -> int:
        return self.counts[0] * self.counts[1]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Extent of the equivalent whole-image pass (input pixels, from -92)."""
        return tuple((n - 1) * s + t for n, s, t in zip(self.counts, self.stride, self.tile))

    def origins(self) -> Iterator[tuple[int, int]]:
        """Output origins ``(y, x)`` of the tiles in image coordinates, row by row."""
        for i in range(self.counts[0]):
            for j in range(self.counts[1]):
                yield i * self.stride[0], j * self.stride[1]

    def write_window(self, y: int, x: int) -> tuple[slice, slice]:
        """The image region the tile at ``(y, x)`` writes: up to the next tile, the last to the image end.

        Windows are disjoint and cover the image; the pixels a tile predicts
        beyond its window are identical to its neighbour's and are dropped.
        """
        return (
            _window(y, self.stride[0], self.counts[0], self.shape[0]),
            _window(x, self.stride[1], self.counts[1], self.shape[1]),
        )


def _window(origin: int, stride: int, count: int, length: int) -> slice:
    last = origin // stride == count - 1
    return slice(origin, length if last else origin + stride)


def _stride_for(tile: int) -> int:
    return GRID * ((tile - 2 * BORDER) // GRID)


def _count_for(length: int, tile: int) -> int | None:
    """Tiles needed along an axis of ``length`` pixels, or None if ``tile`` cannot tile it."""
    out = tile - 2 * BORDER
    if out >= length:
        return 1
    stride = _stride_for(tile)
    if stride == 0:
        return None
    return math.ceil((length - out) / stride) + 1


def _axis_layout(length: int, tile: int, what: str) -> tuple[int, int]:
    count = _count_for(length, tile)
    if count is None:
        raise ValueError(
            f"{what} {tile} gives a {tile - 2 * BORDER}-pixel output, less than one "
            f"{GRID}-pixel stride, and cannot tile {length} pixels; use a tile of at least "
            f"{MIN_INPUT + GRID}"
        )
    return _stride_for(tile) if count > 1 else max(_stride_for(tile), GRID), count


def _best_tile(length: int, cap: int) -> int:
    """Valid tile edge <= ``cap`` that feeds the fewest input pixels along an axis.

    The total input extent ``count * tile`` is minimised; ties go to the larger
    tile (fewer forward passes). The smallest tile that covers the axis in one
    pass is the largest candidate, since any larger single tile only adds padding.
    """
    largest = input_size_for_output(length)
    best, best_cost = None, None
    for tile in range(MIN_INPUT, max(min(cap, largest), MIN_INPUT + GRID) + 1, GRID):
        count = _count_for(length, tile)
        if count is None:
            continue
        cost = count * tile
        if best_cost is None or cost <= best_cost:
            best, best_cost = tile, cost
    return best


def _largest_tile(pixels: float) -> int:
    """Largest valid edge with ``edge <= pixels`` (at least the smallest tilable edge)."""
    edge = 60 + GRID * int((pixels - 60) // GRID) if pixels >= MIN_INPUT else MIN_INPUT
    return max(edge, MIN_INPUT + GRID)


def plan_tiles(
    shape: Sequence[int],
    tile: int | Sequence[int] | None = None,
    *,
    bytes_per_pixel: float = _BYTES_PER_PIXEL_PER_WIDTH * 64,
    memory_budget: float = 2**31,
) -> TileLayout:
    """Choose the tile layout for an image of ``shape = (height, width)`` pixels.

    Parameters
    ----------
    shape : (int, int)
        Image height and width (pixels).
    tile : int or (int, int) or None
        Input tile edge(s), each ``16 k + 60``. None chooses automatically:
        each axis takes the valid edge that feeds the fewest input pixels
        (``tiles * edge``), which is the smallest tile covering the image in one
        pass whenever that fits the memory budget, else (nearly always) the
        largest tile that fits. The shorter axis is chosen first under a square
        budget, the longer one with what remains.
    bytes_per_pixel : float
        Estimated peak memory of one forward per input pixel (bytes); default is
        the paper network (width 64) in fp32.
    memory_budget : float
        Bytes one forward pass of one tile may use (default 2 GiB).

    Returns
    -------
    TileLayout
    """
    height, width = _check_shape(shape)
    if tile is None:
        tile = _auto_tile(height, width, bytes_per_pixel, memory_budget)
    tile_h, tile_w = _check_tile(tile)
    stride_h, count_h = _axis_layout(height, tile_h, "tile height")
    stride_w, count_w = _axis_layout(width, tile_w, "tile width")
    return TileLayout((height, width), (tile_h, tile_w), (stride_h, stride_w), (count_h, count_w))


def _auto_tile(height: int, width: int, bytes_per_pixel: float, budget: float) -> tuple[int, int]:
    area = max(budget / bytes_per_pixel, 1.0)
    short, long_ = (height, width) if height <= width else (width, height)
    first = _best_tile(short, _largest_tile(math.sqrt(area)))
    second = _best_tile(long_, _largest_tile(area / first))
    return (first, second) if height <= width else (second, first)


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        raise UnetlibError(f"image shape {tuple(shape)} is empty or not 2-D; give a (height, width) of at least 1 pixel")
    return int(shape[0]), int(shape[1])


def _check_tile(tile: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(tile, (int, np.integer)):
        tile = (int(tile), int(tile))
    if len(tile) != 2:
        raise ValueError(f"tile must be an int or (height, width), got {tile!r}")
    return check_input_size(tile[0], "tile height"), check_input_size(tile[1], "tile width")


# --------------------------------------------------------------------------- #
# Test-time transforms (views on the last two axes)
# --------------------------------------------------------------------------- #
def tta_transforms(mode: str | None) -> list[Callable[[np.ndarray], np.ndarray]]:
    """The transforms averaged at test time, as functions returning numpy views.

    ``None``/``"none"``: identity. ``"flips"``: the release's four (none,
    left-right, up-down, both). ``"d4"`` (alias ``"rotations"``): the eight
    symmetries of the square, identity plus the paper's "7 rotated versions".
    Each acts on the last two axes.
    """
    mode = "none" if mode is None else str(mode).lower()
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES} or None, got {mode!r}")
    lr = lambda a: a[..., ::-1]  # noqa: E731
    ud = lambda a: a[..., ::-1, :]  # noqa: E731
    if mode == "none":
        return [lambda a: a]
    if mode == "flips":
        return [lambda a: a, lr, ud, lambda a: a[..., ::-1, ::-1]]
    rotations = [lambda a, k=k: np.rot90(a, k, axes=(-2, -1)) for k in range(4)]
    return rotations + [lambda a, r=r: r(lr(a)) for r in rotations]


# --------------------------------------------------------------------------- #
# Input checks and normalisation
# --------------------------------------------------------------------------- #
def _model_channels(model: torch.nn.Module) -> tuple[int, int]:
    try:
        return int(model.in_channels), int(model.num_classes)
    except AttributeError as exc:
        raise UnetlibError(
            f"{type(model).__name__} has no in_channels/num_classes; pass a unetlib UNet "
            "(or load one with unetlib.checkpoint.load_model)"
        ) from exc


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
        for block in _row_blocks(stack):
            if not np.isfinite(block).all():
                raise UnetlibError("image contains NaN or infinite values; replace them (e.g. np.nan_to_num) first")


def _row_blocks(array: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, array.shape[-2], _CHUNK_ROWS):
        yield array[..., start : start + _CHUNK_ROWS, :]


def _normalizer(image: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(offset, scale)`` for one ``(C, H, W)`` image: ``(x - offset) * scale``.

    ``"auto"``: integers divided by their dtype's maximum (uint8 -> /255, as the
    release), booleans as 0/1, floats as given. ``"none"``: values as given.
    ``"zscore"``: zero mean, unit standard deviation per channel.
    ``"minmax"``: ``[min, max]`` -> ``[0, 1]`` per channel.
    """
    channels = image.shape[0]
    offset, scale = np.zeros(channels), np.ones(channels)
    if mode == "auto" and image.dtype.kind in "iu":
        scale[:] = 1.0 / np.iinfo(image.dtype).max
    elif mode == "zscore":
        offset, std = _mean_std(image)
        scale = 1.0 / np.where(std > 0, std, 1.0)
    elif mode == "minmax":
        low = np.array([image[c].min() for c in range(channels)], dtype=np.float64)
        high = np.array([image[c].max() for c in range(channels)], dtype=np.float64)
        offset, scale = low, 1.0 / np.where(high > low, high - low, 1.0)
    shape = (channels, 1, 1)
    return offset.reshape(shape).astype(np.float32), scale.reshape(shape).astype(np.float32)


def normalize_image(image: np.ndarray, mode: str = "auto") -> np.ndarray:
    """One 2-D image (or ``(C, H, W)``) as float32, normalised exactly as :func:`predict` does.

    Use it on the training images so that training and inference see the same
    values (``mode`` as in :func:`predict`).
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {mode!r}")
    image = np.asarray(image)
    planes = image[None] if image.ndim == 2 else image
    offset, scale = _normalizer(planes, mode)
    out = (planes.astype(np.float32) - offset) * scale
    return out[0] if image.ndim == 2 else out


def _mean_std(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``(C, H, W)``, in float64, one row block at a time."""
    total = np.zeros(image.shape[0])
    squares = np.zeros(image.shape[0])
    for block in _row_blocks(image):
        block = block.astype(np.float64)
        total += block.sum(axis=(1, 2))
        squares += np.square(block).sum(axis=(1, 2))
    n = image.shape[1] * image.shape[2]
    mean = total / n
    return mean, np.sqrt(np.maximum(squares / n - mean**2, 0.0))


# --------------------------------------------------------------------------- #
# Streaming: tile batches in, stitched output out
# --------------------------------------------------------------------------- #
def _cut_tile(image: np.ndarray, y: int, x: int, layout: TileLayout) -> np.ndarray:
    """The mirror-extrapolated input of the tile whose output starts at ``(y, x)``."""
    rows = mirror_index(np.arange(y - BORDER, y - BORDER + layout.tile[0]), image.shape[-2])
    cols = mirror_index(np.arange(x - BORDER, x - BORDER + layout.tile[1]), image.shape[-1])
    return image[:, rows[:, None], cols[None, :]]


def _tile_batches(
    image: np.ndarray, layout: TileLayout, norm: tuple[np.ndarray, np.ndarray], batch_size: int
) -> Iterator[tuple[np.ndarray, list[tuple[int, int]]]]:
    """Yield ``(batch (N, C, th, tw) float32, origins)``; only one batch exists at a time."""
    offset, scale = norm
    origins = list(layout.origins())
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = np.empty((len(chunk), image.shape[0], *layout.tile), dtype=np.float32)
        for slot, (y, x) in enumerate(chunk):
            batch[slot] = _cut_tile(image, y, x, layout)
        batch -= offset
        batch *= scale
        yield batch, chunk


def _forward(model: torch.nn.Module, batch: np.ndarray, device: torch.device, amp: bool) -> np.ndarray:
    x = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
    with autocast(device, amp):
        logits = model(x)
    return logits.float().cpu().numpy()


def _check_logits(logits: np.ndarray, batch: np.ndarray, layout: TileLayout, num_classes: int) -> None:
    expected = (batch.shape[0], num_classes, *layout.out)
    if logits.shape != expected:
        raise UnetlibError(
            f"the model returned {logits.shape} for tiles {batch.shape}, expected {expected}: "
            "the model is not a valid-convolution U-Net with num_classes outputs"
        )


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Softmax of ``logits`` along ``axis`` (float32, numerically stable)."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted.astype(np.float32, copy=False)


def _label_dtype(num_classes: int) -> np.dtype:
    if num_classes <= 256:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16) if num_classes <= 65536 else np.dtype(np.int32)


def _finish(logits: np.ndarray, output: str, dtype: np.dtype) -> np.ndarray:
    """Turn ``(C, h, w)`` logits into the requested output for that region."""
    if output == "logits":
        return logits
    if output == "probabilities":
        return softmax(logits, axis=0)
    return logits.argmax(axis=0).astype(dtype)


@dataclass
class _Plan:
    """Everything fixed for one call: model, device, output kind, layouts, batching."""

    model: torch.nn.Module
    device: torch.device
    amp: bool
    output: str
    num_classes: int
    transforms: list
    layouts: dict  # transformed (H, W) -> TileLayout
    batch_size: int
    normalize: str
    bar: tqdm


def _predict_slice(image: np.ndarray, out: np.ndarray, plan: _Plan) -> None:
    """Predict one ``(C, H, W)`` image into ``out`` (``(K, H, W)`` or ``(H, W)``)."""
    norm = _normalizer(image, plan.normalize)
    if len(plan.transforms) == 1:
        _stitch(image, out, norm, plan, finish=plan.output, accumulate=False)
        return
    # average logits over transforms: out itself holds the sum unless labels are asked for
    summed = out if plan.output != "labels" else np.empty((plan.num_classes, *image.shape[1:]), np.float32)
    summed[...] = 0.0
    for transform in plan.transforms:
        _stitch(transform(image), transform(summed), norm, plan, finish="logits", accumulate=True)
    for rows in _row_slices(image.shape[1]):
        mean = summed[:, rows] / len(plan.transforms)
        out[..., rows, :] = _finish(mean, plan.output, out.dtype)


def _row_slices(height: int) -> Iterator[slice]:
    for start in range(0, height, _CHUNK_ROWS):
        yield slice(start, min(start + _CHUNK_ROWS, height))


def _stitch(image: np.ndarray, target: np.ndarray, norm, plan: _Plan, *, finish: str, accumulate: bool) -> None:
    """Run every tile of ``image`` and write its window into ``target`` (a possibly transformed view)."""
    layout = plan.layouts[image.shape[1:]]
    for batch, origins in _tile_batches(image, layout, norm, plan.batch_size):
        logits = _forward(plan.model, batch, plan.device, plan.amp)
        _check_logits(logits, batch, layout, plan.num_classes)
        for tile_logits, (y, x) in zip(logits, origins):
            rows, cols = layout.write_window(y, x)
            region = tile_logits[:, : rows.stop - rows.start, : cols.stop - cols.start]
            if accumulate:
                target[:, rows, cols] += region
            else:
                target[..., rows, cols] = _finish(region, finish, target.dtype)
        plan.bar.update(len(origins))


# --------------------------------------------------------------------------- #
# Memory budget and batch size
# --------------------------------------------------------------------------- #
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


def _bytes_per_pixel(model: torch.nn.Module) -> float:
    """Estimated peak forward memory per input pixel: about 8 fp32 maps of ``width`` channels."""
    return _BYTES_PER_PIXEL_PER_WIDTH * int(getattr(model, "width", 64))


def _auto_batch(layouts: Sequence[TileLayout], bytes_per_pixel: float, budget: float) -> int:
    layout = layouts[0]
    per_tile = bytes_per_pixel * layout.tile[0] * layout.tile[1]
    fits = int(budget // per_tile)
    return max(1, min(fits, max(l.n_tiles for l in layouts), _MAX_AUTO_BATCH))


# --------------------------------------------------------------------------- #
# The public function
# --------------------------------------------------------------------------- #
def predict(
    model: torch.nn.Module,
    image,
    *,
    tile: int | Sequence[int] | None = None,
    batch_size: int | None = None,
    tta: str | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    output: str = "probabilities",
    normalize: str = "auto",
    memory_budget: float | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Seamless overlap-tile prediction of an image or a stack (paper Sec. 2, Fig. 2).

    Parameters
    ----------
    model : UNet
        A valid-convolution U-Net (92-pixel border) with ``in_channels`` and
        ``num_classes``. It is put in eval mode during the call (its training
        flag is restored afterwards) and moved to ``device`` in channels_last
        layout, where it stays.
    image : array_like
        Integer or float pixels. Single-channel models: ``(H, W)`` or a stack
        ``(S, H, W)``; models with ``in_channels = C > 1``: ``(C, H, W)`` or
        ``(S, C, H, W)`` (channels first). Any size of at least 1 pixel.
    tile : int or (int, int), optional
        Input tile edge(s), ``16 k + 60`` pixels (572 in the paper). Default: the
        valid edge per axis feeding the fewest input pixels under
        ``memory_budget`` -- one tile covering the image when it fits, else the
        largest that fits (see :func:`plan_tiles`).
    batch_size : int, optional
        Tiles per forward pass. Default: as many as fit ``memory_budget``
        (at most 16, at most the number of tiles).
    tta : {None, "none", "flips", "d4", "rotations"}
        Test-time averaging. ``"flips"`` are the release's 4 flips, ``"d4"``
        (= ``"rotations"``) the 8 symmetries of the square (the paper's
        "7 rotated versions" plus the identity). The *logits* of the transformed
        predictions, mapped back, are averaged (as the release does before its
        argmax); probabilities are the softmax of that mean, i.e. a normalised
        geometric mean of the per-transform probabilities, so labels and
        probabilities always agree. Default: none.
    device : str or torch.device, optional
        Default CUDA when available, else the CPU.
    amp : bool
        Autocast (bf16/fp16 on CUDA, bf16 only on CPUs with native bf16) when
        True (default); fp32 otherwise.
    output : {"probabilities", "logits", "labels"}
        ``(K, H, W)`` float32 softmax or logits, or ``(H, W)`` argmax labels
        (uint8 for up to 256 classes, else uint16). Stacks get a leading ``S``.
    normalize : {"auto", "none", "zscore", "minmax"}
        ``"auto"`` (default) divides integer images by their dtype's maximum
        (uint8 -> /255, as the release) and uses float images as given;
        ``"none"`` uses values as given; ``"zscore"`` / ``"minmax"`` scale each
        channel of each image (slice) to zero mean and unit std / to [0, 1].
    memory_budget : float, optional
        Bytes one forward pass may use (tile choice and batch size). Default:
        half the free GPU memory, or half the available RAM up to 4 GiB.
    progress : bool, optional
        tqdm bar over tiles; default shown for stacks (on a terminal).

    Returns
    -------
    numpy.ndarray
        ``(K, H, W)`` / ``(S, K, H, W)`` float32, or ``(H, W)`` / ``(S, H, W)`` labels.
        It equals the network applied once to the whole mirror-extrapolated
        image (to float rounding), for every tile size.
    """
    stack, is_stack = _validate(model, image, output, normalize)
    plan = _make_plan(model, stack, tile, batch_size, tta, device, amp, output, normalize, memory_budget, progress, is_stack)
    result = _allocate_output(stack, plan)
    training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            for index in range(stack.shape[0]):
                _predict_slice(stack[index], result[index], plan)
    finally:
        model.train(training)
        plan.bar.close()
    return result if is_stack else result[0]


def _validate(model, image, output: str, normalize: str) -> tuple[np.ndarray, bool]:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    in_channels, _ = _model_channels(model)
    stack, is_stack = _as_stack(image, in_channels)
    _check_values(stack)
    return stack, is_stack


def _make_plan(model, stack, tile, batch_size, tta, device, amp, output, normalize, budget, progress, is_stack) -> _Plan:
    device = pick_device(device)
    model = to_channels_last(model, device)
    _, num_classes = _model_channels(model)
    budget = _default_budget(device) if budget is None else float(budget)
    bpp = _bytes_per_pixel(model)
    transforms = tta_transforms(tta)
    layouts = _layouts_for(stack.shape[-2:], tile, transforms, bpp, budget)
    if batch_size is None:
        batch_size = _auto_batch(list(layouts.values()), bpp, budget)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    probe = _probe(stack.shape[-2:])
    n_tiles = stack.shape[0] * sum(layouts[t(probe).shape].n_tiles for t in transforms)
    bar = tqdm(total=n_tiles, unit="tile", desc="predict", disable=(None if is_stack else True) if progress is None else not progress)
    return _Plan(model, device, bool(amp), output, num_classes, transforms, layouts, int(batch_size), normalize, bar)


def _layouts_for(shape, tile, transforms, bpp: float, budget: float) -> dict:
    """One layout per transformed image shape; a given tile is transposed with the image."""
    height, width = (int(s) for s in shape)
    layouts = {(height, width): plan_tiles((height, width), tile, bytes_per_pixel=bpp, memory_budget=budget)}
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


def _allocate_output(stack: np.ndarray, plan: _Plan) -> np.ndarray:
    n, _, height, width = stack.shape
    if plan.output == "labels":
        return np.empty((n, height, width), dtype=_label_dtype(plan.num_classes))
    return np.empty((n, plan.num_classes, height, width), dtype=np.float32)


# --------------------------------------------------------------------------- #
# Command line: unetlib predict
# --------------------------------------------------------------------------- #
def register_cli(subparsers) -> None:
    """Add ``unetlib predict CHECKPOINT IMAGE ...``."""
    parser = subparsers.add_parser(
        "predict",
        help="overlap-tile prediction of an image or TIFF stack",
        description="Seamless overlap-tile prediction (paper Fig. 2) of a 2-D TIFF/PNG image or a TIFF "
        "stack with a trained checkpoint; writes float32 probabilities and/or labels as TIFF.",
    )
    parser.add_argument("checkpoint", help="checkpoint written by `unetlib train`")
    parser.add_argument("image", help="2-D TIFF/PNG image or TIFF stack (S, H, W)")
    parser.add_argument("--probabilities", metavar="OUT.tif", help="write float32 softmax probabilities here")
    parser.add_argument("--labels", metavar="OUT.tif", help="write argmax labels (uint8/uint16) here")
    parser.add_argument("--class", dest="class_index", type=int, metavar="K",
                        help="write only P(class K) to --probabilities (e.g. 1 = P(cell) for the ISBI submission)")
    parser.add_argument("--tile", metavar="T or HxW", help="input tile edge, 16k + 60 (default: automatic)")
    parser.add_argument("--tta", choices=("none", "flips", "d4"), default="none", help="test-time averaging")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--batch-size", type=int, help="tiles per forward pass (default: automatic)")
    parser.add_argument("--normalize", choices=NORMALIZATIONS, default="auto", help="input scaling (default auto)")
    parser.add_argument("--no-amp", action="store_true", help="compute in fp32")
    parser.set_defaults(func=_cli_predict)


def _cli_predict(args) -> int:
    from unetlib.checkpoint import load_model

    _check_cli_outputs(args)
    model = load_model(args.checkpoint, device="cpu")
    _check_class(args.class_index, model.num_classes, args.checkpoint)
    image = _read_image(Path(args.image), model.in_channels)
    logits = predict(
        model, image, tile=_parse_tile(args.tile), batch_size=args.batch_size, tta=args.tta,
        device=args.device, amp=not args.no_amp, output="logits", normalize=args.normalize, progress=True,
    )
    class_axis = logits.ndim - 3
    if args.probabilities:
        probabilities = softmax(logits, axis=class_axis)
        if args.class_index is not None:
            probabilities = np.take(probabilities, args.class_index, axis=class_axis)
        _write_tiff(Path(args.probabilities), probabilities)
    if args.labels:
        _write_tiff(Path(args.labels), logits.argmax(axis=class_axis).astype(_label_dtype(model.num_classes)))
    return 0


def _check_cli_outputs(args) -> None:
    if not args.probabilities and not args.labels:
        raise UnetlibError("nothing to write: give --probabilities OUT.tif and/or --labels OUT.tif")
    if args.class_index is not None and not args.probabilities:
        raise UnetlibError("--class selects a probability map: also give --probabilities OUT.tif")


def _check_class(class_index: int | None, num_classes: int, checkpoint: str) -> None:
    if class_index is not None and not 0 <= class_index < num_classes:
        raise UnetlibError(f"--class {class_index} does not exist: {checkpoint} has classes 0..{num_classes - 1}")


def _parse_tile(text: str | None):
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise UnetlibError(f"--tile {text!r} is not a number or HxW (e.g. 572 or 444x892)") from None
    if len(parts) not in (1, 2):
        raise UnetlibError(f"--tile {text!r} is not a number or HxW (e.g. 572 or 444x892)")
    return parts[0] if len(parts) == 1 else tuple(parts)


def _read_image(path: Path, in_channels: int) -> np.ndarray:
    """A TIFF (2-D or stack) or another image file; colour files become channels first."""
    if not path.is_file():
        raise UnetlibError(f"image {path} does not exist; give a 2-D TIFF/PNG or a TIFF stack")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        image = tifffile.imread(path)
        if in_channels > 1 and image.ndim in (3, 4) and image.shape[-1] == in_channels and image.shape[-3] != in_channels:
            image = np.moveaxis(image, -1, -3)
        return image
    from skimage import io

    image = io.imread(path)
    if image.ndim == 3 and in_channels > 1 and image.shape[-1] == in_channels:
        return np.moveaxis(image, -1, 0)
    if image.ndim == 3 and in_channels == 1:
        raise UnetlibError(f"{path} has {image.shape[-1]} colour channels but the model takes 1: save it as greyscale")
    return image


def _write_tiff(path: Path, array: np.ndarray) -> None:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, photometric="minisblack")
    print(f"wrote {path} {array.dtype} {array.shape}")
