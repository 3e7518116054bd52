"""``unetlib train DATASET``: train one network with the same recipe as the notebooks' profile.

The recipe is :func:`unetlib.recipe.preset` of the dataset under ``--profile``
(``cpu`` by default; ``gpu`` / ``paper`` on a CUDA machine), changed only by
the options given; it is saved in the checkpoint, so ``unetlib predict`` uses
the same input scaling and test-time averaging.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from unetlib import data as datasets
from unetlib.atomic import folder_lock
from unetlib.checkpoint import load_checkpoint
from unetlib.data_cli import add_data_root
from unetlib.errors import UnetlibError
from unetlib.recipe import PROFILES, preset
from unetlib.train import CHECKPOINT_NAME
from unetlib.userfiles import check_output_folder

__all__ = ["register_cli", "parse_slices"]


def register_cli(subparsers) -> None:
    """Add ``unetlib train DATASET ...``."""
    p = subparsers.add_parser(
        "train", help="train a U-Net on one of the paper's datasets",
        description="Train a U-Net with a profile's recipe (paper Section 3) and write OUT/last.pt; "
        "an existing OUT/last.pt is resumed unless --no-resume. Ctrl-C or SIGTERM save and stop.",
    )
    p.add_argument("dataset", choices=datasets.DATASETS, metavar="DATASET",
                   help=f"one of {', '.join(datasets.DATASETS)}")
    p.add_argument("--profile", choices=PROFILES, default="cpu", help="recipe preset (cpu)")
    p.add_argument("--sequence", default=None, choices=datasets.SEQUENCES, help="CTC sequence to train on (01)")
    p.add_argument("--slices", default=None, help="ISBI 2012 slices, e.g. 0-19 or 0-9,20-29 (all 30)")
    p.add_argument("--iterations", type=int, help="optimiser steps (the profile's)")
    p.add_argument("--width", type=int, help="first-level channels (the profile's)")
    p.add_argument("--tile", type=int, help="input tile edge, 16k+60 (the profile's)")
    p.add_argument("--lr", type=float, help="peak learning rate (the profile's)")
    p.add_argument("--seed", type=int, help="random seed, an integer >= 0 (the profile's)")
    p.add_argument("--out", default=None, help="output folder for last.pt (runs/train-DATASET)")
    p.add_argument("--checkpoint-every", type=int, help="iterations between checkpoints (the profile's)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/last.pt exists")
    add_data_root(p, "--data")
    p.set_defaults(func=_cli)


def parse_slices(text: str, count: int) -> list[int]:
    """``"0-19"`` or ``"0-9,20-29"`` (inclusive ranges) -> sorted slice indices below ``count``."""
    chosen: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise UnetlibError(f"--slices {text!r}: write ranges like 0-19 or 0-9,20-29") from None
        if not 0 <= a <= b < count:
            raise UnetlibError(f"--slices {text!r}: slices must lie in 0-{count - 1}, in increasing order")
        chosen.update(range(a, b + 1))
    return sorted(chosen)


_OPTIONS = ("iterations", "width", "tile", "lr", "seed", "checkpoint_every")  # TrainConfig fields set by options


def _recipe(args):
    recipe = preset(args.dataset, args.profile)
    if args.iterations is not None and args.iterations < 1:  # TrainConfig allows 0; a run of 0 steps is a mistake
        raise UnetlibError(f"--iterations must be at least 1, got {args.iterations} (0 would only write an "
                           f"untrained network; the {args.profile} profile trains {recipe.train.iterations})")
    given = {name: getattr(args, name) for name in _OPTIONS if getattr(args, name) is not None}
    try:
        recipe = recipe.replace(**{f"train.{name}": value for name, value in given.items()})
    except UnetlibError as exc:  # name the option, not the dataclass field
        message = str(exc)
        for name in given:
            message = message.replace(f"TrainConfig.{name}", f"--{name.replace('_', '-')}")
        raise UnetlibError(message) from None
    _check_width_fits(recipe.train.width)
    return recipe


#: The paper's network (width 64) has 31,030,658 weights; their number grows with the square of the width.
_PAPER_WEIGHTS, _PAPER_WIDTH = 31_030_658, 64


def _check_width_fits(width: int) -> None:
    """Refuse a width whose weights, gradients and Adam moments alone exceed the free memory (before any work)."""
    needed = 4 * 4 * _PAPER_WEIGHTS * (width / _PAPER_WIDTH) ** 2  # float32: weights, gradient, two moments
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if needed > free:
        raise UnetlibError(f"--width {width} needs about {needed / 2**30:,.0f} GiB for its weights and optimiser "
                           f"state alone, more than the {free / 2**30:,.0f} GiB free: use a smaller --width "
                           f"(the paper: 64)")


def _select(args, recipe):
    """The training images of the chosen dataset (read and checked, nothing written)."""
    from unetlib.trainset import unit_data  # here: see _cli

    if args.dataset == "isbi2012":
        if args.sequence is not None:
            raise UnetlibError("--sequence applies to the Cell Tracking Challenge datasets; isbi2012 takes --slices")
        count = datasets.ISBI_SHAPE[0]  # the sections load_isbi2012 accepts: --slices is checked before reading
        sections = parse_slices(args.slices, count) if args.slices is not None else list(range(count))
        return unit_data(recipe, sections=sections, root=args.data_root)
    if args.slices is not None:
        raise UnetlibError("--slices applies to isbi2012 only; CTC datasets train on the annotated SEG frames")
    return unit_data(recipe, sequence=args.sequence or "01", root=args.data_root)


def _cli(args: argparse.Namespace) -> int:
    # here, not at the top: the training set brings numba and the weight maps (about 1 s), which
    # `unetlib train --help` and a refused option do not need
    from unetlib.trainset import check_resumable, train_network, training_data

    out = Path(args.out or f"runs/train-{args.dataset}")
    recipe = _recipe(args)  # every option is checked before anything is read or written
    check_output_folder("--out", out)
    last = out / CHECKPOINT_NAME
    if last.is_dir():
        raise UnetlibError(f"{last} is a folder; move it away or choose another --out")
    if last.exists() and not args.no_resume:
        check_resumable(last, recipe)  # before the data are even read
    unit = _select(args, recipe)
    with folder_lock(out, "training"):  # two runs into one folder would overwrite each other's network
        try:
            data = training_data(recipe, unit.images, unit.masks, unit.markers, cache_dir=out / "cache")
            result = train_network(recipe, data, checkpoint_dir=out, resume=not args.no_resume,
                                   trained_on=unit.trained_on)
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: the CLI prints one line with this note
            stop.note = _saved_note(out / CHECKPOINT_NAME)
            raise
    last = result.history[-1] if result.history else None
    summary = f"iteration {last[0]}, loss {last[1]:.4f}" if last else "no iterations run"
    print(f"trained {args.dataset} ({recipe.profile} recipe) on {unit.description} ({summary}); wrote {result.checkpoint}")
    return 0


def _saved_note(path: Path) -> str:
    """What an interrupted run left: the checkpoint and its iteration, and how to resume."""
    if not path.is_file():
        return "no iteration was complete, so no checkpoint was written"
    try:
        iteration = load_checkpoint(path).get("iteration")
    except UnetlibError:
        return f"the checkpoint {path} could not be read back: check it before resuming"
    return f"the checkpoint {path} was saved at iteration {iteration}: run the same command again to resume"
