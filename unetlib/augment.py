"""Data augmentation for training (paper Section 3.1).

The paper's elastic deformation: "random displacement vectors on a coarse 3 by
3 grid ... sampled from a Gaussian distribution with 10 pixels standard
deviation. Per-pixel displacements are then computed using bicubic
interpolation." Besides, the paper names shift, rotation and gray-value
variation without ranges.

Deterministic core (randomness passed in as data)
-------------------------------------------------
- :func:`elastic_grid` draws the coarse grid ``(2, points, points)``
  (dy, dx in pixels) from a ``numpy.random.Generator``.
- :func:`displacement_field` interpolates it to a dense ``(2, H, W)`` field
  with bicubic convolution (Keys, a = -0.75: PyTorch's ``bicubic`` with
  ``align_corners=True``), computed exactly as two small matrices
  ``field = M_H @ grid @ M_W.T``. The grid's corner points lie on the image's
  corner pixels.
- :func:`deform` pulls the image through a dense field:
  ``out[y, x] = image[y + dy[y, x], x + dx[y, x]]``.

Measured (1000 draws, sigma = 10 px, 3x3 grid, 572 x 572): per pixel the
displacement has an RMS length of 11.0 px (7.7 px RMS per axis) and a mean
length of 9.6 px. It is largest at the grid points (RMS length 14.1 px =
sigma sqrt(2)) and smallest in the middle of a grid cell (8.7 px), since the
interpolation averages neighbouring grid vectors.

Choices made here where the paper is silent
-------------------------------------------
- Training tiles: the output tile's centre is a uniform random pixel of the
  image (this is the "shift"); ``max_shift`` adds a continuous offset,
  uniform in ``[-max_shift, max_shift]`` per axis (default 0.5 px, which makes
  tile positions continuous).
- Rotation: uniform in ``[0, 360)`` degrees about the tile centre; flip: a
  left-right mirror with probability 1/2 (with the rotation this covers every
  flip). The elastic grid spans the input tile (corners on its corners) and
  acts before the flip and rotation.
- Sampling: the image bicubic (cubic convolution, a = -0.75), the target and
  weights nearest neighbour, so only input labels appear. Outside the image,
  coordinates are mirrored without repeating the edge pixel (numpy
  ``"reflect"``), so every output pixel has a value and images smaller than a
  tile work.
- Gray values, after sampling, on the input tile with value range [lo, hi]:
  a gamma ``g`` applied within that range (``lo + (hi - lo) * ((x - lo) / (hi - lo)) ** g``),
  then a contrast factor ``c`` about the tile mean, then a brightness offset
  ``b * (hi - lo)``; ``g``, ``c``, ``b`` uniform in ``1 +- gamma``,
  ``1 +- contrast``, ``+- brightness`` (defaults 0.2, 0.1, 0.1). Working in the
  tile's own range makes the variation follow the input's units ([0, 1] or
  standardised), but not its outliers: where a few bright pixels stretch the
  range (phase-contrast and DIC halos: about 18 standard deviations), a
  brightness of 0.1 of the range shifts the tile by up to 1.8 standard
  deviations. The cell-dataset recipes therefore switch it off
  (``unetlib.recipe.WHY``).
- Zoom (``scale``, default 0 = off; not in the paper): the tile samples the
  image ``z`` times as densely, ``z`` log-uniform in ``[1 / (1 + scale),
  1 + scale]``, so cells appear up to ``1 + scale`` times larger or smaller.
  It acts after the rotation, about the tile centre, so it scales the elastic
  displacements too.
- Every call draws the same random numbers in the same order (centre if not
  given, grid, angle, flip, shift, gamma, contrast, brightness, and last the
  zoom, drawn only when ``scale > 0``), so switching one augmentation off
  leaves the others' draws unchanged, and a recipe without zoom draws exactly
  as before the zoom existed.

Touching cells (``paste_touching``; not in the paper)
-----------------------------------------------------
A frame-level addition for cell sequences whose annotated frames show no
near-touching neighbours (PhC-U373 sequence 01): a copy of the frame in which
a cell, with a ring of ``halo`` pixels of its background surroundings, is
pasted beside another cell, 1 to 3 4-neighbour steps away (0 to 2 background
pixels between them, as :func:`unetlib.data.touching_pairs` counts), so that
Eq. 2's border term has a narrow gap to weigh. The pasted cell keeps its
pixels and gets a new label; no cell's pixels are overwritten, and the pasted
cell comes no nearer than ``2 * halo`` 4-neighbour steps to any cell but its
new neighbour, nor onto ``avoid`` (cells that have a tracking marker but no
mask). Distances are in pixels of the frame as given (before ``resample``).

Exactness: interpolation runs on a canvas of ``2**k + 1`` pixels per axis
(the mirrored image at its top-left), so that PyTorch's normalised grid
coordinates are exact binary fractions: an integer sampling position returns
the pixel exactly, in float32 too, and an unaugmented tile is exactly the
mirrored crop.

Speed: one augmented 572 x 572 training tile takes about 10-30 ms on two CPU
cores, depending on the machine and on how busy the cores are
(``python -m benchmarks.bench_augment``; docs/performance.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from unetlib.errors import UnetlibError
from unetlib.geometry import PADDINGS, check_image_shape, mirror_index
from unetlib.values import check_bool, check_choice, check_integer, check_real
from unetlib.weights import check_mask

__all__ = ["elastic_grid", "displacement_field", "deform", "AugmentParams", "random_tile", "augmented_tile",
           "paste_touching"]

_CUBIC_A = -0.75  # PyTorch's bicubic constant
_PAD = 2  # mirrored pixels around the image, for the 4x4 cubic footprint
_GRID_SAMPLE_MODES = {1: "bilinear", 3: "bicubic"}


# --------------------------------------------------------------------------- #
# Touching cells: a frame with a cell pasted beside another
# --------------------------------------------------------------------------- #
def paste_touching(image, mask, rng: np.random.Generator, *, pastes: int = 3, gap: tuple[int, int] = (1, 3),
                   halo: int = 4, avoid=None, tries: int = 200) -> tuple[np.ndarray, np.ndarray, int]:
    """A copy of ``image`` and its instance ``mask`` with up to ``pastes`` cells pasted beside others.

    Each paste copies a random cell and the ``halo`` background pixels around
    it (4-neighbour steps) beside another random cell: walking out from that
    cell's centre in a random direction, the copy stops at the first place
    where it lies at least ``g`` 4-neighbour steps from it (``g`` drawn
    uniformly from ``gap``, both ends included); the place is taken if it is
    at most ``gap[1]`` steps away, the copy and its ring lie inside the frame
    and off ``avoid``, and the copy stays ``2 * halo`` steps from every other
    cell (a step along a diagonal can overshoot ``g`` by one). After ``tries``
    draws fewer pastes may be made. Returns the new image, the new mask
    (pasted cells labelled after the largest label, at least int32) and the
    number of pastes made. The inputs are not changed.
    """
    _check_rng(rng)
    mask = check_mask(mask, "mask")
    image = np.asarray(image)
    if image.shape != mask.shape:
        raise UnetlibError(f"image and mask must have one shape, got {image.shape} and {mask.shape}")
    pastes = check_integer("pastes", pastes, 0)
    halo = check_integer("halo", halo, 0)
    tries = check_integer("tries", tries, 1)
    if not (isinstance(gap, (tuple, list)) and len(gap) == 2):
        raise UnetlibError(f"gap must be a pair (fewest, most) of 4-neighbour steps, got {gap!r}")
    low, high = (check_integer("gap", g, 1) for g in gap)
    if high < low:
        raise UnetlibError(f"gap must be a pair (fewest, most) of 4-neighbour steps, got {tuple(gap)}")
    blocked = np.zeros(mask.shape, bool) if avoid is None else np.asarray(avoid, bool)
    if blocked.shape != mask.shape:
        raise UnetlibError(f"avoid must have the mask's shape {mask.shape}, got {blocked.shape}")
    out_image, out_mask = image.copy(), mask.astype(np.promote_types(mask.dtype, np.int32))
    made = 0
    for _ in range(tries):
        if made == pastes:
            break
        labels = np.unique(out_mask)
        labels = labels[labels > 0]
        if labels.size == 0:
            break
        source, neighbour = (int(v) for v in rng.choice(labels, 2, replace=labels.size < 2))
        reach = (int(rng.integers(low, high + 1)), high)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        place = _touching_place(out_mask, source, neighbour, reach, angle, halo, blocked)
        if place is None:
            continue
        (cy, cx), (ry, rx), (dy, dx) = place
        out_image[ry + dy, rx + dx] = out_image[ry, rx]
        out_image[cy + dy, cx + dx] = out_image[cy, cx]
        out_mask[cy + dy, cx + dx] = out_mask.max() + 1
        made += 1
    return out_image, out_mask, made


def _touching_place(mask: np.ndarray, source: int, neighbour: int, reach: tuple[int, int], angle: float,
                    halo: int, blocked: np.ndarray):
    """Where cell ``source`` goes to lie ``reach[0]`` to ``reach[1]`` 4-neighbour steps from ``neighbour``,
    walking out from the neighbour's centre along ``angle``: ``(cell pixels, ring pixels, (dy, dx))`` at the
    source position (ring: the halo pixels, background at both ends), or None where that place is not free."""
    cell = mask == source
    near = mask == neighbour
    steps_to = ndimage.distance_transform_cdt(~near, metric="taxicab")  # as data.touching_pairs counts
    others = (mask > 0) & ~near
    if source != neighbour:
        others |= cell  # the original stays where it is
    crowded = ndimage.binary_dilation(others, iterations=2 * halo) if halo else others
    ring = ndimage.binary_dilation(cell, iterations=halo) & (mask == 0) & ~blocked if halo else np.zeros_like(cell)
    cy, cx = np.nonzero(cell)
    ry, rx = np.nonzero(ring)
    ny, nx = np.nonzero(near)
    start_y, start_x = ny.mean() - cy.mean(), nx.mean() - cx.mean()
    h, w = mask.shape
    for t in range(h + w):
        dy, dx = round(start_y + t * math.sin(angle)), round(start_x + t * math.cos(angle))
        ty, tx, uy, ux = cy + dy, cx + dx, ry + dy, rx + dx
        if int(steps_to[np.clip(ty, 0, h - 1), np.clip(tx, 0, w - 1)].min()) < reach[0]:
            continue  # still too close (or over the neighbour): walk on
        ys, xs = np.concatenate([ty, uy]), np.concatenate([tx, ux])
        inside = ys.min() >= 0 and xs.min() >= 0 and ys.max() < h and xs.max() < w
        if not inside or steps_to[ty, tx].min() > reach[1] or blocked[ty, tx].any() or blocked[uy, ux].any() \
                or crowded[ty, tx].any():
            return None
        free = mask[uy, ux] == 0  # never over a cell, the neighbour included
        return (cy, cx), (ry[free], rx[free]), (dy, dx)
    return None


# --------------------------------------------------------------------------- #
# Deterministic core
# --------------------------------------------------------------------------- #
def elastic_grid(rng: np.random.Generator, points: int = 3, sigma: float = 10.0) -> np.ndarray:
    """Random displacement vectors on a coarse ``points x points`` grid.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness.
    points : int, default 3
        Grid points per axis (paper: 3), at least 2.
    sigma : float, default 10
        Standard deviation of each displacement component, pixels (paper: 10).

    Returns
    -------
    ndarray (2, points, points), float64
        ``[0]`` = dy, ``[1]`` = dx, in pixels.
    """
    _check_rng(rng)
    points, sigma = check_integer("points", points, 2), check_real("sigma", sigma, 0)
    return rng.normal(0.0, sigma, size=(2, points, points))


def displacement_field(grid, shape):
    """Dense per-pixel displacements from a coarse grid, by bicubic interpolation.

    The grid's corner points sit on the image's corner pixels (PyTorch's
    ``align_corners=True``); in between, cubic convolution (a = -0.75).

    Parameters
    ----------
    grid : ndarray or torch.Tensor (2, p, p)
        Coarse displacements (dy, dx), pixels.
    shape : (int, int)
        Image height and width, pixels.

    Returns
    -------
    ndarray (2, H, W) float64 for a numpy grid; for a tensor, a tensor of its
    floating dtype on its device.
    """
    height, width = check_image_shape(shape)
    if isinstance(grid, torch.Tensor):
        grid = grid if grid.is_floating_point() else grid.double()
    else:
        grid = np.asarray(grid, dtype=np.float64)
    _check_grid(grid)
    return _dense_field(grid, height, width)


def _dense_field(grid, height: int, width: int):
    """``M_H @ grid @ M_W.T`` for a checked floating ``grid`` (2, p, q), tensor or float64 array."""
    if isinstance(grid, torch.Tensor):
        rows = torch.tensor(_bicubic_matrix(height, grid.shape[-2]), dtype=grid.dtype, device=grid.device)
        cols = torch.tensor(_bicubic_matrix(width, grid.shape[-1]), dtype=grid.dtype, device=grid.device)
    else:
        rows, cols = _bicubic_matrix(height, grid.shape[-2]), _bicubic_matrix(width, grid.shape[-1])
    return rows @ grid @ cols.T


def deform(image, displacement, order: int = 3, mode: str = "reflect"):
    """Resample ``image`` at ``(y + dy, x + dx)`` for every pixel ``(y, x)``.

    Parameters
    ----------
    image : ndarray or torch.Tensor, (H, W) or (C, H, W)
        Floating point for ``order`` 1 and 3; any dtype for ``order`` 0.
    displacement : ndarray or torch.Tensor (2, H, W)
        ``[0]`` = dy, ``[1]`` = dx, pixels (see :func:`displacement_field`).
    order : {3, 1, 0}, default 3
        Bicubic (cubic convolution, a = -0.75), bilinear or nearest neighbour
        (nearest keeps the dtype and only ever returns input values: labels).
    mode : {"reflect"}, default "reflect"
        Positions outside the image are mirrored without repeating the edge
        pixel (numpy's ``"reflect"``).

    Returns
    -------
    Same type, shape and dtype as ``image`` (a tensor stays on its device).
    Zero displacement returns ``image`` exactly.
    """
    _check_order(order)
    _check_mode(mode)
    planes, field = _as_planes(image, displacement, order)
    height, width = planes.shape[-2:]
    ys = torch.arange(height, device=field.device, dtype=field.dtype)[:, None] + field[0]
    xs = torch.arange(width, device=field.device, dtype=field.dtype)[None, :] + field[1]
    out = _sample(planes.to(field.dtype) if order else planes, ys, xs, order)
    out = out.reshape(image.shape).to(planes.dtype)
    return out if isinstance(image, torch.Tensor) else out.numpy()


# --------------------------------------------------------------------------- #
# Training tiles
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class AugmentParams:
    """Augmentation settings for :func:`random_tile` (defaults: the module's choices).

    Attributes
    ----------
    enabled : bool, default True
        False: a plain mirrored crop around the centre (no deformation, no
        gray-value change), whatever the other fields say.
    elastic_points : int, default 3
        Coarse grid points per axis (paper: 3).
    elastic_sigma : float, default 10
        Standard deviation of the grid displacements, pixels (paper: 10);
        0 switches the elastic deformation off.
    rotation : bool, default True
        Rotate by a uniform angle in [0, 360) degrees.
    flip : bool, default True
        Mirror left-right with probability 1/2.
    max_shift : float, default 0.5
        Extra tile offset, uniform in [-max_shift, max_shift] pixels per axis.
    brightness, contrast, gamma : float, default 0.1, 0.1, 0.2
        Gray-value ranges: offset in +-brightness, factor about the tile
        mean in 1 +- contrast, exponent in 1 +- gamma (image in [0, 1]);
        all three 0 switch gray-value variation off.
    image_order : {3, 1}, default 3
        Image interpolation: bicubic or bilinear.
    scale : float, default 0
        Zoom range: factor log-uniform in ``[1 / (1 + scale), 1 + scale]``;
        0 switches the zoom off.
    padding : {"mirror", "zero"}, default "mirror"
        Beyond the image a tile holds its mirror image (the paper's), or zeros
        with loss weight 0 (the alternative the claims compare against).
    """

    enabled: bool = True
    elastic_points: int = 3
    elastic_sigma: float = 10.0
    rotation: bool = True
    flip: bool = True
    max_shift: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.2
    image_order: int = 3
    scale: float = 0.0
    padding: str = "mirror"

    def __post_init__(self):
        for name in ("enabled", "rotation", "flip"):
            check_bool(f"AugmentParams.{name}", getattr(self, name))
        check_integer("AugmentParams.elastic_points", self.elastic_points, 2)
        check_real("AugmentParams.elastic_sigma", self.elastic_sigma, 0)
        for name in ("max_shift", "brightness", "scale"):
            check_real(f"AugmentParams.{name}", getattr(self, name), 0)
        for name in ("contrast", "gamma"):  # a range 1 +- value
            check_real(f"AugmentParams.{name}", getattr(self, name), 0, 1, high_open=True)
        if self.image_order not in _GRID_SAMPLE_MODES or isinstance(self.image_order, bool):
            raise UnetlibError(f"AugmentParams.image_order must be 3 (bicubic) or 1 (bilinear), got {self.image_order!r}")
        check_choice("AugmentParams.padding", self.padding, PADDINGS)


@dataclass(frozen=True)
class _Draw:
    """The random numbers of one tile."""

    center: tuple[int, int]
    grid: np.ndarray
    angle: float
    flip: bool
    shift: np.ndarray
    gamma: float
    contrast: float
    brightness: float
    zoom: float = 1.0


def random_tile(image, target, weights, *, in_size, out_size, rng, params=None, center=None, device="cpu"):
    """One augmented training sample: input tile, target and weights of its centre.

    Parameters
    ----------
    image : ndarray or torch.Tensor (H, W), floating
        Gray values scaled to [0, 1].
    target : ndarray or torch.Tensor (H, W), integer or bool
        Class labels (e.g. :func:`unetlib.weights.separation_target`).
    weights : ndarray or torch.Tensor (H, W), floating
        Per-pixel loss weights (e.g. :func:`unetlib.weights.weight_map`).
    in_size, out_size : int
        Input tile edge and output tile edge, pixels; ``in_size - out_size``
        must be even (the U-Net: 572 and 388).
    rng : numpy.random.Generator
        The only source of randomness.
    params : AugmentParams, optional
        Defaults to ``AugmentParams()``.
    center : (int, int), optional
        Output tile centre ``(row, col)`` in image pixels; default uniform over
        the image. Unaugmented, tile pixel ``(in_size // 2, in_size // 2)``
        is image pixel ``center``.
    device : str or torch.device, default "cpu"
        Where the sampling runs and the tensors are returned.

    Returns
    -------
    x : torch.Tensor (1, in_size, in_size), float32
    y : torch.Tensor (out_size, out_size), int64
    w : torch.Tensor (out_size, out_size), float32
    """
    image, target, weights = _check_planes(image, target, weights, torch.device(device))
    in_size, out_size = _check_tile_sizes(in_size, out_size)
    _check_rng(rng)
    if center is not None:
        center = _check_center(center, image.shape)
    return augmented_tile(image, target, weights, in_size=in_size, out_size=out_size, rng=rng,
                          params=AugmentParams() if params is None else params, center=center)


def augmented_tile(image: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, *, in_size: int, out_size: int,
                   rng: np.random.Generator, params: AugmentParams, center: tuple[int, int] | None = None):
    """:func:`random_tile` of planes already checked, as training draws one tile per iteration.

    ``image`` and ``weights`` are float32 tensors and ``target`` an integer
    tensor, all of one (H, W) shape on one device (where the sampling runs);
    the sizes, ``rng`` and ``center`` are valid as :func:`random_tile` checks
    them. Returns the same ``(x, y, w)``; ``y`` is int64 whatever the
    target's integer dtype.
    """
    draw = _draw(rng, params, image.shape, center)
    raw_ys, raw_xs = _tile_coordinates(draw, params, in_size, image.device)
    outside = _outside(raw_ys, raw_xs, image.shape) if params.padding == "zero" else None
    ys, xs = _mirror(raw_ys, raw_xs, image.shape)
    x = _interpolate(image[None], ys, xs, params.image_order)
    x = _vary_gray_values(x, draw, params)
    inner = slice((in_size - out_size) // 2, (in_size + out_size) // 2)
    nearest = _nearest_index(ys[inner, inner], xs[inner, inner], image.shape)
    y, w = target.reshape(-1)[nearest].long(), weights.reshape(-1)[nearest]
    if outside is not None:  # zero padding: nothing beyond the image, and no labels there to learn from
        x = x.masked_fill(outside[None], 0.0)
        w = w.masked_fill(outside[inner, inner], 0.0)
    return x, y, w


def _draw(rng, params: AugmentParams, shape, center) -> _Draw:
    """Draw every random number of a tile, always the same ones in the same order."""
    if center is None:
        center = int(rng.integers(shape[0])), int(rng.integers(shape[1]))
    return _Draw(
        center=center,
        grid=rng.normal(0.0, params.elastic_sigma, size=(2, params.elastic_points, params.elastic_points)),
        angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        flip=bool(rng.random() < 0.5),
        shift=rng.uniform(-params.max_shift, params.max_shift, size=2),
        gamma=float(rng.uniform(1.0 - params.gamma, 1.0 + params.gamma)),
        contrast=float(rng.uniform(1.0 - params.contrast, 1.0 + params.contrast)),
        brightness=float(rng.uniform(-params.brightness, params.brightness)),
        zoom=math.exp(rng.uniform(-math.log1p(params.scale), math.log1p(params.scale))) if params.scale > 0 else 1.0,
    )


def _tile_coordinates(draw: _Draw, params: AugmentParams, in_size: int, device):
    """Image coordinates (rows, cols) of every input-tile pixel: elastic, flip, rotation, shift in one grid."""
    half = (in_size - 1) / 2.0
    offsets = torch.arange(in_size, device=device, dtype=torch.float32) - half
    ys, xs = offsets[:, None].repeat(1, in_size), offsets[None, :].repeat(in_size, 1)  # tile frame, centre 0
    origin_y = draw.center[0] - in_size // 2 + half
    origin_x = draw.center[1] - in_size // 2 + half
    if not params.enabled:
        return ys.add_(origin_y), xs.add_(origin_x)
    if params.elastic_sigma > 0:
        field = _dense_field(torch.as_tensor(draw.grid, dtype=torch.float32, device=device), in_size, in_size)
        ys.add_(field[0])
        xs.add_(field[1])
    if params.flip and draw.flip:
        xs.neg_()
    if params.rotation:
        cos, sin = math.cos(draw.angle), math.sin(draw.angle)
        ys, xs = torch.add(ys * cos, xs, alpha=-sin), torch.add(xs * cos, ys, alpha=sin)
    if params.scale > 0:
        ys.mul_(1.0 / draw.zoom)
        xs.mul_(1.0 / draw.zoom)
    shift_y, shift_x = (float(s) for s in draw.shift)
    return ys.add_(origin_y + shift_y), xs.add_(origin_x + shift_x)


def _vary_gray_values(x: torch.Tensor, draw: _Draw, params: AugmentParams) -> torch.Tensor:
    if not params.enabled or not (params.brightness or params.contrast or params.gamma):
        return x
    # in the tile's own range [lo, hi], so that any input scaling works ([0, 1] or standardised)
    lo, hi = float(x.min()), float(x.max())
    span = max(hi - lo, 1e-6)
    x = x.sub_(lo).div_(span).clamp_(0.0, 1.0).pow_(draw.gamma).mul_(span).add_(lo)
    mean = float(x.mean())
    return x.sub_(mean).mul_(draw.contrast).add_(mean + draw.brightness * span)


# --------------------------------------------------------------------------- #
# Sampling
# --------------------------------------------------------------------------- #
def _sample(planes: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, order: int) -> torch.Tensor:
    """``planes`` (C, H, W) at the positions (ys, xs) (h, w), mirrored at the border: (C, h, w)."""
    ys, xs = _mirror(ys, xs, planes.shape[-2:])
    if order == 0:
        index = _nearest_index(ys, xs, planes.shape[-2:])
        return planes.reshape(planes.shape[0], -1)[:, index]
    return _interpolate(planes, ys, xs, order)


def _mirror(ys: torch.Tensor, xs: torch.Tensor, shape):
    """Positions mirrored into the image (numpy 'reflect')."""
    return _reflect(ys, shape[-2]), _reflect(xs, shape[-1])


def _outside(ys: torch.Tensor, xs: torch.Tensor, shape) -> torch.Tensor:
    """Positions (before mirroring) whose nearest pixel lies beyond the image."""
    return (ys < -0.5) | (ys >= shape[-2] - 0.5) | (xs < -0.5) | (xs >= shape[-1] - 0.5)


def _nearest_index(ys: torch.Tensor, xs: torch.Tensor, shape) -> torch.Tensor:
    """Flat index of the nearest pixel to each (mirrored) position, shape of ys."""
    return torch.round(ys).long() * shape[-1] + torch.round(xs).long()


def _interpolate(planes: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, order: int) -> torch.Tensor:
    """Bicubic (3) or bilinear (1) samples of ``planes`` (C, H, W) at mirrored positions (h, w): (C, h, w)."""
    canvas = _canvas(planes)
    scale_y, scale_x = 2.0 / (canvas.shape[-2] - 1), 2.0 / (canvas.shape[-1] - 1)  # powers of two: exact
    grid = torch.stack(((xs + _PAD) * scale_x - 1.0, (ys + _PAD) * scale_y - 1.0), dim=-1)
    out = F.grid_sample(canvas, grid[None], mode=_GRID_SAMPLE_MODES[order], padding_mode="border", align_corners=True)
    return out[0]


def _reflect(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror positions into [0, size - 1] without repeating the edge pixel (numpy 'reflect').

    The float-coordinate twin of :func:`unetlib.geometry.mirror_index`.
    """
    if size == 1:
        return torch.zeros_like(coords)
    period = 2 * (size - 1)
    folded = torch.remainder(coords, period)
    return torch.minimum(folded, period - folded)


def _canvas(planes: torch.Tensor) -> torch.Tensor:
    """(1, C, 2**k + 1, 2**l + 1): the planes mirrored by _PAD pixels, at the top-left.

    The rest is left uninitialised: mirrored positions lie in [_PAD, size + _PAD - 1],
    so the 4x4 cubic (or 2x2 linear) footprint never leaves the mirrored block.
    """
    channels, height, width = planes.shape
    rows = torch.as_tensor(mirror_index(np.arange(-_PAD, height + _PAD), height), device=planes.device)
    cols = torch.as_tensor(mirror_index(np.arange(-_PAD, width + _PAD), width), device=planes.device)
    padded = planes[:, rows][:, :, cols]
    canvas = planes.new_empty(1, channels, _pow2_plus_one(height + 2 * _PAD), _pow2_plus_one(width + 2 * _PAD))
    canvas[0, :, : padded.shape[1], : padded.shape[2]] = padded
    return canvas


def _pow2_plus_one(n: int) -> int:
    return 2 ** math.ceil(math.log2(n - 1)) + 1


@functools.lru_cache(maxsize=64)
def _bicubic_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix of PyTorch's bicubic upsampling with align_corners=True."""
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        source = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        base = math.floor(source)
        t = source - base
        for k, weight in enumerate(_cubic_weights(t)):
            matrix[i, min(max(base - 1 + k, 0), n_in - 1)] += weight
    matrix.setflags(write=False)
    return matrix


def _cubic_weights(t: float) -> tuple[float, float, float, float]:
    """Keys' cubic convolution weights of the 4 neighbours at fractional offset t."""
    a = _CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


# --------------------------------------------------------------------------- #
# Argument checking
# --------------------------------------------------------------------------- #
def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator, got {type(rng).__name__}; use np.random.default_rng(seed)"
        )


def _check_grid(grid):
    if grid.ndim != 3 or grid.shape[0] != 2 or min(grid.shape[1:]) < 2:
        raise UnetlibError(
            f"the coarse grid must have shape (2, p, p) with p >= 2 (dy, dx), got {tuple(grid.shape)}; "
            "make one with elastic_grid(rng)"
        )


def _check_order(order):
    if order not in (0, 1, 3):
        raise UnetlibError(f"order must be 3 (bicubic), 1 (bilinear) or 0 (nearest), got {order}")


def _check_mode(mode):
    if mode != "reflect":
        raise UnetlibError(f"mode {mode!r} is not supported; use 'reflect' (mirroring, as numpy's 'reflect')")


def _as_planes(image, displacement, order):
    """(C, H, W) image tensor and (2, H, W) floating displacement tensor on the same device."""
    image_t = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(image))
    field = displacement if isinstance(displacement, torch.Tensor) else torch.from_numpy(np.asarray(displacement))
    if image_t.ndim not in (2, 3):
        raise UnetlibError(f"image must be (H, W) or (C, H, W), got shape {tuple(image_t.shape)}")
    if tuple(field.shape) != (2, *image_t.shape[-2:]):
        raise UnetlibError(
            f"displacement must have shape (2, H, W) = {(2, *image_t.shape[-2:])} for this image, "
            f"got {tuple(field.shape)}"
        )
    if field.device != image_t.device:
        raise UnetlibError(f"image is on {image_t.device} but displacement on {field.device}; move both to one device")
    if order and not image_t.is_floating_point():
        raise UnetlibError(f"order {order} interpolates: the image must be floating point, got {image_t.dtype}; "
                         "use order=0 for labels")
    work = torch.float64 if image_t.dtype == torch.float64 or field.dtype == torch.float64 else torch.float32
    return image_t.reshape(-1, *image_t.shape[-2:]), field.to(work)


def _check_tile_sizes(in_size, out_size) -> tuple[int, int]:
    in_size = check_integer("in_size", in_size, 1)
    out_size = check_integer("out_size", out_size, 1, in_size)
    if (in_size - out_size) % 2:
        raise UnetlibError(
            f"in_size - out_size must be even (the output is the centre of the input), got {in_size} and {out_size}"
        )
    return in_size, out_size


def _check_center(center, shape) -> tuple[int, int]:
    row, col = (int(c) for c in center)
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise UnetlibError(f"center {tuple(center)} lies outside the image of shape {tuple(shape)}")
    return row, col


def _check_planes(image, target, weights, device):
    """The three planes as tensors on ``device``: image float32, target int64, weights float32."""
    image = _plane_tensor(image, "image", floating=True, device=device)
    target = _plane_tensor(target, "target", floating=False, device=device)
    weights = _plane_tensor(weights, "weights", floating=True, device=device)
    if image.shape != target.shape or image.shape != weights.shape:
        raise UnetlibError(
            f"image, target and weights must have the same shape, got {tuple(image.shape)}, "
            f"{tuple(target.shape)}, {tuple(weights.shape)}"
        )
    return image, target, weights


def _plane_tensor(plane, name: str, floating: bool, device) -> torch.Tensor:
    if plane.ndim != 2:
        raise UnetlibError(f"{name} must be one 2-D (H, W) plane, got shape {tuple(plane.shape)}")
    if isinstance(plane, torch.Tensor):
        is_float, is_integer = plane.is_floating_point(), not (plane.is_floating_point() or plane.is_complex())
    else:
        plane = np.asarray(plane)
        is_float, is_integer = plane.dtype.kind == "f", plane.dtype.kind in "iub"
    if floating and not is_float:
        raise UnetlibError(f"{name} must be floating point (the image scaled to [0, 1]), got {plane.dtype}")
    if not floating and not is_integer:
        raise UnetlibError(f"{name} must hold integer class labels, got {plane.dtype}; convert with .astype(np.int64)")
    dtype = torch.float32 if floating else torch.int64
    if not isinstance(plane, torch.Tensor):
        plane = np.ascontiguousarray(plane, dtype=np.float32 if floating else np.int64)
        plane = torch.from_numpy(plane if plane.flags.writeable else plane.copy())
    return plane.to(device=device, dtype=dtype)
