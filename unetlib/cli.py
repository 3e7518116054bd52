"""The ``unetlib`` command line.

Each subcommand lives in the module that owns its concept and registers itself
through a ``register_cli(subparsers)`` function. The subcommand modules, and the
heavy modules inside their commands, are imported only when used: ``unetlib data
verify`` does not pay for importing PyTorch (2-4 s measured on a 2-core machine),
nor ``unetlib --help`` for numba's metrics.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from contextlib import contextmanager

from unetlib.errors import UnetlibError

# subcommand -> (module, one-line help)
COMMANDS = {
    "data": ("unetlib.data_cli", "verify, fetch and describe the datasets"),
    "train": ("unetlib.train_cli", "train a U-Net on one of the paper's datasets"),
    "predict": ("unetlib.predict_cli", "overlap-tile prediction of an image or TIFF stack"),
    "evaluate": ("unetlib.metrics.cli", "the challenges' own metrics (ISBI 2012, CTC SEG)"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line error (``unetlib train: error: ... (see unetlib train --help)``), exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside a training loop (which defers it itself): stop like Ctrl-C, exit 143."""

    signum = signal.SIGTERM


_OUT_OF_MEMORY = {  # what each command can make smaller
    "train": "out of memory: use a smaller --tile or --width",
    "predict": "out of memory: use a smaller --tile or --batch-size, or a smaller image or stack",
}
_OUT_OF_MEMORY_OTHER = "out of memory: close other programs, or run on a machine with more memory"


def _is_out_of_memory(exc: RuntimeError) -> bool:
    """torch.OutOfMemoryError (GPU), or the CPU allocator's "can't allocate memory"."""
    text = str(exc)
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="unetlib",
        description="The U-Net (Ronneberger et al., MICCAI 2015) reproduction kit.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        if command == name:
            importlib.import_module(module).register_cli(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every user error or fault ends as one line on stderr and a non-zero exit code.

    Exit codes: 0 success, 1 a check that found problems (``data verify``), 2 bad input or a
    missing, corrupt or unwritable file, 130 Ctrl-C (SIGINT), 143 SIGTERM.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    name = f"unetlib {args.command}"
    with _terminate_as_interrupt():
        try:
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
            return code
        except BrokenPipeError:  # `unetlib evaluate ... --json | head`: the reader has what it wanted
            return _closed_pipe()
        except UnetlibError as exc:  # other exceptions are bugs: they keep their traceback
            return _fail(name, str(exc))
        except OSError as exc:  # an input that cannot be read, a folder that cannot be listed, ...
            return _fail(name, _os_error(exc))
        except MemoryError:
            return _fail(name, _OUT_OF_MEMORY.get(args.command, _OUT_OF_MEMORY_OTHER))
        except RuntimeError as exc:  # PyTorch reports exhausted CPU or GPU memory as a RuntimeError
            if not _is_out_of_memory(exc):
                raise
            return _fail(name, _OUT_OF_MEMORY.get(args.command, _OUT_OF_MEMORY_OTHER))
        except KeyboardInterrupt as stop:
            signum = int(getattr(stop, "signum", signal.SIGINT))
            what = signal.Signals(signum).name
            note = getattr(stop, "note", None) or "nothing was left half-written"
            print(f"{name}: interrupted by {what}; {_one_line(note)}", file=sys.stderr)
            return 128 + signum


def _closed_pipe() -> int:
    """End quietly when stdout's reader has gone: no message, and no second error when Python flushes stdout
    at exit (stdout is pointed at the null device). Exit 141, as a command killed by SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (captured in tests)
        pass
    return 141  # 128 + SIGPIPE (13)


def _fail(name: str, message: str) -> int:
    print(f"{name}: error: {_one_line(message)}", file=sys.stderr)
    return 2


def _one_line(message: str) -> str:
    """The message on one line (a library's multi-line text joined), never empty."""
    return " ".join(str(message).split()) or "failed (no message)"


def _os_error(exc: OSError) -> str:
    path = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, PermissionError):
        fix = "check its permissions (or choose another path)"
    elif isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        fix = "check the path"
    elif isinstance(exc, IsADirectoryError):
        fix = "it is a folder: give a file"
    else:
        fix = "check the file and the disk"
    return f"cannot access {path} ({reason}): {fix}"


@contextmanager
def _terminate_as_interrupt():
    """While a command runs, SIGTERM raises like Ctrl-C (a clean stop, temporary files removed, exit 143)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    raise SystemExit(main())
