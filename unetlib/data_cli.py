"""``unetlib data verify | fetch | info``: the datasets from the command line.

Kept free of PyTorch so that these commands start quickly.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import tifffile

from unetlib.data import (
    DATASETS,
    ENV_ROOT,
    ISBI,
    ISBI_FILES,
    SEQUENCES,
    data_root,
    indexed_files,
    read_man_track,
)
from unetlib.errors import UnetlibError
from unetlib.fetch import fetch, partial_downloads
from unetlib.manifest import verify

__all__ = ["register_cli", "add_data_root"]


def add_data_root(parser: argparse.ArgumentParser, older: str) -> None:
    """The data root option of every command, ``--data-root DIR``, and the command's older spelling ``older``
    (``--root`` of ``unetlib data``, ``--data`` of ``unetlib train``): still accepted, no longer listed."""
    parser.add_argument("--data-root", dest="data_root", metavar="DIR",
                        help=f"data root (default: ${ENV_ROOT}, else data/; {older} is the deprecated spelling)")
    parser.add_argument(older, dest="data_root", help=argparse.SUPPRESS)


def register_cli(subparsers) -> None:
    """Add the ``data`` command and its three actions to the ``unetlib`` parser."""
    parser = subparsers.add_parser(
        "data", help="verify, fetch and describe the datasets",
        description=f"The paper's datasets below the data root (--data-root, else ${ENV_ROOT}, else data/).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    check = actions.add_parser("verify", help="check files against the checksum manifest "
                                               "(files it does not list: EXTRA warnings)")
    check.add_argument("names", nargs="*", metavar="NAME",
                       help=f"datasets (default: all of {', '.join(DATASETS)})")
    add_data_root(check, "--root")
    check.set_defaults(func=_verify)

    get = actions.add_parser("fetch", help="download, verify and unpack a dataset")
    get.add_argument("name", choices=DATASETS, metavar="NAME", help=", ".join(DATASETS))
    add_data_root(get, "--root")
    get.add_argument("--url", help="source mirror: a base URL, or a .zip URL, https or http (default: "
                                   "$UNETLIB_DATA_URL, else the official https source)")
    get.add_argument("--no-progress", action="store_true", help="no progress bar")
    get.set_defaults(func=_fetch)

    show = actions.add_parser("info", help="what is present: shapes, frame counts, annotated frames")
    add_data_root(show, "--root")
    show.set_defaults(func=_info)


def _checked_root(args: argparse.Namespace, must_exist: bool) -> Path:
    """The data root; one that is a file (or, with ``must_exist``, missing) is a one-line error
    naming where it came from (``--data-root``, ``$UNETLIB_DATA`` or the default)."""
    root = data_root(args.data_root)
    source = ("--data-root" if args.data_root is not None else
              f"${ENV_ROOT}" if os.environ.get(ENV_ROOT, "").strip() else "the default data root")
    if root.exists() and not root.is_dir():
        raise UnetlibError(f"data root {root} ({source}) is a file, not a folder: point --data-root or ${ENV_ROOT} "
                           "at the folder that holds isbi2012/ and the cell tracking datasets")
    if must_exist and not root.exists():
        raise UnetlibError(f"data root {root} ({source}) does not exist: fetch the datasets with `unetlib data "
                           f"fetch NAME --data-root {root}`, or point --data-root or ${ENV_ROOT} at the folder that holds them")
    return root


def _verify(args: argparse.Namespace) -> int:
    for name in args.names:
        if name not in DATASETS:
            raise UnetlibError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    _checked_root(args, must_exist=True)
    report = verify(args.data_root, args.names or None)
    print(report)
    _leftovers(data_root(args.data_root))
    return 0 if report.ok else 1


def _fetch(args: argparse.Namespace) -> int:
    _checked_root(args, must_exist=False)  # before any download
    result = fetch(args.name, args.data_root, url=args.url, progress=not args.no_progress)
    verb = "fetched and verified" if result.fetched else "already present and complete; nothing done"
    print(f"{args.name}: {verb} ({result.path})")
    if result.skipped:
        print(f"note: {result.skipped} archive members not in the manifest were not installed "
              f"(e.g. the official zips' silver truth *_ST and *_ERR_SEG folders)")
    for folder in result.removed:
        print(f"note: removed {folder.name}, a partial download an interrupted fetch had left")
    return 0


def _leftovers(root: Path) -> None:
    """Mention partial downloads that interrupted fetches left in the data root."""
    if root.is_dir():
        for folder in partial_downloads(root):
            name = folder.name[1:].split(".fetch-")[0]
            print(f"note: {folder} is a partial download left by an interrupted fetch; "
                  f"`unetlib data fetch {name}` removes it")


def _info(args: argparse.Namespace) -> int:
    root = _checked_root(args, must_exist=False)  # a missing root is reported below, with how to fetch
    print(f"data root: {root}" + ("" if root.is_dir() else "  (does not exist)"))
    for name in DATASETS:
        folder = root / name
        if not folder.is_dir():
            print(f"{name}: absent (fetch: unetlib data fetch {name})")
        elif name == ISBI:
            print(f"{name}:")
            for line in _isbi_lines(folder):
                print("  " + line)
        else:
            print(f"{name}:")
            for seq in SEQUENCES:
                print("  " + _sequence_line(folder, seq))
    _leftovers(root)
    print("(shapes from the TIFF headers; run `unetlib data verify` to check contents)")
    return 0


def _tiff_shape(path: Path) -> str:
    """``pages x H x W dtype`` from the header only, or why it cannot be read."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            pages = len(tif.pages)
            shape = page.shape if pages == 1 else (pages, *page.shape)
            return f"{'x'.join(map(str, shape))} {page.dtype}"
    except Exception as exc:  # a broken header: report, do not fail
        return f"unreadable ({type(exc).__name__})"


def _isbi_lines(folder: Path) -> list[str]:
    return [f"{f}: {_tiff_shape(folder / f) if (folder / f).is_file() else 'MISSING'}" for f in ISBI_FILES]


def _sequence_line(folder: Path, seq: str) -> str:
    raw, gt = folder / seq, folder / f"{seq}_GT"
    if not raw.is_dir():
        return f"{seq}: MISSING ({raw})"
    frames = indexed_files(raw, "t")
    first = _tiff_shape(frames[min(frames)]) if frames else "-"
    seg = sorted(indexed_files(gt / "SEG", "man_seg")) if (gt / "SEG").is_dir() else []
    tra = indexed_files(gt / "TRA", "man_track") if (gt / "TRA").is_dir() else {}
    track_file = gt / "TRA" / "man_track.txt"
    tracks = f"{len(read_man_track(track_file))} tracks" if track_file.is_file() else "no man_track.txt"
    return (f"{seq}: {len(frames)} frames of {first}; {len(seg)} annotated SEG frames {seg}; "
            f"{len(tra)} TRA masks, {tracks}")

