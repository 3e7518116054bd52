"""The paper's three datasets on disk: where they live, how they are laid out,
how to load them and how to check them against the shipped checksum manifest.

Layout below the data root (the official names; see ``data/README.md``)::

    isbi2012/train-volume.tif, train-labels.tif, test-volume.tif
    PhC-C2DH-U373/01/tNNN.tif                 raw frames of sequence 01 (and 02)
    PhC-C2DH-U373/01_GT/SEG/man_segNNN.tif    instance masks of the annotated frames
    PhC-C2DH-U373/01_GT/TRA/man_trackNNN.tif  tracking markers of every frame
    PhC-C2DH-U373/01_GT/TRA/man_track.txt     the tracks: label, first, last frame, parent
    DIC-C2DH-HeLa/...                         same as PhC-C2DH-U373

Loading never hashes (that is :func:`verify`'s job) but checks shapes, dtypes
and that no TIFF is truncated. Neither loading nor verifying ever deletes or
writes a file. This module does not import PyTorch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import tifffile

from unetlib.errors import UnetlibError

__all__ = [
    "ENV_ROOT", "DATASETS", "CTC_DATASETS", "SEQUENCES", "DIRECTIONS", "ISBI_FILES", "ISBI_SHAPE",
    "data_root", "ISBI2012", "CTCSequence", "load_isbi2012", "load_ctc", "cell_areas",
    "layout_hints", "indexed_files", "read_tiff", "read_man_track",
    "ManifestEntry", "read_manifest", "parse_manifest", "format_manifest", "make_manifest",
    "pixel_digest", "VerifyReport", "verify", "verify_dataset_dir", "extra_files",
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
MANIFEST_NAME = "datasets.sha256"

_FRAME = re.compile(r"^t(\d+)\.tif$")
_CHUNK = 1 << 20

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
        The root; it is not required to exist.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_ROOT, "").strip()
    if env:
        return Path(env).expanduser()
    from unetlib.environment import project_root

    return project_root() / "data"


def _check_dataset_name(name: str, allowed: tuple[str, ...] = DATASETS) -> str:
    if name not in allowed:
        raise UnetlibError(f"unknown dataset {name!r}; choose one of {', '.join(allowed)}")
    return name


def _check_sequence(sequence: str | int) -> str:
    seq = f"{sequence:02d}" if isinstance(sequence, int) else str(sequence)
    if seq not in SEQUENCES:
        raise UnetlibError(f"unknown sequence {sequence!r}; choose one of {', '.join(SEQUENCES)}")
    return seq


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


def _missing_dataset_error(root: Path, name: str, what: Path | None = None) -> UnetlibError:
    missing = what if what is not None else root / name
    hints = "; ".join(layout_hints(root, name))
    return UnetlibError(
        f"{missing} not found (dataset {name}, data root {root}). "
        + (f"Likely cause: {hints}. " if hints else "")
        + f"Expected layout below the root: {LAYOUT[name]}. "
        f"Fix: run `unetlib data fetch {name}` (add --root DIR for another folder), "
        f"or set {ENV_ROOT} to the folder that contains {name}/."
    )


# --------------------------------------------------------------------------- reading files


# appended to messages that already name the bad file
_REFETCH = ("re-fetch the dataset (move its folder away, then `unetlib data fetch NAME`) and "
            "check it with `unetlib data verify`")


def _check_not_truncated(tif: tifffile.TiffFile, path: Path) -> None:
    size = path.stat().st_size
    if len(tif.pages) == 0:
        raise UnetlibError(f"{path} holds no image (truncated or not a TIFF); {_REFETCH}")
    for page in tif.pages:
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts)]
        if not ends or max(ends) > size:
            raise UnetlibError(
                f"{path} is truncated ({size} bytes, image data reaches {max(ends, default=0)}); "
                f"{_REFETCH}"
            )


def read_tiff(path: str | os.PathLike) -> np.ndarray:
    """Decode a whole TIFF file (one page: (H, W); several: (pages, H, W)).

    Raises
    ------
    UnetlibError
        When the file is missing, truncated or cannot be decoded; the message
        names the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise UnetlibError(f"{path} does not exist; {_REFETCH}")
    try:
        with tifffile.TiffFile(path) as tif:
            _check_not_truncated(tif, path)
            pages = [page.asarray() for page in tif.pages]
    except UnetlibError:
        raise
    except Exception as exc:  # tifffile / imagecodecs raise many kinds
        raise UnetlibError(
            f"{path} cannot be decoded ({type(exc).__name__}: {exc}); {_REFETCH}"
        ) from exc
    if len({(p.shape, p.dtype) for p in pages}) != 1:
        raise UnetlibError(f"{path} has pages of different shapes or dtypes; {_REFETCH}")
    return pages[0] if len(pages) == 1 else np.stack(pages)


def _read_many(paths: list[Path]) -> list[np.ndarray]:
    """Decode many TIFFs, a few at a time (the codecs release the GIL)."""
    workers = max(1, min(4, os.cpu_count() or 1, len(paths)))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(read_tiff, paths))


def read_man_track(path: str | os.PathLike) -> np.ndarray:
    """Parse a CTC ``man_track.txt``.

    Returns
    -------
    numpy.ndarray
        (N, 4) int64, one row per track: label, first frame, last frame,
        parent label (0: none).
    """
    path = Path(path)
    if not path.is_file():
        raise UnetlibError(f"{path} does not exist; {_REFETCH}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4 or not all(f.isdigit() for f in fields):
            raise UnetlibError(
                f"{path} line {number} is not 'label first last parent': {line!r}; "
                f"{_REFETCH}"
            )
        rows.append([int(f) for f in fields])
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def indexed_files(folder: str | os.PathLike, prefix: str) -> dict[int, Path]:
    """Files ``PREFIXNNN.tif`` in ``folder`` by frame index NNN (prefix ``t``, ``man_seg``, ``man_track``)."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.tif$")
    return {int(m.group(1)): p for p in Path(folder).iterdir() if (m := pattern.match(p.name))}


# --------------------------------------------------------------------------- loaders


@dataclass(frozen=True)
class ISBI2012:
    """The ISBI 2012 EM segmentation stacks.

    Attributes
    ----------
    train_images : numpy.ndarray
        (30, 512, 512) uint8 serial-section TEM slices.
    train_labels : numpy.ndarray
        (30, 512, 512) uint8: 0 membrane, 255 cell interior.
    test_images : numpy.ndarray
        (30, 512, 512) uint8; their labels were never published.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray


@dataclass(frozen=True)
class CTCSequence:
    """One sequence of a Cell Tracking Challenge training set.

    Attributes
    ----------
    name, sequence : str
        E.g. ``"PhC-C2DH-U373"``, ``"01"``.
    frames : numpy.ndarray
        (T, H, W) uint8 raw frames ``tNNN.tif``, frame index = NNN.
    seg : dict[int, numpy.ndarray]
        Frame index -> (H, W) uint16 instance mask (0 background) of the
        annotated frames ``NN_GT/SEG/man_segNNN.tif``, in increasing order.
    tra : numpy.ndarray or None
        (T, H, W) uint16 tracking markers ``NN_GT/TRA/man_trackNNN.tif``;
        None when loaded with ``tra=False``.
    tracks : numpy.ndarray
        (N, 4) int64 rows of ``man_track.txt``: label, first, last frame, parent.
    """

    name: str
    sequence: str
    frames: np.ndarray
    seg: dict[int, np.ndarray]
    tra: np.ndarray | None
    tracks: np.ndarray


def _check_stack(array: np.ndarray, path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if array.shape != shape or array.dtype != dtype:
        raise UnetlibError(
            f"{path} holds a {array.dtype} array of shape {array.shape}; expected {np.dtype(dtype)} "
            f"{shape}; {_REFETCH}"
        )
    return array


def load_isbi2012(root: str | os.PathLike | None = None, *, verify: bool = True) -> ISBI2012:
    """Load the three ISBI 2012 stacks from ``root/isbi2012`` (root: see :func:`data_root`).

    With ``verify`` (the default) every file is checked against the shipped
    checksum manifest as it is read, as ``unetlib data verify`` would (a file
    already checked is remembered by its size, time and inode): a damaged file
    or another dataset's file is refused, never trained on.

    Returns
    -------
    ISBI2012
        Three (30, 512, 512) uint8 arrays; labels are 0 (membrane) / 255 (cell).
    """
    root = data_root(root)
    folder = root / ISBI
    if not folder.is_dir():
        raise _missing_dataset_error(root, ISBI)
    stacks = []
    for name in ISBI_FILES:
        if not (folder / name).is_file():
            raise _missing_dataset_error(root, ISBI, folder / name)
        stacks.append(_check_stack(read_tiff(folder / name), folder / name, ISBI_SHAPE, np.uint8))
    if verify:
        check_against_manifest(root, [(folder / name, stack) for name, stack in zip(ISBI_FILES, stacks)])
    _check_binary_labels(stacks[1], folder / ISBI_FILES[1])
    return ISBI2012(*stacks)


def _check_binary_labels(labels: np.ndarray, path: Path) -> None:
    values = np.unique(labels)
    if not set(values.tolist()) <= {0, 255}:
        raise UnetlibError(f"{path} has values {values[:10].tolist()}, expected only 0 and 255; "
                           f"{_REFETCH}")


def _sequence_dirs(root: Path, name: str, seq: str) -> tuple[Path, Path]:
    raw, gt = root / name / seq, root / name / f"{seq}_GT"
    for folder in (raw, gt / "SEG", gt / "TRA"):
        if not folder.is_dir():
            raise _missing_dataset_error(root, name, folder)
    return raw, gt


def _contiguous_frames(raw: Path) -> list[Path]:
    files = indexed_files(raw, "t")
    gaps = sorted(set(range(len(files))) - set(files))
    if not files or gaps:
        raise UnetlibError(
            f"{raw} should hold frames t000.tif ... contiguous from 0; "
            + (f"missing frame indices {gaps[:10]}" if files else "it holds none")
            + f"; {_REFETCH}"
        )
    return [files[i] for i in range(len(files))]


def _load_frames(raw: Path) -> np.ndarray:
    paths = _contiguous_frames(raw)
    frames = _read_many(paths)
    shape = frames[0].shape[-2:]  # a multi-page first frame then fails the check below
    for path, frame in zip(paths, frames):
        _check_stack(frame, path, shape, np.uint8)
    return np.stack(frames)


def _load_seg(folder: Path, frame_shape: tuple[int, ...], n_frames: int) -> dict[int, np.ndarray]:
    files = indexed_files(folder, "man_seg")
    if not files:
        raise UnetlibError(f"{folder} holds no man_segNNN.tif; {_REFETCH}")
    order = sorted(files)
    masks = _read_many([files[i] for i in order])
    for index, mask in zip(order, masks):
        _check_stack(mask, files[index], frame_shape, np.uint16)
        if index >= n_frames:
            raise UnetlibError(f"{files[index]} annotates frame {index}, but the sequence has "
                               f"{n_frames} frames; {_REFETCH}")
    return dict(zip(order, masks))


def _load_tra(folder: Path, frame_shape: tuple[int, ...], n_frames: int) -> np.ndarray:
    files = indexed_files(folder, "man_track")
    missing = [i for i in range(n_frames) if i not in files]
    if missing:
        raise UnetlibError(f"{folder} lacks man_track{missing[0]:03d}.tif (and {len(missing) - 1} "
                           f"more); {_REFETCH}")
    paths = [files[i] for i in range(n_frames)]
    masks = _read_many(paths)
    for path, mask in zip(paths, masks):
        _check_stack(mask, path, frame_shape, np.uint16)
    return np.stack(masks)


def load_ctc(
    name: str,
    sequence: str | int,
    root: str | os.PathLike | None = None,
    *,
    tra: bool = True,
    verify: bool = True,
) -> CTCSequence:
    """Load one sequence of a Cell Tracking Challenge training set.

    With ``verify`` (the default) every file read is checked against the
    shipped checksum manifest (see :func:`load_isbi2012`).

    Parameters
    ----------
    name : {"PhC-C2DH-U373", "DIC-C2DH-HeLa"}
    sequence : {"01", "02"} (or the ints 1, 2)
    root : path, optional
        The data root; see :func:`data_root`.
    tra : bool, default True
        Also read the tracking markers of every frame (about as long again as
        reading the frames); ``False`` leaves ``CTCSequence.tra`` as None.

    Returns
    -------
    CTCSequence
        frames (T, H, W) uint8; seg {frame index: (H, W) uint16}; tra
        (T, H, W) uint16 or None; tracks (N, 4) int64.
    """
    name = _check_dataset_name(name, CTC_DATASETS)
    seq = _check_sequence(sequence)
    root = data_root(root)
    if not (root / name).is_dir():
        raise _missing_dataset_error(root, name)
    raw, gt = _sequence_dirs(root, name, seq)
    frames = _load_frames(raw)
    shape, n = frames.shape[1:], frames.shape[0]
    seg = _load_seg(gt / "SEG", shape, n)
    markers = _load_tra(gt / "TRA", shape, n) if tra else None
    tracks = read_man_track(gt / "TRA" / "man_track.txt")
    if verify:
        read = [*_contiguous_frames(raw), *indexed_files(gt / "SEG", "man_seg").values(), gt / "TRA" / "man_track.txt"]
        if tra:
            read += list(indexed_files(gt / "TRA", "man_track").values())
        check_against_manifest(root, read)
    return CTCSequence(name, seq, frames, seg, markers, tracks)


def _verified_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unetlib" / "verified-files.json"


@functools.lru_cache(maxsize=1)
def _shipped_manifest() -> dict[str, ManifestEntry]:
    return read_manifest()


def check_against_manifest(root: Path, files: list) -> None:
    """Refuse dataset files that do not match the shipped manifest (files it does not list pass).

    ``files`` holds paths, or ``(path, decoded array)`` pairs for pixel
    entries. A file's digest is computed once per version of the file: a
    match is remembered in the user's cache by path, size, modification time
    and inode.
    """
    cache, added = _read_verified(), False
    for item in files:
        path, array = item if isinstance(item, tuple) else (item, None)
        try:
            rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            continue
        entry = _shipped_manifest().get(rel)
        if entry is None:
            continue
        info = Path(path).stat()
        key, signature = str(Path(path).resolve()), [info.st_size, info.st_mtime_ns, info.st_ino, entry.digest]
        if cache.get(key) == signature:
            continue
        if entry.method == "bytes":
            problem = None if _file_digest(path) == entry.digest else "its sha256 differs"
        else:
            array = read_tiff(path) if array is None else array
            problem = (f"decodes to {_pixel_method(array)}, expected {entry.method}"
                       if _pixel_method(array) != entry.method
                       else None if pixel_digest(array) == entry.digest else "its pixel sha256 differs")
        if problem:
            raise UnetlibError(f"{path} does not match the checksum manifest ({problem}: damaged, or another "
                               f"dataset's file); {_REFETCH}")
        cache[key], added = signature, True
    if added:
        try:
            from unetlib.atomic import write_text

            write_text(_verified_cache(), json.dumps(cache) + "\n")
        except (OSError, UnetlibError):
            pass  # no cache where the home folder is read-only: the files are checked again next time


def _read_verified() -> dict:
    try:
        cache = json.loads(_verified_cache().read_text())
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest line.

    Attributes
    ----------
    path : str
        Relative to the data root, ``/``-separated, e.g. ``isbi2012/train-volume.tif``.
    digest : str
        Lower-case hex sha256.
    method : str
        ``"bytes"`` (sha256 of the file) or ``"pixels:DTYPE:SHAPE"``, e.g.
        ``"pixels:uint8:30x512x512"`` (sha256 of the decoded array, see
        :func:`pixel_digest`).
    size : int or None
        The file's size in bytes; None for a line of the old 3-column format.
        :func:`unetlib.fetch.fetch` needs it to bound downloads and unpacking.
    """

    path: str
    digest: str
    method: str
    size: int | None = None

    @property
    def dataset(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def decoded_bytes(self) -> int | None:
        """Bytes of the decoded array of a ``pixels:`` entry (None for ``bytes`` entries)."""
        if not self.method.startswith("pixels:"):
            return None
        _, dtype, shape = self.method.split(":", 2)
        return int(np.dtype(dtype).itemsize * np.prod([int(n) for n in shape.split("x")]))


Manifest = Mapping[str, ManifestEntry]

_MANIFEST_HEADER = """\
# unetlib dataset manifest: one line per file, "SHA256  METHOD  SIZE  PATH", PATH
# relative to the data root (see unetlib.data.data_root), SIZE the file's size in
# bytes (unetlib data fetch installs only these paths and no byte more). Lines of
# the older "SHA256  METHOD  PATH" format are still read (without a size).
# METHOD "bytes": sha256 of the file's bytes (as `sha256sum`). The Cell Tracking
#   Challenge hashes come from a byte-for-byte mirror copy of the official training
#   zips; identity with the current official zips is likely but was not proven.
# METHOD "pixels:DTYPE:SHAPE": sha256 of the DECODED image, not of the file. The
#   ISBI 2012 stacks here were re-assembled from a mirror's PNG slices, so only
#   their pixels, not their TIFF bytes, are meaningful. The hash input is the
#   ASCII line "DTYPE SHAPE\\n" (e.g. "uint8 30x512x512\\n") followed by the
#   C-contiguous array bytes (unetlib.data.pixel_digest). Their SIZE is that of
#   the reference copy's file; another encoding of the same pixels may differ.
# Generated with unetlib.data.make_manifest + format_manifest.
"""


def cell_areas(masks) -> np.ndarray:
    """Pixel counts of every labelled object (label > 0) in the instance masks ``masks``, in one array."""
    counts = [np.bincount(np.asarray(m).ravel()) for m in masks]
    return np.concatenate([np.zeros(0, np.int64)] + [c[1:][c[1:] > 0] for c in counts]).astype(np.int64)


def pixel_digest(array: np.ndarray) -> str:
    """sha256 (hex) of ``"DTYPE SHAPE\\n"`` followed by the C-contiguous bytes of ``array``."""
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.name} {'x'.join(map(str, array.shape))}\n".encode("ascii")
    return hashlib.sha256(header + array.tobytes()).hexdigest()


def _pixel_method(array: np.ndarray) -> str:
    return f"pixels:{array.dtype.name}:{'x'.join(map(str, array.shape))}"


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


_MANIFEST_LINE = re.compile(
    r"(?P<digest>[0-9a-f]{64})\s+(?P<method>bytes|pixels:\S+)\s+"
    r"(?:(?P<size>\d+)\s+)?(?P<path>(?![-+]?\d+\s)\S.*)"  # a path never starts with a number field
)


def parse_manifest(text: str, source: str = "manifest") -> dict[str, ManifestEntry]:
    """Parse manifest text (``#`` comments and blank lines ignored) into path -> entry.

    Lines are ``SHA256  METHOD  SIZE  PATH``; the older ``SHA256  METHOD  PATH``
    is read as well (size None). A third field of digits is always the size.
    """
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _MANIFEST_LINE.fullmatch(line.strip())
        if match is None:
            raise UnetlibError(
                f"{source} line {number} is not 'SHA256  METHOD  SIZE  PATH': {line!r}"
            )
        size = int(match["size"]) if match["size"] is not None else None
        path = match["path"].strip()
        entries[path] = ManifestEntry(path, match["digest"], match["method"], size)
    return entries


def read_manifest(path: str | os.PathLike | None = None) -> dict[str, ManifestEntry]:
    """Read a manifest file; by default the one shipped with the package (``datasets.sha256``)."""
    if path is None:
        text = resources.files("unetlib").joinpath(MANIFEST_NAME).read_text()
        return parse_manifest(text, MANIFEST_NAME)
    return parse_manifest(Path(path).read_text(), str(path))


def _as_manifest(manifest: Manifest | str | os.PathLike | None) -> Manifest:
    if manifest is None or isinstance(manifest, (str, os.PathLike)):
        return read_manifest(manifest)
    return manifest


def make_manifest(
    root: str | os.PathLike, datasets: tuple[str, ...] | None = None
) -> dict[str, ManifestEntry]:
    """Hash every file below ``root/NAME`` for each dataset folder present.

    ``isbi2012`` files are hashed by pixels, everything else by bytes; every
    entry records the file's size. Hidden files are skipped. ``datasets``
    defaults to every folder directly in root.
    """
    root = Path(root)
    names = datasets or sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    entries = {}
    for name in names:
        for path in sorted((root / name).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if not path.is_file() or any(part.startswith(".") for part in rel.split("/")):
                continue
            size = path.stat().st_size
            if name == ISBI:
                array = read_tiff(path)
                entries[rel] = ManifestEntry(rel, pixel_digest(array), _pixel_method(array), size)
            else:
                entries[rel] = ManifestEntry(rel, _file_digest(path), "bytes", size)
    return entries


def format_manifest(entries: Manifest) -> str:
    """The text of a manifest file (with the explanatory header), sorted by path.

    An entry without a size is written in the old 3-column form.
    """
    lines = [
        f"{e.digest}  {e.method}  {e.path}" if e.size is None else f"{e.digest}  {e.method}  {e.size}  {e.path}"
        for _, e in sorted(entries.items())
    ]
    return _MANIFEST_HEADER + "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    """What :func:`verify` found.

    Attributes
    ----------
    root : Path
    datasets : tuple of str
        The datasets checked.
    checked : int
        Number of files that matched the manifest.
    absent : list of str
        Datasets whose folder does not exist at all (their files are not listed
        one by one in ``missing``).
    missing : list of str
        Manifest paths (relative to root) with no file.
    corrupt : list of (str, str)
        (path, reason) for files that exist but do not match.
    extra : list of str
        Files inside a checked dataset folder that the manifest does not list.
        Nothing vouches for them, so they are reported (as warnings: they do
        not make ``ok`` False; ``unetlib data fetch`` never installs them).
    hints : list of str
        Likely layout mistakes seen (zip not unpacked, folder one level too deep, ...).
    """

    root: Path
    datasets: tuple[str, ...]
    checked: int = 0
    absent: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.absent or self.missing or self.corrupt)

    def lines(self) -> list[str]:
        """One human-readable line per problem, then a summary line."""
        out = [f"ABSENT   {self.root / n}  (fetch: unetlib data fetch {n})" for n in self.absent]
        out += [f"MISSING  {self.root / p}" for p in self.missing]
        out += [f"CORRUPT  {self.root / p}  ({why})" for p, why in self.corrupt]
        out += [f"EXTRA    {self.root / p}  (not in the manifest, not checked)" for p in self.extra]
        out += [f"HINT     {h}" for h in dict.fromkeys(self.hints)]
        if self.absent:
            layout = "; ".join(LAYOUT[n] for n in self.absent if n in LAYOUT)
            out.append(f"HINT     if the datasets are elsewhere, set {ENV_ROOT} (or pass --root) to "
                       f"the folder that contains them; expected layout: {layout}")
        status = "OK" if self.ok else "FAILED"
        out.append(
            f"{status}: {self.checked} files match the manifest; {len(self.absent)} datasets absent, "
            f"{len(self.missing)} files missing, {len(self.corrupt)} corrupt"
            + (f"; {len(self.extra)} extra files not in the manifest (not checked)" if self.extra else "")
            + f" (root {self.root})"
        )
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _entry_problem(path: Path, entry: ManifestEntry) -> str | None:
    """Why ``path`` does not match ``entry`` (None when it does)."""
    if entry.method == "bytes":
        digest = _file_digest(path)
        return None if digest == entry.digest else _mismatch("sha256", digest, entry)
    try:
        array = read_tiff(path)
    except UnetlibError as exc:
        return str(exc).split(";")[0]
    if _pixel_method(array) != entry.method:
        return f"decodes to {_pixel_method(array)}, expected {entry.method}"
    digest = pixel_digest(array)
    return None if digest == entry.digest else _mismatch("pixel sha256", digest, entry)


def _mismatch(kind: str, digest: str, entry: ManifestEntry) -> str:
    return f"{kind} {digest[:12]}..., expected {entry.digest[:12]}..."


def verify_dataset_dir(
    folder: Path, name: str, manifest: Manifest
) -> tuple[int, list[str], list[tuple[str, str]]]:
    """Check the folder of one dataset (which may lie anywhere) against the manifest.

    Returns
    -------
    (checked, missing, corrupt)
        Paths are reported relative to the data root, i.e. starting with ``name/``.
    """
    checked, missing, corrupt = 0, [], []
    for rel, entry in sorted(manifest.items()):
        if entry.dataset != name:
            continue
        path = folder / rel.split("/", 1)[1]
        if not path.is_file():
            missing.append(rel)
        elif (problem := _entry_problem(path, entry)) is not None:
            corrupt.append((rel, problem))
        else:
            checked += 1
    return checked, missing, corrupt


def extra_files(folder: Path, name: str, manifest: Manifest) -> list[str]:
    """Files below ``folder`` (the folder of dataset ``name``) that the manifest does not list.

    Paths are relative to the data root (``name/...``), sorted; hidden files count too.
    """
    listed = {rel for rel, e in manifest.items() if e.dataset == name}
    found = (f"{name}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file())
    return sorted(rel for rel in found if rel not in listed)


def _datasets_in(manifest: Manifest) -> tuple[str, ...]:
    seen = {e.dataset for e in manifest.values()}
    return tuple(n for n in DATASETS if n in seen) + tuple(sorted(seen - set(DATASETS)))


def verify(
    root: str | os.PathLike | None = None,
    datasets: list[str] | tuple[str, ...] | None = None,
    manifest: Manifest | str | os.PathLike | None = None,
) -> VerifyReport:
    """Check the datasets below ``root`` against the checksum manifest.

    Parameters
    ----------
    root : path, optional
        The data root; see :func:`data_root`.
    datasets : list of str, optional
        Names to check; default: every dataset in the manifest.
    manifest : mapping or path, optional
        Default: the manifest shipped with the package.

    Returns
    -------
    VerifyReport
        ``report.ok`` is False when any dataset is absent or any file missing
        or corrupt; every such file is listed. Files the manifest does not list
        are listed in ``report.extra`` as warnings. Nothing is written or deleted.
    """
    root = data_root(root)
    manifest = _as_manifest(manifest)
    known = _datasets_in(manifest)
    names = tuple(datasets) if datasets else known
    for name in names:
        _check_dataset_name(name, known)
    report = VerifyReport(root, names)
    for name in names:
        folder = root / name
        if not folder.is_dir():
            report.absent.append(name)
            report.hints += layout_hints(root, name) if name in DATASETS else []
            continue
        checked, missing, corrupt = verify_dataset_dir(folder, name, manifest)
        report.checked += checked
        report.missing += missing
        report.corrupt += corrupt
        report.extra += extra_files(folder, name, manifest)
        if missing and name in DATASETS:
            report.hints += layout_hints(root, name)
    return report
