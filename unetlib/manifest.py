"""The checksum manifest shipped with the package (``datasets.sha256``): its format, the
digests it records, and checking dataset files and folders against it.

A manifest line is ``SHA256  METHOD  SIZE  PATH`` (see the file's own header).
:func:`check_files` is what the loaders of :mod:`unetlib.data` call on every file
they read (the files themselves are read with :mod:`unetlib.dataset_files`, not
through the loaders, so this module does not import them); :func:`verify` is ``unetlib data verify``; :func:`make_manifest` and
:func:`format_manifest` write a manifest. Checking never deletes or writes a
dataset file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from unetlib.atomic import write_text
from unetlib.dataset_files import (
    DATASETS,
    ENV_ROOT,
    ISBI,
    LAYOUT,
    REFETCH,
    check_dataset_name,
    data_root,
    layout_hints,
    read_dataset_tiff,
)
from unetlib.errors import UnetlibError

__all__ = [
    "MANIFEST_NAME", "ManifestEntry", "Manifest", "read_manifest", "parse_manifest", "format_manifest",
    "make_manifest", "pixel_digest", "file_digest", "check_files", "VerifyReport", "verify",
    "verify_dataset_dir", "extra_files", "as_manifest",
]

MANIFEST_NAME = "datasets.sha256"
_CHUNK = 1 << 20

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
# relative to the data root (see unetlib.dataset_files.data_root), SIZE the file's
# size in bytes (unetlib data fetch installs only these paths and no byte more).
# Lines of the older "SHA256  METHOD  PATH" format are still read (without a size).
# METHOD "bytes": sha256 of the file's bytes (as `sha256sum`). The Cell Tracking
#   Challenge hashes come from a byte-for-byte mirror copy of the official training
#   zips; identity with the current official zips is likely but was not proven.
# METHOD "pixels:DTYPE:SHAPE": sha256 of the DECODED image, not of the file. The
#   ISBI 2012 stacks here were re-assembled from a mirror's PNG slices, so only
#   their pixels, not their TIFF bytes, are meaningful. The hash input is the
#   ASCII line "DTYPE SHAPE\\n" (e.g. "uint8 30x512x512\\n") followed by the
#   C-contiguous array bytes (unetlib.manifest.pixel_digest). Their SIZE is that of
#   the reference copy's file; another encoding of the same pixels may differ.
# Generated with unetlib.manifest.make_manifest + format_manifest.
"""


def pixel_digest(array: np.ndarray) -> str:
    """sha256 (hex) of ``"DTYPE SHAPE\\n"`` followed by the C-contiguous bytes of ``array``."""
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.name} {'x'.join(map(str, array.shape))}\n".encode("ascii")
    return hashlib.sha256(header + array.tobytes()).hexdigest()


def _pixel_method(array: np.ndarray) -> str:
    return f"pixels:{array.dtype.name}:{'x'.join(map(str, array.shape))}"


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _entry_problem(path: Path, entry: ManifestEntry, array: np.ndarray | None = None) -> str | None:
    """Why ``path`` (decoded already: ``array``) does not match ``entry`` (None when it does).

    A pixel entry's file is decoded when ``array`` is None; a file that cannot
    be decoded raises the reader's error.
    """
    if entry.method == "bytes":
        digest = file_digest(path)
        return None if digest == entry.digest else _mismatch("sha256", digest, entry)
    array = read_dataset_tiff(path) if array is None else array
    if _pixel_method(array) != entry.method:
        return f"decodes to {_pixel_method(array)}, expected {entry.method}"
    digest = pixel_digest(array)
    return None if digest == entry.digest else _mismatch("pixel sha256", digest, entry)


def _mismatch(kind: str, digest: str, entry: ManifestEntry) -> str:
    return f"{kind} {digest[:12]}..., expected {entry.digest[:12]}..."


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


def as_manifest(manifest: Manifest | str | os.PathLike | None) -> Manifest:
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
                array = read_dataset_tiff(path)
                entries[rel] = ManifestEntry(rel, pixel_digest(array), _pixel_method(array), size)
            else:
                entries[rel] = ManifestEntry(rel, file_digest(path), "bytes", size)
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


def _verified_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unetlib" / "verified-files.json"


@functools.lru_cache(maxsize=1)
def _shipped_manifest() -> dict[str, ManifestEntry]:
    return read_manifest()


def check_files(root: Path, files: list) -> None:
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
        problem = _entry_problem(path, entry, array)
        if problem:
            raise UnetlibError(f"{path} does not match the checksum manifest ({problem}: damaged, or another "
                               f"dataset's file); {REFETCH}")
        cache[key], added = signature, True
    if added:
        try:
            write_text(_verified_cache(), json.dumps(cache) + "\n")
        except (OSError, UnetlibError):
            pass  # no cache where the home folder is read-only: the files are checked again next time


def _read_verified() -> dict:
    try:
        cache = json.loads(_verified_cache().read_text())
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


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
            out.append(f"HINT     if the datasets are elsewhere, set {ENV_ROOT} (or pass --data-root) to "
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
            continue
        try:
            problem = _entry_problem(path, entry)
        except UnetlibError as exc:  # a file that cannot be decoded: its problem is the reader's first clause
            problem = str(exc).split(";")[0]
        if problem is None:
            checked += 1
        else:
            corrupt.append((rel, problem))
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
    manifest = as_manifest(manifest)
    known = _datasets_in(manifest)
    names = tuple(datasets) if datasets else known
    for name in names:
        check_dataset_name(name, known)
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
