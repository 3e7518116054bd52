"""Download a dataset, check it against the manifest, then move it into place.

Sources (overridable with ``url=`` / ``--url`` or the environment variable
``UNETLIB_DATA_URL``, a base URL; see "Untrusted sources" for what is allowed):

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

Untrusted sources: the checksum manifest, not the server, decides what is
installed and how many bytes may arrive.

* Only ``https`` URLs, and redirects only to ``https``. A mirror the user names
  (``url=`` / ``--url`` / ``UNETLIB_DATA_URL``) may also be plain ``http``
  (redirects from it to ``http`` or ``https``); ``file:``, ``ftp:`` and every
  other scheme are refused, also as a redirect target.
* A download larger than :func:`download_limit` is refused, announced or not:
  for a Cell Tracking Challenge zip twice the manifest's total size of the
  dataset plus 50 MiB (the official zips also hold silver truth ``*_ST`` and
  ``*_ERR_SEG`` folders, which are small compressed masks), for an ISBI stack
  four times its decoded pixel size plus 1 MiB (its TIFF encoding may differ
  from the reference copy's, so its exact size is not known).
* From a zip, only the members whose path is a manifest file of the dataset
  are unpacked, each to the manifest's path; the others are skipped and
  counted (:attr:`FetchResult.skipped`). A member whose declared size differs
  from the manifest's, or that inflates past it (a zip bomb that lies about its
  sizes), stops the fetch before more than the manifest's bytes are written.
  Archives with unsafe member paths (absolute, ``..``) are refused outright.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from tqdm import tqdm

from unetlib.atomic import owner_line, process_gone
from unetlib.dataset_files import ENV_ROOT, ISBI, ISBI_FILES, check_dataset_name, data_root
from unetlib.errors import UnetlibError
from unetlib.manifest import Manifest, ManifestEntry, as_manifest, verify_dataset_dir

__all__ = ["ENV_URL", "CTC_URL", "ISBI_URL", "FetchResult", "source_urls", "download_limit", "fetch"]

ENV_URL = "UNETLIB_DATA_URL"
#: where a user names a mirror, for messages: the variable works for every command, --url only for `data fetch`
_MIRROR = f"{ENV_URL} (or --url of `unetlib data fetch`)"
#: Seconds one download may take in all (default: a minute plus 20 s per MB the manifest allows)
ENV_TIMEOUT = "UNETLIB_FETCH_TIMEOUT"
CTC_URL = "https://data.celltrackingchallenge.net/training-datasets"
ISBI_URL = ("https://raw.githubusercontent.com/zhixuhao/unet/"
            "b45af4d458437d8281cc218a07fd4380818ece4a/data/membrane")
_CHUNK = 1 << 20
# download limits (see download_limit): a CTC zip may be _ZIP_FACTOR x the manifest's
# total plus _ZIP_MARGIN; an ISBI stack _PIXEL_FACTOR x its decoded size plus _PIXEL_MARGIN
_ZIP_FACTOR, _ZIP_MARGIN = 2, 50 << 20
_PIXEL_FACTOR, _PIXEL_MARGIN = 4, 1 << 20


@dataclass(frozen=True)
class FetchResult:
    """Where the dataset is, and whether this call downloaded it (False: it was already there).

    ``skipped``: archive members that are not manifest files and were not installed.
    """

    path: Path
    fetched: bool
    skipped: int = 0
    removed: tuple = ()  # partial downloads left by interrupted fetches, removed before this one


def source_urls(name: str, url: str | None = None) -> list[str]:
    """The URLs :func:`fetch` downloads for dataset ``name``.

    Parameters
    ----------
    name : str
        One of :data:`unetlib.dataset_files.DATASETS`.
    url : str, optional
        A base URL (the files are ``BASE/NAME.zip`` or ``BASE/train-volume.tif`` ...),
        or, for a CTC dataset, the full URL of a ``.zip``. Default: the
        environment variable ``UNETLIB_DATA_URL``, else the official source.
        Such a user-given mirror may be ``https`` or plain ``http``.

    Raises
    ------
    UnetlibError
        A URL that is not ``https`` (the official sources) or ``http(s)`` (a
        user-given mirror): ``file:``, ``ftp:`` and other schemes are refused.
    """
    check_dataset_name(name)
    origin, base = _user_source(url)
    if name == ISBI:
        urls = [f"{(base or ISBI_URL).rstrip('/')}/{f}" for f in ISBI_FILES]
    elif base and base.lower().endswith(".zip"):
        urls = [base]
    else:
        urls = [f"{(base or CTC_URL).rstrip('/')}/{name}.zip"]
    for address in urls:
        _check_url(address, origin)
    return urls


def _user_source(url: str | None) -> tuple[str | None, str | None]:
    """(where the user named a mirror: ``"--url"`` or the variable; the base URL), or (None, None)."""
    if url:
        return "--url", url.strip()
    env = os.environ.get(ENV_URL, "").strip()
    return (ENV_URL, env) if env else (None, None)


def _check_url(url: str, origin: str | None) -> None:
    """Refuse ``url`` unless it is https, or plain http named by the user (``origin`` not None)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a malformed port
    except ValueError as exc:
        raise UnetlibError(f"{url} ({'given with ' + origin if origin else 'built in'}) is not a valid URL "
                           f"({exc}): pass a URL such as https://host/path with {_MIRROR}") from None
    scheme = parts.scheme.lower()
    if parts.netloc and (scheme == "https" or (scheme == "http" and origin is not None)):
        return
    given = f"given with {origin}" if origin else "built in"
    raise UnetlibError(
        f"refusing to download {url} ({given}): only https sources are allowed, plain http only "
        f"for a mirror given with {_MIRROR}, never file:, ftp: or other schemes. Pass an "
        f"https (or http mirror) base URL with {_MIRROR}, or unset {ENV_URL}"
    )


def download_limit(name: str, manifest: Manifest | str | os.PathLike | None = None) -> int:
    """The most bytes :func:`fetch` downloads for ``name`` before it gives up.

    For a CTC dataset (one zip): ``2 x`` the manifest's total size of its
    files ``+ 50 MiB``; the zip also holds folders the manifest does not list
    (silver truth ``*_ST``, ``*_ERR_SEG``: compressed masks, far smaller than
    the dataset). For ISBI 2012, per stack (the largest stack's limit):
    ``4 x`` its decoded pixel bytes ``+ 1 MiB``, since the mirror's TIFF
    encoding may differ from the reference copy's (see :func:`_file_limit`).
    ``manifest`` defaults to the shipped one.
    """
    manifest = _manifest_for(check_dataset_name(name), manifest)
    entries = [e for e in manifest.values() if e.dataset == name]
    if name == ISBI:
        return max(_file_limit(e) for e in entries)
    return _ZIP_FACTOR * sum(e.size for e in entries) + _ZIP_MARGIN


def _file_limit(entry: ManifestEntry) -> int:
    """Download limit of one file: its exact size, or for a ``pixels:`` entry 4 x decoded + 1 MiB."""
    decoded = entry.decoded_bytes
    if decoded is None:
        return entry.size
    return max(entry.size, _PIXEL_FACTOR * decoded + _PIXEL_MARGIN)


# --------------------------------------------------------------------------- download


def _network_error(url: str, exc: BaseException) -> UnetlibError:
    return UnetlibError(
        f"download of {url} failed ({type(exc).__name__}: {exc}); nothing was installed. "
        f"Check the network and run the command again; or name a mirror with {_MIRROR}; or, if the "
        f"datasets are already on this machine, set {ENV_ROOT} to the folder that holds them (layout: "
        f"data/README.md)"
    )


def _progress_bar(total: int | None, label: str, enabled: bool):
    if not enabled:
        return None

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False)


def _copy_at_most(source, out, limit: int, bar=None, deadline: float | None = None, url: str = "") -> int:
    """Copy ``source`` into ``out``, never more than ``limit`` bytes, and never past ``deadline``.

    Returns the bytes copied, or ``limit + 1`` as soon as ``source`` holds more
    than ``limit`` (the excess is read at most one byte past the limit and not written).
    Reads take what has arrived (``read1``), so a server that trickles bytes
    meets the deadline instead of filling one large read forever.
    """
    read = getattr(source, "read1", source.read)
    written = 0
    while chunk := read(min(_CHUNK, limit + 1 - written)):
        if written + len(chunk) > limit:
            return limit + 1
        out.write(chunk)
        written += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
        if deadline is not None and time.monotonic() > deadline:
            raise UnetlibError(
                f"download of {url} did not finish in time ({written} bytes so far, limit "
                f"{os.environ.get(ENV_TIMEOUT) or 'the default'} s of {ENV_TIMEOUT}); nothing was installed. "
                f"Check the network or the mirror, or raise {ENV_TIMEOUT}")
    return written


def download_seconds(limit: int) -> float:
    """The total time allowed for a download of at most ``limit`` bytes (``UNETLIB_FETCH_TIMEOUT`` overrides)."""
    given = os.environ.get(ENV_TIMEOUT, "").strip()
    if given:
        try:
            seconds = float(given)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise UnetlibError(f"{ENV_TIMEOUT}={given!r} is not a positive number of seconds; set it or unset it")
        return seconds
    return 60.0 + 20.0 * limit / 1e6


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to https, or from a plain-http (user-given) mirror to http.

    So https never downgrades to http, and nothing ever leads to ``file:`` or ``ftp:``.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urlsplit(req.full_url).scheme.lower(), urlsplit(newurl).scheme.lower()
        if new == "https" or (new == "http" and old == "http"):
            return super().redirect_request(req, fp, code, msg, headers, newurl)
        raise UnetlibError(
            f"refused the redirect from {req.full_url} to {newurl}: redirects may only lead to "
            f"https (or from a plain-http mirror to http); nothing was installed. Pass a source "
            f"that serves the files itself with {_MIRROR}"
        )


def _too_large(url: str, limit: int, detail: str) -> UnetlibError:
    return UnetlibError(
        f"download of {url} is larger than {limit} bytes ({detail}), more than the checksum manifest "
        f"allows for it; refused, nothing was installed. The source does not hold the dataset the "
        f"manifest describes: check the source ({_MIRROR})"
    )


def _download(url: str, dest: Path, *, limit: int, progress: bool, timeout: float) -> Path:
    """Stream ``url`` into ``dest``, at most ``limit`` bytes.

    Raises when the server announces or sends more than ``limit`` bytes, sends
    fewer than announced, or redirects anywhere but https (see :class:`_SafeRedirects`).
    """
    request = urllib.request.Request(url, headers={"User-Agent": "unetlib"})
    opener = urllib.request.build_opener(_SafeRedirects)
    deadline = time.monotonic() + download_seconds(limit)
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > limit:
                raise _too_large(url, limit, f"the server announces {total}")
            bar = _progress_bar(total, PurePosixPath(url).name, progress)
            try:
                with open(dest, "wb") as out:
                    written = _copy_at_most(response, out, limit, bar, deadline, url)
            finally:
                if bar is not None:
                    bar.close()
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _network_error(url, exc) from exc
    if written > limit:
        raise _too_large(url, limit, "stopped after that many")
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


def _member_prefix(names: list[str], name: str) -> str:
    """The folder inside the archive that holds ``01/``, ``01_GT/`` ... (``""``: the top).

    The official zips hold one top folder ``NAME/``; a single top folder named
    like ``NAME`` in another case, or the sequence folders at the top, are
    accepted as well.
    """
    folders = {n.split("/", 1)[0] for n in names if "/" in n}
    if name in folders:
        return f"{name}/"
    tops = {n.split("/", 1)[0] for n in names} - {""}
    tops = {t for t in tops if not t.startswith(("__MACOSX", "."))}
    if len(tops) == 1 and (top := tops.pop()) in folders and top.lower() == name.lower():
        return f"{top}/"
    return ""


def _select_members(
    members: list[zipfile.ZipInfo], name: str, manifest: Manifest, url: str
) -> tuple[list[tuple[zipfile.ZipInfo, ManifestEntry]], int]:
    """(the members that are manifest files of ``name``, with their entries; how many others)."""
    prefix = _member_prefix([m.filename for m in members], name)
    wanted, seen, skipped = [], set(), 0
    for info in members:
        if info.is_dir():
            continue
        entry = None
        if info.filename.startswith(prefix):
            entry = manifest.get(f"{name}/{info.filename[len(prefix):]}")
        if entry is None or entry.dataset != name:
            skipped += 1
            continue
        if entry.path in seen:
            raise UnetlibError(f"the archive from {url} holds {info.filename} twice; refusing it, "
                               f"nothing was installed")
        seen.add(entry.path)
        wanted.append((info, entry))
    return wanted, skipped


def _check_declared_size(info: zipfile.ZipInfo, entry: ManifestEntry, url: str) -> None:
    if info.file_size != entry.size:
        raise UnetlibError(
            f"the archive from {url} is refused: {entry.path} declares {info.file_size} bytes, the "
            f"manifest {entry.size}. Nothing was installed; the source is damaged or not the "
            f"dataset the manifest describes (check the source: {_MIRROR})"
        )


def _copy_bounded(source, out, limit: int, what: str) -> int:
    """Copy ``source`` into ``out``; raise as soon as it holds more than ``limit`` bytes."""
    written = _copy_at_most(source, out, limit)
    if written > limit:
        raise UnetlibError(
            f"{what} inflates to more than its {limit} bytes in the checksum manifest (a damaged "
            f"archive or a zip bomb); refused, nothing was installed"
        )
    return written


def _unpack(archive: Path, into: Path, url: str, name: str, manifest: Manifest) -> int:
    """Unpack the manifest files of ``name`` from ``archive`` to ``into/PATH``; return how many members were skipped.

    Steps: refuse unsafe member paths; pick the members that are manifest
    files; refuse any whose declared size differs from the manifest's; copy
    each to the manifest's path, stopping past its size.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_member(info.filename, url)
            wanted, skipped = _select_members(members, name, manifest, url)
            for info, entry in wanted:
                _check_declared_size(info, entry, url)
            for info, entry in wanted:
                dest = into / entry.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(dest, "xb") as out:
                    _copy_bounded(source, out, entry.size, f"member {info.filename} of {url}")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error,
            NotImplementedError, RuntimeError) as exc:
        raise UnetlibError(
            f"the archive from {url} cannot be unpacked ({type(exc).__name__}: {exc}); it is "
            f"probably incomplete or corrupt. Nothing was installed; run the command again"
        ) from exc
    return skipped


# --------------------------------------------------------------------------- fetch


def _manifest_for(name: str, manifest: Manifest | str | os.PathLike | None) -> Manifest:
    """The manifest, which must list files of ``name``, each with its size (they bound the download)."""
    manifest = as_manifest(manifest)
    entries = [e for e in manifest.values() if e.dataset == name]
    if not entries:
        raise UnetlibError(f"the checksum manifest lists no files of {name}; pass a manifest that does")
    unsized = [e.path for e in entries if e.size is None]
    if unsized:
        raise UnetlibError(
            f"the checksum manifest lists no file sizes for {len(unsized)} files of {name} (e.g. "
            f"{unsized[0]}: the old 'SHA256  METHOD  PATH' format); fetch needs them to bound the "
            f"download. Regenerate it with unetlib.manifest.format_manifest(unetlib.manifest.make_manifest(ROOT))"
        )
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


def _download_into(
    tmp: Path, name: str, urls: list[str], manifest: Manifest, progress: bool, timeout: float
) -> tuple[Path, int]:
    """Download (and, for a zip, unpack) into ``tmp``; return (the candidate dataset folder, members skipped)."""
    if name == ISBI:
        folder = tmp / name
        folder.mkdir()
        for url, filename in zip(urls, ISBI_FILES):
            entry = manifest.get(f"{ISBI}/{filename}")
            if entry is None:
                raise UnetlibError(f"the checksum manifest lists no {ISBI}/{filename}; pass a manifest that does")
            part = _download(url, folder / f"{filename}.part", limit=_file_limit(entry),
                             progress=progress, timeout=timeout)
            part.rename(folder / filename)
        return folder, 0
    archive = _download(urls[0], tmp / f"{name}.zip.part", limit=download_limit(name, manifest),
                        progress=progress, timeout=timeout)
    unpacked = tmp / "unpacked"
    skipped = _unpack(archive, unpacked, urls[0], name, manifest)
    return unpacked / name, skipped


def _temporary_folder(root: Path, name: str) -> Path:
    """A fresh hidden folder inside ``root`` (created if needed), on the same filesystem as the target,
    holding an ``.owner`` file (host and pid) so that a later fetch can tell when it was abandoned."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{name}.fetch-", dir=root))
        (folder / OWNER).write_text(owner_line() + "\n")
        return folder
    except OSError as exc:
        raise UnetlibError(f"cannot write into the data root {root} ({exc}); set {ENV_ROOT} to a writable "
                           f"folder (or pass `unetlib data fetch` a writable --data-root)") from exc


OWNER = ".owner"


def partial_downloads(root: Path, name: str | None = None) -> list[Path]:
    """Download folders that interrupted fetches left in ``root`` (their process is gone)."""
    found = []
    for folder in sorted(Path(root).glob(f".{name or '*'}.fetch-*")):
        try:
            host, pid = (folder / OWNER).read_text().split()
            gone = process_gone(host, int(pid))
        except (OSError, ValueError):  # no owner file: left by a version without one, or cut short
            gone = time.time() - folder.stat().st_mtime > 3600
        if folder.is_dir() and gone:
            found.append(folder)
    return found


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
        The data root (created if needed); see :func:`unetlib.dataset_files.data_root`.
    url : str, optional
        Source override (a mirror; https, or plain http); see :func:`source_urls`.
        Without it, only the official https sources are used.
    manifest : mapping or path, optional
        Checksums and sizes to verify against; default: the one shipped with
        the package. Only its files of ``name`` are installed.
    progress : bool, default True
        Show a tqdm progress bar (on stderr) per file.
    timeout : float, default 60
        Seconds without network activity before a download fails.

    Returns
    -------
    FetchResult
        ``fetched`` is False when a complete dataset was already there;
        ``skipped`` counts archive members that are not manifest files (never
        installed), e.g. the official zips' silver truth ``*_ST``.

    Raises
    ------
    UnetlibError
        Network failure, a source or redirect that is not https (plain http
        only for a user-given mirror), a download larger than
        :func:`download_limit`, incomplete download, archive that does not
        unpack, has unsafe paths, members of other sizes than the manifest's
        or does not match the manifest (nothing is installed), a manifest
        without sizes, or an existing incomplete dataset folder (left untouched).
    """
    name = check_dataset_name(name)
    manifest = _manifest_for(name, manifest)
    root = data_root(root)
    target = root / name
    if _check_existing(target, name, manifest):
        return FetchResult(target, fetched=False)
    urls = source_urls(name, url)
    removed = tuple(partial_downloads(root, name))
    for folder in removed:  # an interrupted fetch (kill -9, power loss) left its partial download
        shutil.rmtree(folder, ignore_errors=True)
    tmp = _temporary_folder(root, name)
    try:
        folder, skipped = _download_into(tmp, name, urls, manifest, progress, timeout)
        _check_against_manifest(folder, name, manifest, urls)
        _move_into_place(folder, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return FetchResult(target, fetched=True, skipped=skipped, removed=removed)

