"""Every file the kit writes goes through here: a temporary file beside the target, fsync, rename.

An interruption or a full disk never leaves a half-written file under the
target's name, and an existing file is only ever replaced by a complete one.
Failures of the file system (read-only folder, full disk, a folder where a
file should go) become one-line :class:`~unetlib.errors.UnetlibError` messages
naming the file and the fix.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tifffile

from unetlib.errors import UnetlibError

__all__ = ["atomic_open", "write_bytes", "write_text", "write_tiff", "write_error", "folder_lock", "LOCK_NAME",
           "process_gone", "owner_line"]

LOCK_NAME = ".unetlib.lock"


@contextmanager
def atomic_open(path: str | Path, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Open a temporary binary file that becomes ``path`` when the block ends without error.

    ``suffix`` is the temporary file's ending (e.g. ``".npz"`` for numpy, which
    would otherwise append it to the name).
    """
    path = Path(path)
    if path.is_dir():
        raise UnetlibError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
    try:
        os.close(fd)
        with open(tmp, "wb") as f:  # opened by name: writers such as tifffile want f.name
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) or _is_disk_error(exc):
            raise write_error(path, exc) from None
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_tiff(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as a (multi-page) grey-value TIFF, atomically."""
    with atomic_open(path, suffix=".tif") as f:
        tifffile.imwrite(f, np.asarray(array), photometric="minisblack")
    return Path(path)


def write_error(path: Path, exc: BaseException) -> UnetlibError:
    """A one-line error for a failed write of ``path``, naming the fix."""
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or "No space left" in str(exc) or "file write failed" in str(exc):
        fix = "free some disk space or write elsewhere"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "the folder is not writable: choose another output folder"
    elif code == errno.EISDIR:
        fix = "it is a folder: give a file name"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        fix = "a part of the path is a file, not a folder: choose another output path"
    else:
        fix = "check the path and the disk"
    lines = str(exc).strip().splitlines()
    reason = getattr(exc, "strerror", None) or (lines[0][:200] if lines else type(exc).__name__)
    return UnetlibError(f"cannot write {path} ({reason}): {fix}")


def _is_disk_error(exc: BaseException) -> bool:
    """torch.save reports a full disk as a RuntimeError ("file write failed")."""
    return isinstance(exc, RuntimeError) and ("file write failed" in str(exc) or "No space left" in str(exc))


@contextmanager
def folder_lock(folder: str | Path, what: str = "run") -> Iterator[Path]:
    """Hold ``folder`` exclusively while the block runs (a lock file with the owner's host and pid).

    A second process asking for the same folder gets a one-line error naming
    the owner. A folder this call had to create is removed again if it is still
    empty at the end (an interrupted or refused run leaves nothing behind). A
    lock left by a process of this machine that no longer runs (``kill -9``, a
    crash) is stale and taken over.
    """
    folder = Path(folder)
    lock = folder / LOCK_NAME
    created = not folder.exists()  # removed again at the end if nothing else was written into it
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(folder, exc) from None
    me = owner_line()
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None:
                raise UnetlibError(f"{folder} is in use by another {what} ({owner}): wait for it to finish or "
                                   "choose another output folder") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        except OSError as exc:
            raise write_error(lock, exc) from None
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        break
    else:
        raise UnetlibError(f"cannot lock {folder}: another process keeps taking it; choose another output folder")
    try:
        yield folder
    finally:
        try:
            if lock.read_text().strip() == me:
                lock.unlink()
            if created and not any(folder.iterdir()):
                folder.rmdir()
        except OSError:
            pass


def process_gone(host: str, pid: int) -> bool:
    """True when process ``pid`` of this machine no longer runs (False for another host: it cannot be told)."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def owner_line() -> str:
    """``"HOST PID"`` of this process, as lock and owner files hold it."""
    return f"{socket.gethostname()} {os.getpid()}"


def _lock_owner(lock: Path) -> str | None:
    """``"host H, pid P"`` of a live lock, None when the lock is stale (its process on this host is gone)."""
    try:
        host, pid = lock.read_text().split()
        pid = int(pid)
    except (OSError, ValueError):  # being written right now, or left empty by a crash
        try:
            young = time.time() - lock.stat().st_mtime < 10
        except OSError:
            return None
        return f"lock file {lock} being written" if young else None
    if host != socket.gethostname():
        return f"host {host}, pid {pid}; delete {lock} if that run is gone"
    return None if process_gone(host, pid) else f"pid {pid}"
