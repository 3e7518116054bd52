"""The datasets' files: where they live, how they are named and laid out, and reading one.

A leaf below :mod:`unetlib.data` (the loaders) and :mod:`unetlib.manifest` (the
checksums): both read dataset files with :func:`read_dataset_tiff` and name
them with the constants here, and neither has to import the other for it.

Layout below the data root (the official names; see ``data/README.md``)::

    isbi2012/train-volume.tif, train-labels.tif, test-volume.tif
    PhC-C2DH-U373/01/tNNN.tif                 raw frames of sequence 01 (and 02)
    PhC-C2DH-U373/01_GT/SEG/man_segNNN.tif    instance masks of the annotated frames
    PhC-C2DH-U373/01_GT/TRA/man_trackNNN.tif  tracking markers of every frame
    PhC-C2DH-U373/01_GT/TRA/man_track.txt     the tracks: label, first, last frame, parent
    DIC-C2DH-HeLa/...                         same as PhC-C2DH-U373

Reading never deletes or writes a file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import tifffile

from unetlib.environment import project_root
from unetlib.errors import UnetlibError

__all__ = [
    "ENV_ROOT", "ISBI", "DATASETS", "CTC_DATASETS", "SEQUENCES", "DIRECTIONS", "ISBI_FILES", "ISBI_SHAPE",
    "LAYOUT", "REFETCH", "data_root", "check_dataset_name", "layout_hints", "read_dataset_tiff",
]

ENV_ROOT = "UNETLIB_DATA"
ISBI = "isbi2012"
CTC_DATASETS = ("PhC-C2DH-U373", "DIC-C2DH-HeLa")
DATASETS = (ISBI,) + CTC_DATASETS
SEQUENCES = ("01", "02")
#: train -> test sequence of a CTC experiment: train on one sequence's annotated frames, test on the other's
DIRECTIONS = ("01->02", "02->01")
ISBI_FILES = ("train-volume.tif", "train-labels.tif", "test-volume.tif")
ISBI_SHAPE = (30, 512, 512)

_FRAME = re.compile(r"^t(\d+)\.tif$")

LAYOUT = {
    ISBI: "isbi2012/train-volume.tif, isbi2012/train-labels.tif, isbi2012/test-volume.tif",
    **{
        name: (
            f"{name}/01/tNNN.tif, {name}/01_GT/SEG/man_segNNN.tif, "
            f"{name}/01_GT/TRA/man_trackNNN.tif and {name}/01_GT/TRA/man_track.txt "
            f"(the same for 02)"
        )
        for name in CTC_DATASETS
    },
}

#: appended to messages that already name the bad dataset file
REFETCH = ("re-fetch the dataset (move its folder away, then `unetlib data fetch NAME`) and "
            "check it with `unetlib data verify`")


# --------------------------------------------------------------------------- root


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds the datasets.

    Parameters
    ----------
    root : path, optional
        Used as given when not None. Otherwise the environment variable
        ``UNETLIB_DATA`` (``~`` expanded) when set and non-empty. Otherwise
        ``data/`` of the project checkout when unetlib runs from one (an
        editable install: the package's parent folder holds ``pyproject.toml``),
        else ``./data`` in the current working directory.

    Returns
    -------
    Path
        The root. A root given as ``root`` or the default need not exist
        (``unetlib data fetch`` creates it).

    Raises
    ------
    UnetlibError
        ``UNETLIB_DATA`` names a path that does not exist: a mistyped variable
        would otherwise have a new folder created and the datasets downloaded
        into it, while the real ones lie elsewhere.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_ROOT, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise UnetlibError(
                f"{ENV_ROOT}={env} names no existing folder: set {ENV_ROOT} to the folder that holds isbi2012/ "
                f"and the cell tracking datasets, create it first (mkdir -p {path}) to fetch into it, or unset "
                f"{ENV_ROOT} to use {project_root() / 'data'}")
        return path
    return project_root() / "data"


def check_dataset_name(name: str, allowed: tuple[str, ...] = DATASETS) -> str:
    if name not in allowed:
        raise UnetlibError(f"unknown dataset {name!r}; choose one of {', '.join(allowed)}")
    return name


def layout_hints(root: Path, name: str) -> list[str]:
    """Likely reasons why ``root/name`` is not where it should be (empty when none is seen)."""
    if not root.exists():
        return [f"the data root {root} does not exist"]
    if not root.is_dir():
        return [f"the data root {root} is a file, not a folder"]
    hints = []
    if root.name in DATASETS or (root / "01").is_dir() or (root / "train-volume.tif").exists():
        hints.append(f"{root} looks like a dataset folder itself: the root must be the folder "
                     f"that CONTAINS {name}/")
    for zipped in (root / f"{name}.zip", root.parent / f"{name}.zip"):
        if zipped.is_file() and not (root / name).exists():
            hints.append(f"{zipped} is not unpacked: run `unetlib data fetch {name}`, or unzip it "
                         f"into {root} so that {root / name} exists")
    target = root / name
    others = [p.name for p in root.iterdir() if p.name.lower() == name.lower() and p.name != name]
    if others:
        hints.append(f"found {root / others[0]}: rename it to {target} (names are case-sensitive)")
    if (target / name).is_dir():
        hints.append(f"{target / name} is one level too deep: move its contents up into {target}")
    if name in CTC_DATASETS and target.is_dir() and any(_FRAME.match(p.name) for p in target.iterdir()):
        hints.append(f"frames lie directly in {target}: they belong in {target}/01/ or 02/")
    return hints


# --------------------------------------------------------------------------- reading one file


def read_dataset_tiff(path: str | os.PathLike) -> np.ndarray:
    """Decode a whole TIFF file of a dataset (one page: (H, W); several: (pages, H, W)).

    Raises
    ------
    UnetlibError
        When the file is missing, truncated or cannot be decoded; the message
        names the file and the fix (re-fetch the dataset).
    """
    path = Path(path)
    if not path.is_file():
        raise UnetlibError(f"{path} does not exist; {REFETCH}")
    try:
        with tifffile.TiffFile(path) as tif:
            _check_not_truncated(tif, path)
            pages = [page.asarray() for page in tif.pages]
    except UnetlibError:
        raise
    except Exception as exc:  # tifffile / imagecodecs raise many kinds
        raise UnetlibError(
            f"{path} cannot be decoded ({type(exc).__name__}: {exc}); {REFETCH}"
        ) from exc
    if len({(p.shape, p.dtype) for p in pages}) != 1:
        raise UnetlibError(f"{path} has pages of different shapes or dtypes; {REFETCH}")
    return pages[0] if len(pages) == 1 else np.stack(pages)


def _check_not_truncated(tif: tifffile.TiffFile, path: Path) -> None:
    size = path.stat().st_size
    if len(tif.pages) == 0:
        raise UnetlibError(f"{path} holds no image (truncated or not a TIFF); {REFETCH}")
    for page in tif.pages:
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts)]
        if not ends or max(ends) > size:
            raise UnetlibError(
                f"{path} is truncated ({size} bytes, image data reaches {max(ends, default=0)}); "
                f"{REFETCH}"
            )
