"""Input scaling: the one place where pixel values become network inputs.

Training (:func:`unetlib.train.train`, through the experiment protocols) and
inference (:func:`unetlib.inference.predict`) both call :func:`normalizer`,
so a network always sees its inputs scaled the way it was trained. The mode
travels with the model: it is part of the :class:`unetlib.recipe.Recipe`
saved in every checkpoint.

Modes
-----
``"unit"``
    Integers divided by their dtype's maximum (uint8 -> /255, as the 2015
    release), or by ``2**bit_depth - 1`` when a bit depth is given (a 12-bit
    camera's uint16 image -> /4095), booleans as 0/1, floats as given.
``"zscore"``
    Zero mean and unit standard deviation per image and channel.
``"minmax"``
    ``[min, max]`` of each image and channel -> ``[0, 1]``.
``"none"``
    Values as given.

Resampling
----------
A recipe may also resample images before the network sees them
(``Recipe.resample``, e.g. 0.5: the network sees every image at half
resolution, so its fixed field of view covers twice as many original pixels).
:func:`resample` changes the size of scaled inputs (bilinear, antialiased
when shrinking), of label images (nearest) and of probability maps (bilinear,
back to the original size), in training and inference alike.

Statistics are computed in float64, a block of rows at a time, so a large
image never needs a second full-size float copy.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from unetlib.errors import UnetlibError

__all__ = ["NORMALIZATIONS", "normalizer", "normalize_image", "check_mode", "check_bit_depth", "bits_held",
           "row_blocks", "resampled_shape", "resample"]

NORMALIZATIONS = ("unit", "zscore", "minmax", "none")
_CHUNK_ROWS = 256  # rows per block for whole-image passes (statistics, checks, inference's finishing)


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`NORMALIZATIONS`, else a one-line error naming them."""
    if mode not in NORMALIZATIONS:
        raise UnetlibError(f"normalize must be one of {NORMALIZATIONS}, got {mode!r}")
    return mode


#: The bit depths microscopy cameras write; :func:`bits_held` names the smallest that holds an image.
BIT_DEPTHS = (8, 10, 12, 14, 16)


def bits_held(peak: int) -> int:
    """The smallest of :data:`BIT_DEPTHS` (else the exact bit count) that holds the value ``peak`` (>= 0)."""
    bits = max(int(peak), 1).bit_length()
    return next((depth for depth in BIT_DEPTHS if depth >= bits), bits)


def check_bit_depth(image: np.ndarray, bit_depth: int | None, what: str = "bit_depth") -> int | None:
    """``bit_depth`` if it fits ``image``: an integer from 1 to its dtype's bits, of an unsigned integer image
    whose values all fit in it. ``what`` names the setting in the message (``--bit-depth``)."""
    if bit_depth is None:
        return None
    if isinstance(bit_depth, bool) or not isinstance(bit_depth, (int, np.integer)):
        raise UnetlibError(f"{what} must be a whole number of bits, such as 12, got {bit_depth!r}")
    if image.dtype.kind != "u":
        raise UnetlibError(f"{what} {bit_depth} applies to unsigned integer images (uint8, uint16), not to "
                           f"{image.dtype}: drop it")
    bits = 8 * image.dtype.itemsize
    if not 1 <= bit_depth <= bits:
        raise UnetlibError(f"{what} {bit_depth} does not fit {image.dtype} ({bits} bits): give 1 to {bits}")
    peak = int(image.max()) if image.size else 0
    if peak > 2**bit_depth - 1:
        raise UnetlibError(f"{what} {bit_depth}: the values reach {peak:,}, beyond {bit_depth}-bit's "
                           f"{2**bit_depth - 1:,}; give the bits the camera wrote (at least {bits_held(peak)})")
    return int(bit_depth)


def row_blocks(array: np.ndarray, rows: int = _CHUNK_ROWS) -> Iterator[np.ndarray]:
    """Views of ``array`` of at most ``rows`` rows (second-to-last axis) each."""
    for start in range(0, array.shape[-2], rows):
        yield array[..., start : start + rows, :]


def normalizer(image: np.ndarray, mode: str, bit_depth: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(offset, scale)`` for one ``(C, H, W)`` image: input = ``(x - offset) * scale``.

    Both are float32 arrays of shape ``(C, 1, 1)``; see the module docstring for
    the modes. ``bit_depth`` (checked by :func:`check_bit_depth`): the bits an
    integer image holds, for ``"unit"`` (default: its dtype's).
    """
    check_mode(mode)
    channels = image.shape[0]
    offset, scale = np.zeros(channels), np.ones(channels)
    if mode == "unit" and image.dtype.kind in "iu":
        scale[:] = 1.0 / (2**bit_depth - 1 if bit_depth else np.iinfo(image.dtype).max)
    elif mode == "zscore":
        offset, std = _mean_std(image)
        scale = 1.0 / np.where(std > 0, std, 1.0)
    elif mode == "minmax":
        low = np.array([image[c].min() for c in range(channels)], dtype=np.float64)
        high = np.array([image[c].max() for c in range(channels)], dtype=np.float64)
        offset, scale = low, 1.0 / np.where(high > low, high - low, 1.0)
    shape = (channels, 1, 1)
    return offset.reshape(shape).astype(np.float32), scale.reshape(shape).astype(np.float32)


def normalize_image(image: np.ndarray, mode: str = "unit", bit_depth: int | None = None) -> np.ndarray:
    """One ``(H, W)`` (or ``(C, H, W)``) image as float32, scaled exactly as inference scales it."""
    check_mode(mode)
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise UnetlibError(f"image dtype {image.dtype} is not numeric; give an integer or float array")
    check_bit_depth(image, bit_depth)
    planes = image[None] if image.ndim == 2 else image
    offset, scale = normalizer(planes, mode, bit_depth)
    out = (planes.astype(np.float32) - offset) * scale
    if not np.isfinite(out).all():
        raise UnetlibError("the scaled image holds NaN or infinite values; check the input for NaN/inf or huge values")
    return out[0] if image.ndim == 2 else out


def _mean_std(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``(C, H, W)``, in float64, one row block at a time."""
    total = np.zeros(image.shape[0])
    squares = np.zeros(image.shape[0])
    for block in row_blocks(image):
        block = block.astype(np.float64)
        total += block.sum(axis=(1, 2))
        squares += np.square(block).sum(axis=(1, 2))
    n = image.shape[1] * image.shape[2]
    mean = total / n
    return mean, np.sqrt(np.maximum(squares / n - mean**2, 0.0))


def resampled_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """The ``(H, W)`` of an image of ``shape`` (last two axes) resampled by ``factor`` (at least 1 pixel)."""
    height, width = shape[-2:]
    return max(1, round(height * factor)), max(1, round(width * factor))


def resample(array: np.ndarray, shape: tuple[int, int], *, labels: bool = False) -> np.ndarray:
    """``array`` (``(H, W)`` or ``(..., H, W)``) resized to ``shape`` on its last two axes.

    Grey values and probabilities: bilinear (pixel centres aligned, antialiased
    when shrinking), float32. Labels (``labels=True``): nearest neighbour, same
    dtype, so instance ids survive. The same size returns ``array`` unchanged.
    """
    array = np.asarray(array)
    shape = (int(shape[0]), int(shape[1]))
    if array.shape[-2:] == shape:
        return array
    lead = array.shape[:-2]
    flat = torch.from_numpy(np.ascontiguousarray(array.reshape(-1, 1, *array.shape[-2:]), dtype=np.float32)
                            if not labels else array.reshape(-1, 1, *array.shape[-2:]).astype(np.float64))
    if labels:
        if array.size and np.abs(array).max() >= 2**53:
            raise UnetlibError("label values beyond 2**53 cannot be resampled exactly; renumber the labels")
        out = torch.nn.functional.interpolate(flat, size=shape, mode="nearest-exact")
        return out.numpy().reshape(*lead, *shape).astype(array.dtype)
    shrinking = shape[0] < array.shape[-2] or shape[1] < array.shape[-1]
    out = torch.nn.functional.interpolate(flat, size=shape, mode="bilinear", align_corners=False,
                                          antialias=shrinking)
    return out.numpy().reshape(*lead, *shape)
