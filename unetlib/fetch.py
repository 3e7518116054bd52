"""Download a dataset, check it against the manifest, then move it into place.

Sources (overridable with ``url=`` / ``--url`` or the environment variable
``UNETLIB_DATA_URL``, a base URL):

* Cell Tracking Challenge: the official training zip
  ``https://data.celltrackingchallenge.net/training-datasets/<NAME>.zip``.
* ISBI 2012: the official site is offline; the three stacks committed to the
  GitHub repository zhixuhao/unet, pinned to commit
  b45af4d458437d8281cc218a07fd4380818ece4a (``data/membrane/*.tif``). The
  manifest's ISBI hashes are of decoded pixels from PNG slices of that same
  repository; that its TIFF stacks decode to the same pixels is expected but
  was not checked. If they differ, fetching fails with a clear error and
  installs nothing.

Robustness: everything is downloaded and unpacked into a hidden temporary
folder inside the data root (``.NAME.fetch-*``), checked against the manifest,
and only then renamed to ``root/NAME`` in one step. An interrupted or corrupt
download therefore never leaves a ``root/NAME`` behind. An existing complete
dataset is left as it is; an existing incomplete one is never deleted or
overwritten. Only the standard library downloads (urllib).
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from unetlib.data import (
    ISBI, ISBI_FILES, Manifest, _as_manifest, _check_dataset_name,
    data_root, verify_dataset_dir,
)
from unetlib.errors import UnetlibError

__all__ = ["ENV_URL", "CTC_URL", "ISBI_URL", "FetchResult", "source_urls", "fetch"]

ENV_URL = "UNETLIB_DATA_URL"
CTC_URL = "https://data.celltrackingchallenge.net/training-datasets"
ISBI_URL = ("https://raw.githubusercontent.com/zhixuhao/unet/"
            "b45af4d458437d8281cc218a07fd4380818ece4a/data/membrane")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchResult:
    """Where the dataset is, and whether this call downloaded it (False: it was already there)."""

    path: Path
    fetched: bool


def source_urls(name: str, url: str | None = None) -> list[str]:
    """The URLs :func:`fetch` downloads for dataset ``name``.

    Parameters
    ----------
    name : str
        One of :data:`unetlib.data.DATASETS`.
    url : str, optional
        A base URL (the files are ``BASE/NAME.zip`` or ``BASE/train-volume.tif`` ...),
        or, for a CTC dataset, the full URL of a ``.zip``. Default: the
        environment variable ``UNETLIB_DATA_URL``, else the official source.
    """
    _check_dataset_name(name)
    base = (url or os.environ.get(ENV_URL, "").strip() or None)
    if name == ISBI:
        return [f"{(base or ISBI_URL).rstrip('/')}/{f}" for f in ISBI_FILES]
    if base and base.lower().endswith(".zip"):
        return [base]
    return [f"{(base or CTC_URL).rstrip('/')}/{name}.zip"]


# --------------------------------------------------------------------------- download


def _network_error(url: str, exc: BaseException) -> UnetlibError:
    return UnetlibError(
        f"download of {url} failed ({type(exc).__name__}: {exc}); nothing was installed. "
        f"Check the network and run the command again, pass another source with --url "
        f"(or {ENV_URL}), or download by hand and unpack into the data root"
    )


def _progress_bar(total: int | None, label: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm  # imported here: only downloads need it

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False)


def _copy_response(response, out, bar) -> int:
    written = 0
    while chunk := response.read(_CHUNK):
        out.write(chunk)
        written += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
    return written


def _download(url: str, dest: Path, *, progress: bool, timeout: float) -> Path:
    """Stream ``url`` into ``dest``; raise if the server sends fewer bytes than announced."""
    request = urllib.request.Request(url, headers={"User-Agent": "unetlib"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = _progress_bar(total, PurePosixPath(url).name, progress)
            try:
                written = _copy_response(response, out, bar)
            finally:
                if bar is not None:
                    bar.close()
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _network_error(url, exc) from exc
    if total is not None and written != total:
        raise UnetlibError(
            f"download of {url} is incomplete ({written} of {total} bytes); nothing was installed. "
            f"Run the command again"
        )
    return dest


# --------------------------------------------------------------------------- unpack


def _check_member(name: str, archive: str) -> None:
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or ":" in (parts[0] if parts else ""):
        raise UnetlibError(f"{archive} contains the unsafe path {name!r}; refusing to unpack it")


def _unpack(archive: Path, into: Path, url: str) -> Path:
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                _check_member(member, url)
            zf.extractall(into)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise UnetlibError(
            f"the archive from {url} cannot be unpacked ({type(exc).__name__}: {exc}); it is "
            f"probably incomplete or corrupt. Nothing was installed; run the command again"
        ) from exc
    return into


def _dataset_folder(unpacked: Path, name: str) -> Path:
    """The folder inside the unpacked archive that holds ``01/``, ``01_GT/`` ...

    The official zips hold one top folder ``NAME/``; an archive holding the
    sequence folders directly is accepted as well.
    """
    if (unpacked / name).is_dir():
        return unpacked / name
    children = [p for p in unpacked.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    if len(children) == 1 and children[0].is_dir() and children[0].name.lower() == name.lower():
        return children[0]
    return unpacked


# --------------------------------------------------------------------------- fetch


def _manifest_for(name: str, manifest: Manifest | str | os.PathLike | None) -> Manifest:
    manifest = _as_manifest(manifest)
    if not any(e.dataset == name for e in manifest.values()):
        raise UnetlibError(f"the checksum manifest lists no files of {name}; pass a manifest that does")
    return manifest


def _check_existing(target: Path, name: str, manifest: Manifest) -> bool:
    """True when ``target`` is already a complete dataset; raise when it is there but incomplete."""
    if not target.exists():
        return False
    checked, missing, corrupt = verify_dataset_dir(target, name, manifest)
    if not (missing or corrupt):
        return True
    bad = missing[:3] + [p for p, _ in corrupt[:3]]
    raise UnetlibError(
        f"{target} already exists but fails verification ({len(missing)} files missing, "
        f"{len(corrupt)} corrupt, e.g. {', '.join(bad)}). It was left untouched: move it away "
        f"(e.g. `mv {target} {target}.bad`) and run `unetlib data fetch {name}` again"
    )


def _check_against_manifest(folder: Path, name: str, manifest: Manifest, urls: list[str]) -> None:
    checked, missing, corrupt = verify_dataset_dir(folder, name, manifest)
    if not (missing or corrupt) and checked:
        return
    examples = [f"{p} missing" for p in missing[:3]] + [f"{p}: {why}" for p, why in corrupt[:3]]
    note = (" The ISBI mirror's stacks are expected, not proven, to decode to the manifest's "
            "pixels; see data/README.md for placing the files by hand." if name == ISBI else "")
    raise UnetlibError(
        f"the download from {', '.join(urls)} does not match the checksum manifest "
        f"({checked} files match, {len(missing)} missing, {len(corrupt)} corrupt: "
        f"{'; '.join(examples) or 'no files for ' + name}). Nothing was installed.{note}"
    )


def _download_into(tmp: Path, name: str, urls: list[str], progress: bool, timeout: float) -> Path:
    """Download (and, for a zip, unpack) into ``tmp``; return the candidate dataset folder."""
    if name == ISBI:
        folder = tmp / name
        folder.mkdir()
        for url, filename in zip(urls, ISBI_FILES):
            part = _download(url, folder / f"{filename}.part", progress=progress, timeout=timeout)
            part.rename(folder / filename)
        return folder
    archive = _download(urls[0], tmp / f"{name}.zip.part", progress=progress, timeout=timeout)
    unpacked = _unpack(archive, tmp / "unpacked", urls[0])
    return _dataset_folder(unpacked, name)


def _temporary_folder(root: Path, name: str) -> Path:
    """A fresh hidden folder inside ``root`` (created if needed), on the same filesystem as the target."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}.fetch-", dir=root))
    except OSError as exc:
        raise UnetlibError(f"cannot write into the data root {root} ({exc}); pass a writable --root "
                           f"or set UNETLIB_DATA") from exc


def _move_into_place(folder: Path, target: Path) -> None:
    if target.exists():  # appeared while downloading (e.g. a second fetch)
        raise UnetlibError(f"{target} appeared while downloading; left it untouched, nothing installed")
    os.rename(folder, target)


def fetch(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    manifest: Manifest | str | os.PathLike | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> FetchResult:
    """Download dataset ``name`` into ``root/name``, verified against the manifest.

    Parameters
    ----------
    name : str
        ``"isbi2012"``, ``"PhC-C2DH-U373"`` or ``"DIC-C2DH-HeLa"``.
    root : path, optional
        The data root (created if needed); see :func:`unetlib.data.data_root`.
    url : str, optional
        Source override; see :func:`source_urls`.
    manifest : mapping or path, optional
        Checksums to verify against; default: the one shipped with the package.
    progress : bool, default True
        Show a tqdm progress bar (on stderr) per file.
    timeout : float, default 60
        Seconds without network activity before a download fails.

    Returns
    -------
    FetchResult
        ``fetched`` is False when a complete dataset was already there.

    Raises
    ------
    UnetlibError
        Network failure, incomplete download, archive that does not unpack or
        does not match the manifest (nothing is installed), or an existing
        incomplete dataset folder (left untouched).
    """
    name = _check_dataset_name(name)
    manifest = _manifest_for(name, manifest)
    root = data_root(root)
    target = root / name
    if _check_existing(target, name, manifest):
        return FetchResult(target, fetched=False)
    urls = source_urls(name, url)
    tmp = _temporary_folder(root, name)
    try:
        folder = _download_into(tmp, name, urls, progress, timeout)
        _check_against_manifest(folder, name, manifest, urls)
        _move_into_place(folder, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return FetchResult(target, fetched=True)

