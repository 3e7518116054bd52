"""Geometry of overlap-tile inference (paper Sec. 2, Fig. 2) and of the square's symmetries.

- :func:`mirror_index`: coordinates outside an image mapped back inside by
  mirroring (reflection without repeating the edge pixel, numpy's ``reflect``),
  the extrapolation of Fig. 2; :func:`unetlib.augment` uses its float twin.
- :class:`TileLayout` / :func:`plan_tiles`: where the tiles of an image lie.
  Every tile's input origin sits at ``-92 + 16 m`` in image coordinates, so
  all tiles share one max-pool grid with a single virtual pass of the network
  over the whole mirror-extrapolated image: the stride between tiles is the
  largest multiple of 16 not above the tile's output edge (``16 k - 124`` is
  never a multiple of 16), and the few pixels two tiles both predict are
  written once. Stitched outputs are therefore seamless by construction.
- :func:`tta_transforms`: the flips and rotations averaged at test time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from unetlib.errors import UnetlibError
from unetlib.model import BORDER, MIN_INPUT, check_input_size, input_size_for_output

__all__ = ["GRID", "TTA_MODES", "PADDINGS", "mirror_index", "TileLayout", "plan_tiles", "tta_transforms", "check_image_shape",
           "border_band"]

GRID = 16  #: period of the pooling grid after four 2x2 max-pools (pixels)
TTA_MODES = ("none", "flips", "d4")
#: What fills a tile beyond the image, in training and inference: its mirror image (the paper's, Fig. 2), or zeros.
PADDINGS = ("mirror", "zero")
_BYTES_PER_PIXEL_PER_WIDTH = 4 * 8  # fp32 activations alive at the peak, about 8 * width maps


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
        raise UnetlibError(
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
    first_touch: float = 0.0,
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
    first_touch : float
        What the first forward pass pays for its memory, in input pixels of
        computing per tile pixel (0: nothing). On the CPU a large tile's buffers
        are fresh pages the first time (each faulted in by the kernel) and reused
        by the next tiles, so it costs ``(tiles + first_touch) * area`` input
        pixels: the automatic choice then minimises that over every pair of valid
        edges instead. Only tiles whose feature maps (about ``bytes_per_pixel / 8``
        bytes per pixel each) reach glibc's 32 MiB mapping threshold pay it;
        smaller ones come from the heap.

    Returns
    -------
    TileLayout
    """
    height, width = check_image_shape(shape)
    if tile is None and first_touch > 0:
        tile = _auto_tile_first_touch(height, width, bytes_per_pixel, memory_budget, first_touch)
    elif tile is None:
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


def _auto_tile_first_touch(height: int, width: int, bytes_per_pixel: float, budget: float,
                           first_touch: float) -> tuple[int, int]:
    """The pair of valid edges with the least ``_first_touch_cost`` within the budget."""
    def candidates(length):  # ascending edges
        edges = range(MIN_INPUT, max(input_size_for_output(length), MIN_INPUT + GRID) + 1, GRID)
        return [(edge, count) for edge in edges if (count := _count_for(length, edge)) is not None]

    rows, cols = candidates(height), candidates(width)
    best, best_cost = (rows[0][0], cols[0][0]), None  # the smallest tile, when nothing fits the budget
    for tile_h, count_h in rows:
        for tile_w, count_w in cols:
            if tile_h * tile_w * bytes_per_pixel > budget:
                break  # larger edges only grow
            cost = _first_touch_cost(count_h * count_w, tile_h * tile_w, bytes_per_pixel, first_touch)
            if best_cost is None or cost < best_cost or (cost == best_cost and tile_h * tile_w > best[0] * best[1]):
                best, best_cost = (tile_h, tile_w), cost
    return best


#: glibc maps buffers of this size or more afresh (its adaptive threshold's ceiling)
_MAPPED_BYTES = 32 * 2**20


def _first_touch_cost(tiles: int, area: int, bytes_per_pixel: float, first_touch: float) -> float:
    """Input pixels computed plus the first touch of one tile's memory, for ``tiles`` tiles of ``area``."""
    fresh = first_touch if bytes_per_pixel / 8 * area >= _MAPPED_BYTES else 0.0
    return (tiles + fresh) * area


def check_image_shape(shape: Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` as ints if ``shape`` is two whole numbers of pixels, both at least 1."""
    if len(shape) != 2 or any(int(n) != n or n < 1 for n in shape):
        raise UnetlibError(f"image shape {tuple(shape)} is not a (height, width) of whole pixels, both at least 1")
    return int(shape[0]), int(shape[1])


def _check_tile(tile: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(tile, (int, np.integer)):
        tile = (int(tile), int(tile))
    if len(tile) != 2:
        raise UnetlibError(f"tile must be an int or (height, width), got {tile!r}")
    return check_input_size(tile[0], "tile height"), check_input_size(tile[1], "tile width")


def tta_transforms(mode: str | None) -> list[Callable[[np.ndarray], np.ndarray]]:
    """The transforms averaged at test time, as functions returning numpy views.

    ``None``/``"none"``: identity. ``"flips"``: the release's four (none,
    left-right, up-down, both). ``"d4"``: the eight symmetries of the square
    (four rotations, each with and without a mirror), the identity plus the
    paper's "7 rotated versions".
    Each acts on the last two axes.
    """
    mode = "none" if mode is None else str(mode).lower()
    if mode not in TTA_MODES:
        raise UnetlibError(f"tta must be one of {TTA_MODES} or None, got {mode!r}")
    lr = lambda a: a[..., ::-1]  # noqa: E731
    ud = lambda a: a[..., ::-1, :]  # noqa: E731
    if mode == "none":
        return [lambda a: a]
    if mode == "flips":
        return [lambda a: a, lr, ud, lambda a: a[..., ::-1, ::-1]]
    rotations = [lambda a, k=k: np.rot90(a, k, axes=(-2, -1)) for k in range(4)]
    return rotations + [lambda a, r=r: r(lr(a)) for r in rotations]


def border_band(shape: tuple[int, int], width: int) -> np.ndarray:
    """True within ``width`` pixels of the border of an image of ``shape``: where an overlap tile's context
    reaches past the image (``width`` = the network's border, 92 px) and is extrapolated."""
    band = np.ones(shape, bool)
    band[width:-width, width:-width] = False
    return band
