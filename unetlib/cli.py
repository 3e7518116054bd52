"""The ``unetlib`` command line.

Each subcommand lives in the module that owns its concept and registers itself
through a ``register_cli(subparsers)`` function; modules are imported lazily so
that ``unetlib data verify`` does not pay for importing PyTorch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS = {
    "data": ("unetlib.data_cli", "verify, fetch and describe the datasets"),
    "train": ("unetlib.train_cli", "train a U-Net on one of the paper's datasets"),
    "predict": ("unetlib.predict_cli", "overlap-tile prediction of an image or TIFF stack"),
    "evaluate": ("unetlib.metrics.cli", "the challenges' own metrics (ISBI 2012, CTC SEG)"),
}


from unetlib.errors import UnetlibError


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UnetlibError, FileNotFoundError, ValueError) as exc:
        print(f"unetlib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetlib {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
