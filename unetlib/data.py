"""The paper's three datasets loaded: ISBI 2012's stacks and the Cell Tracking
Challenge's sequences, checked against the shipped checksum manifest
(:mod:`unetlib.manifest`) as they are read.

Where the datasets live, their layout below the data root and the reader of one
file are in :mod:`unetlib.dataset_files` (re-exported here).

Loading checks shapes, dtypes and that no TIFF is truncated, and every file read
against the manifest (a file already checked is remembered, not hashed again). Neither loading nor verifying ever deletes or
writes a file. This module does not import PyTorch.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetlib import manifest
from unetlib.dataset_files import (
    CTC_DATASETS,
    DATASETS,
    DIRECTIONS,
    ENV_ROOT,
    ISBI,
    ISBI_FILES,
    ISBI_SHAPE,
    LAYOUT,
    REFETCH,
    SEQUENCES,
    check_dataset_name,
    data_root,
    layout_hints,
    read_dataset_tiff,
)
from unetlib.errors import UnetlibError
from unetlib.values import check_integer

__all__ = [
    # the names and folders of unetlib.dataset_files, re-exported for the loaders' users
    "ENV_ROOT", "DATASETS", "CTC_DATASETS", "SEQUENCES", "DIRECTIONS", "ISBI_FILES", "ISBI_SHAPE",
    "data_root", "ISBI2012", "CTCSequence", "load_isbi2012", "load_ctc", "cell_areas", "touching_pairs",
    "layout_hints", "indexed_files", "read_man_track",
    "check_dataset_name", "REFETCH",
]

# --------------------------------------------------------------------------- names and folders


def _check_sequence(sequence: str | int) -> str:
    seq = f"{sequence:02d}" if isinstance(sequence, int) else str(sequence)
    if seq not in SEQUENCES:
        raise UnetlibError(f"unknown sequence {sequence!r}; choose one of {', '.join(SEQUENCES)}")
    return seq


def _missing_dataset_error(root: Path, name: str, what: Path | None = None) -> UnetlibError:
    missing = what if what is not None else root / name
    hints = "; ".join(layout_hints(root, name))
    return UnetlibError(
        f"{missing} not found (dataset {name}, data root {root}). "
        + (f"Likely cause: {hints}. " if hints else "")
        + f"Expected layout below the root: {LAYOUT[name]}. "
        f"Fix: run `unetlib data fetch {name}` (add --data-root DIR for another folder), "
        f"or set {ENV_ROOT} to the folder that contains {name}/."
    )


# --------------------------------------------------------------------------- reading files


def _read_many(paths: list[Path]) -> list[np.ndarray]:
    """Decode many TIFFs, a few at a time (the codecs release the GIL)."""
    workers = max(1, min(4, os.cpu_count() or 1, len(paths)))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(read_dataset_tiff, paths))


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
        raise UnetlibError(f"{path} does not exist; {REFETCH}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4 or not all(f.isdigit() for f in fields):
            raise UnetlibError(
                f"{path} line {number} is not 'label first last parent': {line!r}; "
                f"{REFETCH}"
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
            f"{shape}; {REFETCH}"
        )
    return array


def load_isbi2012(root: str | os.PathLike | None = None, *, verify: bool = True) -> ISBI2012:
    """Load the three ISBI 2012 stacks from ``root/isbi2012`` (root: see :func:`data_root`).

    With ``verify`` (the default) every file is checked against the shipped
    checksum manifest as it is read (:func:`unetlib.manifest.check_files`), as ``unetlib data verify`` would (a file
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
        stacks.append(_check_stack(read_dataset_tiff(folder / name), folder / name, ISBI_SHAPE, np.uint8))
    if verify:
        manifest.check_files(root, [(folder / name, stack) for name, stack in zip(ISBI_FILES, stacks)])
    _check_binary_labels(stacks[1], folder / ISBI_FILES[1])
    return ISBI2012(*stacks)


def _check_binary_labels(labels: np.ndarray, path: Path) -> None:
    values = np.unique(labels)
    if not set(values.tolist()) <= {0, 255}:
        raise UnetlibError(f"{path} has values {values[:10].tolist()}, expected only 0 and 255; "
                           f"{REFETCH}")


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
            + f"; {REFETCH}"
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
        raise UnetlibError(f"{folder} holds no man_segNNN.tif; {REFETCH}")
    order = sorted(files)
    masks = _read_many([files[i] for i in order])
    for index, mask in zip(order, masks):
        _check_stack(mask, files[index], frame_shape, np.uint16)
        if index >= n_frames:
            raise UnetlibError(f"{files[index]} annotates frame {index}, but the sequence has "
                               f"{n_frames} frames; {REFETCH}")
    return dict(zip(order, masks))


def _load_tra(folder: Path, frame_shape: tuple[int, ...], n_frames: int) -> np.ndarray:
    files = indexed_files(folder, "man_track")
    missing = [i for i in range(n_frames) if i not in files]
    if missing:
        raise UnetlibError(f"{folder} lacks man_track{missing[0]:03d}.tif (and {len(missing) - 1} "
                           f"more); {REFETCH}")
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
    name = check_dataset_name(name, CTC_DATASETS)
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
        manifest.check_files(root, read)
    return CTCSequence(name, seq, frames, seg, markers, tracks)


def cell_areas(masks) -> np.ndarray:
    """Pixel counts of every labelled object (label > 0) in the instance masks ``masks``, in one array."""
    counts = [np.bincount(np.asarray(m).ravel()) for m in masks]
    return np.concatenate([np.zeros(0, np.int64)] + [c[1:][c[1:] > 0] for c in counts]).astype(np.int64)


def touching_pairs(masks, gap: int = 3) -> int:
    """Pairs of labelled objects at most ``gap`` 4-neighbour steps apart (``gap`` - 1 background pixels
    between them or fewer), summed over the instance masks ``masks``: the near-touching neighbours whose
    gap Eq. 2's border term weighs most. A sequence without any cannot show a network how touching
    cells are separated."""
    from scipy import ndimage  # here, as the weights: the rest of the module reads files only

    from unetlib.weights import grown_box

    gap = check_integer("gap", gap, 1)
    total = 0
    for mask in masks:
        mask = np.asarray(mask)
        pairs = set()
        for label, box in enumerate(ndimage.find_objects(mask), start=1):
            if box is None:
                continue
            window = mask[grown_box(box, gap, mask.shape)]
            near = ndimage.binary_dilation(window == label, iterations=gap)
            pairs.update(frozenset((label, int(o))) for o in np.unique(window[near]) if o not in (0, label))
        total += len(pairs)
    return total
