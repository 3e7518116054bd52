"""Reading images given by users, and checking where outputs may go.

User files are untrusted: a TIFF is read with its axes stated, never guessed
silently, and an output path that would overwrite an input (or another output
of the same command) is refused before anything is computed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

from unetlib.errors import UnetlibError

__all__ = ["read_image", "read_user_tiff", "is_image_file", "check_file", "check_output_paths", "check_output_folder"]

_COLOUR_AXES = ("S",)  # tifffile's axis code for colour samples


def read_image(path: str | os.PathLike, in_channels: int = 1, what: str = "image") -> np.ndarray:
    """A 2-D image ``(H, W)`` or a stack ``(S, H, W)``; with ``in_channels > 1``, channels first.

    TIFF files are interpreted by their axes: a colour TIFF (RGB samples) is
    refused for a single-channel model instead of being read as a stack of H
    images, and so is a TIFF of several series (only one would be read).
    Other formats (PNG, ...) hold one image: colour and grey + alpha are
    refused for a single-channel model, never read as a stack.

    Raises
    ------
    UnetlibError
        Missing, unreadable, not a regular file, colour (for 1 channel) or non-numeric files.
    """
    path = check_file(path, what, "give a 2-D TIFF/PNG or a TIFF stack")
    if path.suffix.lower() in (".tif", ".tiff"):
        image, axes = read_user_tiff(path, what)
        colour = axes.endswith(_COLOUR_AXES)
    else:
        colour, image = _read_other(path, what)
    if image.dtype.kind not in "biuf":
        raise UnetlibError(f"{what} {path} holds {image.dtype} pixels; give integer or float grey values")
    if colour:
        if in_channels == 1:
            raise UnetlibError(
                f"{what} {path} is a colour image {image.shape} but the model takes 1 channel: "
                "save it as greyscale (e.g. skimage.color.rgb2gray) first"
            )
        if image.shape[-1] != in_channels:
            raise UnetlibError(f"{what} {path} has {image.shape[-1]} colour channels; the model takes {in_channels}")
        image = np.moveaxis(image, -1, -3)
    return image


#: The first bytes of the image formats users give: TIFF and BigTIFF (both byte orders), PNG, JPEG
_IMAGE_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def is_image_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is a readable file that starts as a TIFF, PNG or JPEG image does (its name aside)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(_IMAGE_MAGIC)


def check_file(path: str | os.PathLike, what: str, fix: str) -> Path:
    """``path`` if it is a regular file; a folder, a missing path, a device or a pipe is a one-line error."""
    path = Path(path)
    if path.is_dir():
        raise UnetlibError(f"{what} {path} is a folder; {fix}")
    if not path.exists():
        raise UnetlibError(f"{what} {path} does not exist; {fix}")
    if not path.is_file():
        raise UnetlibError(f"{what} {path} is not a regular file (a device, pipe or socket); {fix}")
    return path


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library's own log lines (tifffile logs a bad offset before raising): the kit says it once."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_user_tiff(path: str | os.PathLike, what: str = "image") -> tuple[np.ndarray, str]:
    """The pixels and axes (tifffile's codes, e.g. ``"YX"``, ``"QYX"``, ``"YXS"``) of a TIFF's only series.

    A TIFF holding several series (images of different shapes, or written
    as separate images) is refused: reading only the first would silently
    drop the others.
    """
    path = check_file(path, what, "give a TIFF file")
    try:
        with _quiet("tifffile"), tifffile.TiffFile(path) as tif:
            if len(tif.series) > 1:
                shapes = ", ".join(str(s.shape) for s in tif.series[:4])
                raise UnetlibError(f"{what} {path} holds {len(tif.series)} separate image series ({shapes}); "
                                   "save one image or one stack (S, H, W) per file")
            series = tif.series[0]
            return series.asarray(), series.axes
    except UnetlibError:
        raise
    except Exception as exc:  # tifffile and imagecodecs raise many kinds
        raise UnetlibError(f"cannot read {what} {path} as TIFF ({_reason(exc)}); check or re-export the file") from None


def _read_other(path: Path, what: str) -> tuple[bool, np.ndarray]:
    from skimage import io  # here: only PNG and other non-TIFF images need it (about 1 s to import)

    try:
        image = io.imread(path)
    except Exception as exc:
        raise UnetlibError(f"cannot read {what} {path} ({_reason(exc)}); give a TIFF or PNG") from None
    if image.ndim == 3 and image.shape[-1] == 2:
        raise UnetlibError(f"{what} {path} is a grey image with an alpha channel {image.shape}: save it without "
                           "the alpha channel (one grey channel)")
    if image.ndim == 3 and image.shape[-1] not in (3, 4):
        raise UnetlibError(f"{what} {path} has shape {image.shape}, which is not one image: only TIFF files "
                           "hold stacks; save it as a TIFF (S, H, W)")
    if image.ndim > 3:
        raise UnetlibError(f"{what} {path} has shape {image.shape}; give one 2-D image")
    return image.ndim == 3, image


def _reason(exc: BaseException) -> str:
    """``Type: first line of the message`` (readers' messages can span many lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def check_output_paths(inputs: dict[str, str | os.PathLike | None], outputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse outputs that are folders, that would overwrite an input, that collide with each other,
    or whose folder cannot be written.

    ``inputs`` and ``outputs`` map option names (for the message) to paths;
    None entries are ignored. Different spellings of one file (``./x.tif``,
    ``sub/../x.tif``, a symbolic or hard link) are the same file.
    """
    seen: dict[Path, str] = {}
    given_inputs = {name: _resolved(p) for name, p in inputs.items() if p is not None}
    for name, value in outputs.items():
        if value is None:
            continue
        path = _resolved(value)
        if path.is_dir() or str(value).endswith(("/", os.sep)):
            raise UnetlibError(f"{name} {value} is a folder; give a file name such as {Path(value) / 'out.tif'}")
        for in_name, in_path in given_inputs.items():
            if _same(path, in_path):
                raise UnetlibError(f"{name} {value} is the {in_name}: refusing to overwrite an input; choose another path")
        for other, other_name in seen.items():
            if _same(path, other):
                raise UnetlibError(f"{name} and {other_name} are the same file {value}: give each output its own path")
        _check_folder(name, value, path.parent)
        seen[path] = name


def _same(a: Path, b: Path) -> bool:
    """Resolved paths ``a`` and ``b`` name one file (equal, or hard links of one existing file)."""
    return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))


def check_output_folder(name: str, folder: str | os.PathLike) -> None:
    """Refuse an output folder that is a file, lies below a file, or cannot be written (before any work)."""
    path = _resolved(folder)
    if path.exists() and not path.is_dir():
        raise UnetlibError(f"{name} {folder} is a file, not a folder; give a folder for the outputs")
    _check_folder(name, folder, path)


def _check_folder(name: str, value, folder: Path) -> None:
    """The output's folder (or its nearest existing ancestor, as it will be created) must be a writable folder."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UnetlibError(f"{name} {value}: {existing} is a file, not a folder; choose another output path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UnetlibError(f"{name} {value}: the folder {existing} is not writable; choose another output folder")


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()
