"""Which PyTorch build ``make setup`` installs: the pip arguments for the pinned ``torch``.

``python -m unetlib.torch_build [cpu | cuda | URL]`` prints them (``make setup TORCH=...``).

- ``cpu`` (the default): the CPU build. On Linux the public package index's
  ``torch`` is the multi-GB CUDA build, and the CPU build lives on PyTorch's own
  CPU wheel index (:data:`CPU_INDEX`), so it is added when it answers within
  :data:`PROBE_SECONDS`; where it does not (offline, or only a local mirror
  reachable), pip's own configured index is used, with a note on stderr that
  says which build that may bring. On macOS and Windows the public index's
  build is already the CPU one.
- ``cuda``: the public index's build (CUDA on Linux x86-64).
- a URL: a wheel index of your choice (e.g. ``https://download.pytorch.org/whl/cu126``).

Runs before anything is installed: the standard library only (the pin is read
from ``pyproject.toml``, the one place it is written).
"""

from __future__ import annotations

import platform
import re
import sys
import threading
import tomllib
import urllib.request
from pathlib import Path

from unetlib.errors import UnetlibError

__all__ = ["CPU_INDEX", "PROBE_SECONDS", "pinned_torch", "pip_arguments", "index_answers", "main"]

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_SECONDS = 5.0
_CHOICES = ("cpu", "cuda")


def pinned_torch(pyproject: Path | None = None) -> str:
    """The ``torch==X`` requirement of ``pyproject.toml``."""
    pyproject = pyproject or Path(__file__).resolve().parents[1] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = [d.replace(" ", "") for d in dependencies if re.match(r"torch\s*==", d)]
    if len(pins) != 1:
        raise UnetlibError(f"{pyproject} must pin torch exactly once (torch==X), found {pins}")
    return pins[0]


def index_answers(url: str, seconds: float = PROBE_SECONDS) -> bool:
    """True if the wheel index at ``url`` lists torch within ``seconds`` (name resolution included)."""
    answer: list[bool] = []

    def probe() -> None:
        try:
            request = urllib.request.Request(f"{url.rstrip('/')}/torch/", method="HEAD",
                                             headers={"User-Agent": "unetlib-setup"})
            with urllib.request.urlopen(request, timeout=seconds) as response:
                answer.append(response.status == 200)
        except Exception:  # offline, refused, a proxy's error page, an unknown host: not reachable
            answer.append(False)

    thread = threading.Thread(target=probe, name="unetlib-torch-index", daemon=True)
    thread.start()
    thread.join(seconds)  # a name lookup can outlast the socket timeout: the thread is left behind
    return bool(answer and answer[0])


def pip_arguments(build: str, system: str | None = None, probe=index_answers,
                  pin: str | None = None) -> tuple[list[str], str | None]:
    """(the ``pip install`` arguments for ``build``, a note for the user or None)."""
    system = system or platform.system()
    pin = pin or pinned_torch()
    if build.startswith(("https://", "http://")):
        return ["--extra-index-url", build, pin], None
    if build not in _CHOICES:
        raise UnetlibError(f"TORCH={build!r} is not cpu, cuda or a wheel index URL (https://...): "
                           "e.g. make setup TORCH=cpu")
    if system != "Linux":  # the public index's build is the CPU one here
        note = (f"note: the public package index's PyTorch for {system} is not a CUDA build; for one, give a CUDA "
                "wheel index, e.g. make setup TORCH=https://download.pytorch.org/whl/cu126") if build == "cuda" else None
        return [pin], note
    if build == "cuda":
        return [pin], None
    if probe(CPU_INDEX):
        return ["--extra-index-url", CPU_INDEX, pin], None
    return [pin], (f"note: PyTorch's CPU wheel index {CPU_INDEX} did not answer (waited up to {PROBE_SECONDS:g} s); "
                   f"installing {pin} from pip's configured index, which on Linux may be the multi-GB CUDA build "
                   "(a local wheel or mirror may hold the CPU build)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        arguments, note = pip_arguments(argv[0] if argv else "cpu")
    except UnetlibError as exc:
        print(f"torch_build: error: {exc}", file=sys.stderr)
        return 2
    if note:
        print(note, file=sys.stderr)
    print(" ".join(arguments))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
