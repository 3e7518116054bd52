"""Training targets and the weight map of Eq. 2 (paper Section 3, Fig. 3).

The loss weights every pixel by

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))

where ``w_c`` balances the class frequencies and ``d1``, ``d2`` are the
Euclidean distances (pixels) to the nearest and second-nearest cell. The
border term is added on background pixels only; it is largest in the thin
background gaps between touching cells, which the network must learn.

Choices made here where the paper is silent
-------------------------------------------
- Separation border (Fig. 3c): a cell pixel becomes background when its 3x3
  neighbourhood (8-neighbours) holds a *different* cell label. This is one
  grey dilation (3x3 maximum) and one grey erosion (3x3 minimum over cells)
  of the label image. Both sides of a contact are cut, so touching cells end
  up separated by a background gap two pixels wide, and no two remaining
  pixels of different cells are 8-neighbours.
- "Cells" for ``d1``, ``d2`` are the instances *after* the separation border
  is cut (the foreground of the training target), so every background pixel,
  the border pixels included, has ``d1 >= 1``. An instance cut away entirely
  (thinner than 3 pixels) no longer counts as a cell.
- ``w_c`` "balanced": each class present gets the weight ``N / (K n_k)``
  (``N`` pixels, ``K`` classes present, ``n_k`` pixels of class ``k``), i.e.
  inverse frequency normalised so that the mean of ``w_c`` over the image is 1.
- Labels: instance masks must be integer label images (0 = background);
  ``bool`` and float arrays are refused (a bool mask is binary: call
  :func:`instances_from_binary` first).

Speed
-----
No full-image distance transform per cell: each cell's Euclidean distance
transform is computed only inside its bounding box grown by the margin beyond
which the border term is below ``1e-12 * w0`` (38 px for sigma = 5). Pixels
whose two nearest cells both lie within the margin get exact ``d1``, ``d2``;
all others get a border term below ``1e-12 * w0`` in both the exact and the
fast result.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from unetlib.errors import UnetlibError

__all__ = [
    "instances_from_binary",
    "separation_target",
    "class_weight_map",
    "weight_map",
    "training_target",
    "check_class_weights",
    "W0",
    "SIGMA",
    "BORDER_TOLERANCE",
    "grown_box",
]

W0 = 10.0  #: paper's w0
SIGMA = 5.0  #: paper's sigma, pixels
BORDER_TOLERANCE = 1e-12  #: border term (relative to w0) neglected beyond the per-cell margin

_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
_NEIGHBOURHOOD = (3, 3)


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def instances_from_binary(mask) -> np.ndarray:
    """Instance labels from a binary cell mask: its 4-connected components.

    Parameters
    ----------
    mask : ndarray (H, W), bool or integer
        Cell pixels are ``mask > 0`` (for ISBI 2012: 0 membrane, 255 cell).

    Returns
    -------
    ndarray (H, W), int32
        0 for background, 1..n for the n components.
    """
    mask = check_mask(mask, "mask", allow_bool=True)
    labels, _ = ndimage.label(mask > 0, structure=_FOUR_CONNECTED)
    return labels.astype(np.int32, copy=False)


def separation_target(instances) -> np.ndarray:
    """Binary training target with a background border between touching cells (Fig. 3c).

    A cell pixel becomes background when its 3x3 neighbourhood holds another
    cell's label (see the module docstring).

    Parameters
    ----------
    instances : ndarray (H, W), integer
        Instance labels, 0 = background.

    Returns
    -------
    ndarray (H, W), uint8
        1 = cell, 0 = background.
    """
    instances = check_mask(instances, "instances")
    return _separated_cells(instances).astype(bool).astype(np.uint8)


def class_weight_map(target, class_weights="balanced") -> np.ndarray:
    """Per-pixel class weights ``w_c`` of a binary target.

    Parameters
    ----------
    target : ndarray (H, W), integer or bool
        1 (or any value > 0) = cell, 0 = background.
    class_weights : "balanced", None or (float, float), default "balanced"
        "balanced": inverse class frequency, normalised so that the mean
        weight is 1 (a class absent from the image gets no weight; a one-class
        image gets all ones). None: all ones. A pair: (w_background, w_cell).

    Returns
    -------
    ndarray (H, W), float32
    """
    cell = check_mask(target, "target", allow_bool=True) > 0
    w_background, w_cell = _class_weight_pair(cell, class_weights)
    return np.where(cell, np.float32(w_cell), np.float32(w_background)).astype(np.float32)


def weight_map(instances, w0: float = W0, sigma: float = SIGMA, class_weights="balanced") -> np.ndarray:
    """The weight map of Eq. 2 for an instance mask.

    Parameters
    ----------
    instances : ndarray (H, W), integer
        Instance labels, 0 = background (see :func:`instances_from_binary`).
    w0 : float, default 10
        Height of the border term (paper: 10).
    sigma : float, default 5
        Width of the border term, pixels (paper: about 5).
    class_weights : "balanced", None or (float, float), default "balanced"
        See :func:`class_weight_map`.

    Returns
    -------
    ndarray (H, W), float32
        ``w_c`` plus, on background pixels of :func:`separation_target`, the
        border term. With fewer than two cells there is no border term.
    """
    return training_target(instances, w0=w0, sigma=sigma, class_weights=class_weights)[1]


def training_target(instances, w0: float = W0, sigma: float = SIGMA, class_weights="balanced"):
    """The binary target and its weight map, computed once per ground-truth image.

    Parameters are those of :func:`weight_map`.

    Returns
    -------
    target : ndarray (H, W), uint8
        :func:`separation_target` (1 = cell, 0 = background).
    weights : ndarray (H, W), float32
        :func:`weight_map`.
    """
    instances = check_mask(instances, "instances")
    w0, sigma = _check_border_parameters(w0, sigma)
    cells = _separated_cells(instances)
    target = (cells > 0).astype(np.uint8)
    weights = class_weight_map(target, class_weights).astype(np.float64)
    weights += _border_term(cells, w0, sigma)
    return target, weights.astype(np.float32)


# --------------------------------------------------------------------------- #
# Steps
# --------------------------------------------------------------------------- #
def _separated_cells(instances: np.ndarray) -> np.ndarray:
    """Instance labels with every pixel that 8-touches another cell set to 0."""
    labels = _compact_labels(instances).astype(np.int32, copy=False)
    largest = ndimage.grey_dilation(labels, size=_NEIGHBOURHOOD, mode="nearest")
    cells_only = np.where(labels > 0, labels, np.iinfo(np.int32).max)
    smallest = ndimage.grey_erosion(cells_only, size=_NEIGHBOURHOOD, mode="nearest")
    touches_other = (largest != labels) | (smallest != labels)
    return np.where((labels > 0) & ~touches_other, labels, 0)


def _border_term(cells: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """``w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels, float64."""
    term = np.zeros(cells.shape, dtype=np.float64)
    if w0 == 0.0:
        return term
    d1, d2 = _two_nearest_cell_distances(cells, _margin(sigma))
    background = cells == 0
    total = d1[background] + d2[background]  # inf where fewer than two cells are near
    term[background] = w0 * np.exp(-(total**2) / (2.0 * sigma**2))
    return term


def _two_nearest_cell_distances(cells: np.ndarray, margin: int):
    """Distances (pixels) to the nearest and second-nearest cell, exact where <= margin, else >= margin."""
    d1 = np.full(cells.shape, np.inf)
    d2 = np.full(cells.shape, np.inf)
    labels = _compact_labels(cells)  # already compact when called from training_target
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        window = grown_box(box, margin, cells.shape)
        distance = ndimage.distance_transform_edt(labels[window] != label)
        near1, near2 = d1[window], d2[window]  # views: updated in place
        np.minimum(near2, np.maximum(near1, distance), out=near2)
        np.minimum(near1, distance, out=near1)
    return d1, d2


def _compact_labels(cells: np.ndarray) -> np.ndarray:
    """Labels with no huge gaps, so find_objects' list stays small."""
    if cells.max(initial=0) <= cells.size:
        return cells
    values, inverse = np.unique(cells, return_inverse=True)
    compact = inverse.reshape(cells.shape)
    return compact if values[0] == 0 else compact + 1


def _margin(sigma: float) -> int:
    """Distance beyond which exp(-m^2 / (2 sigma^2)) < BORDER_TOLERANCE, pixels."""
    return int(math.ceil(sigma * math.sqrt(2.0 * math.log(1.0 / BORDER_TOLERANCE))))


def grown_box(box, margin: int, shape) -> tuple[slice, ...]:
    """The slices of ``box`` (as ``ndimage.find_objects`` gives) grown by ``margin`` pixels, clipped to ``shape``."""
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape))


# --------------------------------------------------------------------------- #
# Argument checking
# --------------------------------------------------------------------------- #
def check_mask(mask, what: str, allow_bool: bool = False) -> np.ndarray:
    """``mask`` as a 2-D array of non-negative integer labels (or bool, where allowed); else a one-line error."""
    if hasattr(mask, "detach"):  # a torch tensor
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise UnetlibError(
            f"{what} must be a 2-D (H, W) label image, got shape {mask.shape}; "
            "pass one image at a time (squeeze channel axes, loop over stacks)"
        )
    if mask.dtype == bool:
        if allow_bool:
            return mask
        raise UnetlibError(
            f"{what} is a bool (binary) mask, not instance labels; "
            "label its cells first with instances_from_binary(mask)"
        )
    if not np.issubdtype(mask.dtype, np.integer):
        raise UnetlibError(
            f"{what} must hold integer labels, got dtype {mask.dtype}; "
            "read the ground truth without scaling, or convert, e.g. mask.astype(np.int32)"
        )
    if mask.size and mask.min() < 0:
        raise UnetlibError(f"{what} holds negative labels (min {mask.min()}); use 0 for background and 1.. for cells")
    return mask


def _check_border_parameters(w0, sigma) -> tuple[float, float]:
    w0, sigma = float(w0), float(sigma)
    if not (math.isfinite(w0) and w0 >= 0):
        raise UnetlibError(f"w0 must be a finite number >= 0 (paper: 10), got {w0}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise UnetlibError(f"sigma must be a finite number of pixels > 0 (paper: 5), got {sigma}")
    return w0, sigma


def check_class_weights(class_weights):
    """``class_weights`` if it is "balanced", None or a pair of finite weights >= 0, else a one-line error."""
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise UnetlibError(
                f"class_weights {class_weights!r} is not known; use 'balanced', None or (w_background, w_cell)"
            )
    elif class_weights is not None:
        _fixed_pair(class_weights)
    return class_weights


def _class_weight_pair(cell: np.ndarray, class_weights) -> tuple[float, float]:
    if class_weights is None:
        return 1.0, 1.0
    if isinstance(class_weights, str):
        check_class_weights(class_weights)  # names an unknown scheme
        return _balanced_pair(cell)
    return _fixed_pair(class_weights)


def _fixed_pair(class_weights) -> tuple[float, float]:
    try:
        w_background, w_cell = (float(w) for w in class_weights)
    except (TypeError, ValueError):
        raise UnetlibError(
            f"class_weights must be 'balanced', None or a pair (w_background, w_cell), got {class_weights!r}"
        ) from None
    if not (w_background >= 0 and w_cell >= 0 and math.isfinite(w_background + w_cell)):
        raise UnetlibError(f"class weights must be finite and >= 0, got {class_weights!r}")
    return w_background, w_cell


def _balanced_pair(cell: np.ndarray) -> tuple[float, float]:
    """Inverse class frequency with mean weight 1 over the image."""
    n_cell = int(np.count_nonzero(cell))
    n_background = cell.size - n_cell
    present = (n_background > 0) + (n_cell > 0)
    if present == 0:
        return 1.0, 1.0
    w_background = cell.size / (present * n_background) if n_background else 0.0
    w_cell = cell.size / (present * n_cell) if n_cell else 0.0
    return w_background, w_cell
