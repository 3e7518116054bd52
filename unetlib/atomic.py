"""Atomic file writes: a temporary file beside the target, then ``os.replace``.

An interruption never leaves a half-written file under the target's name, and
an existing file is only ever replaced by a complete one.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["atomic_open"]


@contextmanager
def atomic_open(path: str | Path, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Open a temporary binary file that becomes ``path`` when the block ends without error.

    ``suffix`` is the temporary file's ending (e.g. ``".npz"`` for numpy, which
    would otherwise append it to the name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
