"""The paper's experiments as library calls: one ISBI fold, one CTC direction, and whole experiments.

Every official test label of the paper's datasets is hidden, so the kit
evaluates on held-out training data:

- ISBI 2012: k-fold over contiguous blocks of the 30 consecutive sections
  (contiguous, so that a test slice's neighbours are not in the training set);
- Cell Tracking Challenge: train on the annotated frames of one sequence,
  segment and score the annotated frames of the other, both ways.

One *unit* (:func:`isbi_fold`, :func:`ctc_direction`) is

    load data -> targets and Eq. 2 weight maps -> train -> overlap-tile
    prediction -> post-processing -> the challenge's metric -> official files

and returns a typed, JSON-safe result carrying its own seed and recipe. Units
read their data themselves and write only below ``out_dir``, so they run
anywhere: in a notebook, serially, or as tasks of a cluster
(:mod:`unetlib.fanout`). :func:`run_isbi2012` and :func:`run_ctc` run the
units of an experiment and merge them into one :class:`~unetlib.results.ExperimentResult`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetlib import data as datasets
from unetlib.atomic import atomic_open, write_tiff
from unetlib.checkpoint import load_model, update_metadata
from unetlib.data import DIRECTIONS
from unetlib.errors import UnetlibError
from unetlib.fanout import Runner, serial
from unetlib.geometry import border_band
from unetlib.manifest import pixel_digest
from unetlib.metrics import ctc_seg, isbi2012_errors, write_ctc_results
from unetlib.model import BORDER
from unetlib.postprocess import TUNE_SPLITS, tune_postprocessing
from unetlib.recipe import Recipe
from unetlib.results import ExperimentResult
from unetlib.segment import Segmenter
from unetlib.train import CHECKPOINT_NAME, TrainResult
from unetlib.trainset import UnitData, train_network, training_data, unit_data
from unetlib.weights import instances_from_binary, training_target

__all__ = [
    "Split", "contiguous_folds", "select_folds", "border_errors", "held_out_loss",
    "FoldResult", "DirectionResult", "isbi_fold", "ctc_direction",
    "BLOCKS", "GAP", "BlockResult", "block_split", "block_unit", "block_index", "ctc_block",
    "run_isbi2012", "run_ctc", "check_direction", "unit_checkpoint_dir",
]

_CURVE_POINTS = 200  # loss-curve points kept in result files
FINAL_LOSS_STEPS = 100  # a run's final loss: the mean of its last this many steps


# --------------------------------------------------------------------------- #
# Splits
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Split:
    """One fold: its index, training and test items (slice indices)."""

    fold: int
    train: tuple[int, ...]
    test: tuple[int, ...]


def contiguous_folds(n: int, k: int) -> list[Split]:
    """Split ``range(n)`` into ``k`` contiguous test blocks (sizes differ by at most one)."""
    if not 2 <= k <= n:
        raise UnetlibError(f"the number of folds must be between 2 and {n}, got {k}")
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    splits = []
    for i in range(k):
        test = tuple(range(bounds[i], bounds[i + 1]))
        splits.append(Split(i, tuple(j for j in range(n) if j not in test), test))
    return splits


def select_folds(splits: list[Split], run_folds: Sequence[int] | None) -> list[Split]:
    """The folds to run: all for ``None``, else those whose index is listed."""
    if run_folds is None:
        return splits
    bad = [i for i in run_folds if isinstance(i, bool) or not (isinstance(i, int) and 0 <= i < len(splits))]
    if bad or not run_folds or len(set(run_folds)) != len(run_folds):
        raise UnetlibError(f"RUN_FOLDS {list(run_folds)} must list distinct fold indices 0..{len(splits) - 1}")
    return [splits[i] for i in run_folds]


# --------------------------------------------------------------------------- #
# Steps shared by every unit
# --------------------------------------------------------------------------- #
def final_loss(history: list) -> float:
    """The mean loss of the last :data:`FINAL_LOSS_STEPS` steps of a training history (NaN when empty)."""
    tail = [h[1] for h in history[-FINAL_LOSS_STEPS:]]
    return float(np.mean(tail)) if tail else float("nan")


def _curve(history: list) -> list[list[float]]:
    """At most ``_CURVE_POINTS`` (iteration, loss, seconds) rows of a training history."""
    step = max(1, len(history) // _CURVE_POINTS)
    rows = [list(h) for h in history[::step]]
    if history and rows[-1][0] != history[-1][0]:
        rows.append(list(history[-1]))
    return rows


# --------------------------------------------------------------------------- #
# ISBI 2012: one fold
# --------------------------------------------------------------------------- #
@dataclass
class FoldResult:
    """One ISBI 2012 fold: held-out errors, with the seed and recipe it was trained with."""

    fold: int
    seed: int
    train_slices: list[int]
    test_slices: list[int]
    warping_error: float
    rand_error: float
    pixel_error: float
    border_error: float  # misclassified pixels (P(cell) > 0.5 against the labels) within 92 px of the border
    interior_error: float  # the same rate in the rest of the image
    held_out_loss: float  # the training loss (Eq. 1 with the recipe's Eq. 2 weights) on the held-out sections
    metrics: dict
    final_loss: float
    loss_curve: list
    seconds: dict
    recipe: dict
    checkpoint: str
    example: str
    train_threads: list = dataclasses.field(default_factory=list)  # TrainResult.threads ([]: not recorded)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def isbi_fold(recipe: Recipe, split: Split, out_dir: str | Path, *, root=None, progress: bool = True,
              resume: bool = True) -> FoldResult:
    """Train on ``split.train`` sections, segment ``split.test``, score them with the 2015 leaderboard's errors.

    The fold trains with seed ``recipe.train.seed + split.fold``. Writes the
    checkpoint to ``out_dir/checkpoints/isbi2012_foldK/`` and the first
    held-out section (image, ground truth, P(cell)) to ``out_dir/isbi2012_foldK_example.npz``.
    """
    out_dir, seconds = Path(out_dir), {}
    recipe = recipe.seeded(recipe.train.seed + split.fold)
    isbi = datasets.load_isbi2012(root)
    unit = unit_data(recipe, sections=split.train, root=root)
    train_ids, test_ids = unit.trained_on["sections"], list(split.test)
    checkpoint = unit_checkpoint_dir(out_dir, recipe.dataset, split.fold)
    run = _trained(recipe, unit, out_dir, checkpoint, progress, resume, seconds)
    start = time.perf_counter()
    prob = Segmenter(run.model, recipe).p_cell(isbi.train_images[test_ids])
    seconds["predict"] = time.perf_counter() - start
    start = time.perf_counter()
    truth = isbi.train_labels[test_ids]
    scores = isbi2012_errors(prob, truth)
    border = border_errors(prob, truth > 0)
    held_out = held_out_loss(prob, truth, recipe)
    seconds["metrics"] = time.perf_counter() - start
    example = out_dir / f"isbi2012_fold{split.fold}_example.npz"
    with atomic_open(example, suffix=".npz") as f:
        np.savez_compressed(f, image=isbi.train_images[test_ids[0]], gt=isbi.train_labels[test_ids[0]],
                            prob=prob[0].astype(np.float32))
    return FoldResult(
        fold=split.fold, seed=recipe.train.seed, train_slices=train_ids, test_slices=test_ids,
        warping_error=float(scores.warping_error), rand_error=float(scores.rand_error),
        pixel_error=float(scores.pixel_error), **border, held_out_loss=held_out,
        metrics=_without_per_slice(scores.to_dict()),
        final_loss=final_loss(run.history), loss_curve=_curve(run.history),
        seconds={k: round(v, 2) for k, v in seconds.items()}, recipe=recipe.to_dict(),
        checkpoint=_relative(checkpoint / CHECKPOINT_NAME, out_dir),
        example=_relative(example, out_dir), train_threads=list(run.threads),
    )


def border_errors(prob: np.ndarray, cells: np.ndarray, width: int = BORDER) -> dict[str, float]:
    """The misclassification rate of ``P(cell) > 0.5`` against the boolean ``cells`` within ``width`` pixels of
    the image border (where the tiles' context is extrapolated: ``border_error``) and in the rest
    (``interior_error``), over a stack of images. Not the ISBI pixel error (1 - the best F-score)."""
    band = border_band(cells.shape[-2:], width)
    wrong = (prob > 0.5) != cells
    return {"border_error": float(wrong[..., band].mean()), "interior_error": float(wrong[..., ~band].mean())}


def held_out_loss(prob: np.ndarray, labels: np.ndarray, recipe: Recipe) -> float:
    """The training loss on held-out images: the weighted cross entropy of Eq. 1 with the recipe's Eq. 2
    weight maps (``w0``, ``sigma``, ``w_c``) of their labels (ISBI: cell pixels > 0), mean over pixels.
    Rising while the training loss falls: the network overfits its training images."""
    total = 0.0
    for p, label in zip(prob, labels):
        target, weight = training_target(instances_from_binary(label), w0=recipe.w0, sigma=recipe.sigma,
                                         class_weights=recipe.class_weights)
        p_true = np.clip(np.where(target == 1, p, 1.0 - p), 1e-7, 1.0)
        total += float(np.mean(weight * -np.log(p_true)))
    return total / len(prob)


def _without_per_slice(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "per_slice"}


def _relative(path: Path, base: Path) -> str:
    return Path(path).relative_to(base).as_posix()


# --------------------------------------------------------------------------- #
# Cell Tracking Challenge: one direction
# --------------------------------------------------------------------------- #
@dataclass
class DirectionResult:
    """One CTC direction (train on one sequence, test on the other): SEG, seed and recipe."""

    direction: str
    train_sequence: str
    test_sequence: str
    seed: int
    train_frames: list[int]
    test_frames: list[int]
    SEG: float
    foreground_iou: float
    objects: int
    matched_objects: int
    merges: int  # predicted objects covering more than half of two or more annotated cells
    threshold: float
    min_size: int
    split_threshold: float | None  # cores between which components were split (None: not split)
    postprocessing: str
    by_size: dict  # test cells within and beyond the largest training cell (SEGResult.by_size)
    final_loss: float
    loss_curve: list
    seconds: dict
    recipe: dict
    checkpoint: str
    res_dir: str
    example: str
    train_threads: list = dataclasses.field(default_factory=list)  # TrainResult.threads ([]: not recorded)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ctc_direction(recipe: Recipe, direction: str, out_dir: str | Path, *, root=None,
                  progress: bool = True, resume: bool = True) -> DirectionResult:
    """Train on the annotated frames of one sequence, segment and score the other's (``"01->02"``).

    Trains with seed ``recipe.train.seed + int(train sequence)``; writes the
    checkpoint to ``out_dir/checkpoints/DATASET_trainSS/``, the instance masks
    in the challenge's layout to ``out_dir/DATASET/TT_RES/maskNNN.tif`` and the
    first test frame (image, ground truth, instances, P(cell)) to
    ``out_dir/DATASET_TT_example.npz``.
    """
    train_seq, test_seq = check_direction(direction)
    out_dir, seconds, name = Path(out_dir), {}, recipe.dataset
    recipe = recipe.seeded(recipe.train.seed + int(train_seq))
    target = datasets.load_ctc(name, test_seq, root, tra=False)
    test_frames = sorted(target.seg)
    unit = unit_data(recipe, sequence=train_seq, root=root)
    frames = unit.trained_on["frames"]
    checkpoint = unit_checkpoint_dir(out_dir, name, direction)
    run = _trained(recipe, unit, out_dir, checkpoint, progress, resume, seconds)
    start = time.perf_counter()
    segmenter, how = _postprocessing(Segmenter(run.model, recipe), unit, run)
    recipe = segmenter.recipe
    threshold, min_size = recipe.threshold, recipe.min_size
    seconds["tune"] = time.perf_counter() - start
    start = time.perf_counter()
    prob, found = segmenter.segment(target.frames[test_frames])
    masks = {t: found[i] for i, t in enumerate(test_frames)}
    seconds["predict"] = time.perf_counter() - start
    seg = ctc_seg({t: target.seg[t] for t in test_frames}, masks)
    largest_training_cell = int(datasets.cell_areas(unit.masks).max(initial=0))
    res_dir = out_dir / name / f"{test_seq}_RES"
    write_ctc_results(masks, res_dir)
    example = out_dir / f"{name}_{test_seq}_example.npz"
    first = test_frames[0]
    with atomic_open(example, suffix=".npz") as f:
        np.savez_compressed(f, image=target.frames[first], gt=target.seg[first], pred=masks[first],
                            prob=prob[0].astype(np.float32))
    return DirectionResult(
        direction=direction, train_sequence=train_seq, test_sequence=test_seq, seed=recipe.train.seed,
        train_frames=frames, test_frames=test_frames, SEG=float(seg.seg), foreground_iou=float(seg.foreground_iou),
        objects=int(seg.n_reference), matched_objects=int(seg.n_matched), merges=seg.merges(),
        threshold=float(threshold),
        min_size=int(min_size), split_threshold=recipe.split_threshold, postprocessing=how,
        by_size=seg.by_size(largest_training_cell),
        final_loss=final_loss(run.history), loss_curve=_curve(run.history),
        seconds={k: round(v, 2) for k, v in seconds.items()}, recipe=recipe.to_dict(),
        checkpoint=_relative(checkpoint / CHECKPOINT_NAME, out_dir), res_dir=_relative(res_dir, out_dir),
        example=_relative(example, out_dir), train_threads=list(run.threads),
    )


def _trained(recipe: Recipe, unit: UnitData, out_dir: Path, checkpoint: Path, progress: bool, resume: bool,
             seconds: dict) -> TrainResult:
    """The unit's network: targets and weight maps of its training images (cached below ``out_dir``), then
    trained, resumed or reused from ``checkpoint``; the seconds of both go into ``seconds``."""
    start = time.perf_counter()
    data = training_data(recipe, unit.images, unit.masks, unit.markers, cache_dir=out_dir / "cache")
    seconds["weight_maps"] = time.perf_counter() - start
    run = train_network(recipe, data, checkpoint, progress, resume, trained_on=unit.trained_on)
    seconds["train"] = run.history[-1][2] if run.history else 0.0
    return run


def _postprocessing(segmenter: Segmenter, unit: UnitData, run, trained_on: str = "sequence") -> tuple[Segmenter, str]:
    """The segmenter with the recipe's post-processing: tuned on the unit's *training* images when the recipe
    says so (never on the scored ones; the tuned values are stored in the checkpoint, so that `unetlib predict
    --instances` cuts the same instances), else as the recipe fixes it; and how it was chosen."""
    recipe = segmenter.recipe
    if not recipe.tune_postprocessing:
        return segmenter, "fixed by the recipe"
    train_prob = segmenter.p_cell(np.stack(unit.images))
    threshold, min_size, split = tune_postprocessing(train_prob, unit.masks, TUNE_SPLITS if recipe.tune_split else (None,))
    segmenter = segmenter.with_recipe(threshold=threshold, min_size=min_size, split_threshold=split,
                                      tune_postprocessing=True)
    if run.checkpoint is not None:
        update_metadata(run.checkpoint, recipe=segmenter.recipe.to_dict())
    return segmenter, f"tuned on the training {trained_on}"


# --------------------------------------------------------------------------- #
# Cell Tracking Challenge: both sequences, one held-out block of each
# --------------------------------------------------------------------------- #
#: The both-sequence protocol: the annotated frames of each sequence in this many blocks of consecutive frames,
#: and training frames kept at least this many frames (in time) away from the held-out block.
BLOCKS, GAP = 3, 5


def block_unit(block: int) -> str:
    """The unit name of held-out block ``block`` (``"block0"``...)."""
    return f"block{block}"


def block_index(unit: str, blocks: int = BLOCKS) -> int:
    """The block of a unit name ``"blockK"``; anything else is a one-line error."""
    text = str(unit)
    if not (text.startswith("block") and text[5:].isdigit() and int(text[5:]) < blocks):
        raise UnetlibError(f"unit {unit!r} is not a held-out block (block0..block{blocks - 1})")
    return int(text[5:])


def block_split(annotated: dict[str, Sequence[int]], block: int, blocks: int = BLOCKS,
                gap: int = GAP) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """``(train, held_out)`` frames per sequence for held-out ``block``: each sequence's annotated frames
    (sequence -> frame indices) in ``blocks`` blocks of consecutive frames (sizes differ by at most one);
    the block is held out of every sequence, and training keeps only the frames more than ``gap`` frames
    (in time) from every held-out frame, so that no near-copy of a scored frame is trained on."""
    if not 0 <= block < blocks:
        raise UnetlibError(f"block {block} does not exist: there are {blocks} (0..{blocks - 1})")
    train, held = {}, {}
    for seq, frames in sorted(annotated.items()):
        frames = sorted(frames)
        if len(frames) < blocks:
            raise UnetlibError(f"sequence {seq} has {len(frames)} annotated frames, fewer than {blocks} blocks")
        bounds = np.linspace(0, len(frames), blocks + 1).round().astype(int)
        held[seq] = frames[bounds[block]:bounds[block + 1]]
        train[seq] = [t for t in frames if all(abs(t - h) > gap for h in held[seq])]
    return train, held


@dataclass
class BlockResult:
    """One held-out block of the both-sequence protocol: SEG over the block's frames of both sequences."""

    block: str
    seed: int
    train_frames: dict
    test_frames: dict
    SEG: float
    SEG_by_sequence: dict
    foreground_iou: float
    objects: int
    matched_objects: int
    merges: int
    threshold: float
    min_size: int
    split_threshold: float | None
    postprocessing: str
    final_loss: float
    loss_curve: list
    seconds: dict
    recipe: dict
    checkpoint: str
    train_threads: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ctc_block(recipe: Recipe, unit: str, out_dir: str | Path, *, root=None, progress: bool = True,
              resume: bool = True, blocks: int = BLOCKS, gap: int = GAP) -> BlockResult:
    """Train on the annotated frames of *both* sequences but one held-out block of each (and the frames within
    ``gap`` of it), as the paper trained on both; segment and score the held-out frames of both sequences.

    Trains with seed ``recipe.train.seed + K`` for ``unit`` ``"blockK"``; writes the checkpoint to
    ``out_dir/checkpoints/DATASET_blockK/``. SEG pools every annotated cell of the held-out frames.
    """
    block = block_index(unit, blocks)
    out_dir, seconds, name = Path(out_dir), {}, recipe.dataset
    recipe = recipe.seeded(recipe.train.seed + block)
    sequences = {seq: datasets.load_ctc(name, seq, root, tra=False) for seq in datasets.SEQUENCES}
    train, held = block_split({seq: list(q.seg) for seq, q in sequences.items()}, block, blocks, gap)
    data_unit = unit_data(recipe, frames=train, root=root)
    checkpoint = unit_checkpoint_dir(out_dir, name, unit)
    run = _trained(recipe, data_unit, out_dir, checkpoint, progress, resume, seconds)
    start = time.perf_counter()
    segmenter, how = _postprocessing(Segmenter(run.model, recipe), data_unit, run, "frames")
    recipe = segmenter.recipe
    seconds["tune"] = time.perf_counter() - start
    start = time.perf_counter()
    truth, found, by_sequence = {}, {}, {}
    for seq, frames in held.items():
        _, masks = segmenter.segment(sequences[seq].frames[frames])
        gt = {t: sequences[seq].seg[t] for t in frames}
        by_sequence[seq] = float(ctc_seg(gt, {t: masks[i] for i, t in enumerate(frames)}).seg)
        truth.update({int(seq) * 1000 + t: gt[t] for t in frames})  # one key per frame of either sequence
        found.update({int(seq) * 1000 + t: masks[i] for i, t in enumerate(frames)})
    seconds["predict"] = time.perf_counter() - start
    seg = ctc_seg(truth, found)
    return BlockResult(
        block=unit, seed=recipe.train.seed, train_frames=train, test_frames=held, SEG=float(seg.seg),
        SEG_by_sequence=by_sequence, foreground_iou=float(seg.foreground_iou), objects=int(seg.n_reference),
        matched_objects=int(seg.n_matched), merges=seg.merges(), threshold=float(recipe.threshold),
        min_size=int(recipe.min_size), split_threshold=recipe.split_threshold, postprocessing=how,
        final_loss=final_loss(run.history), loss_curve=_curve(run.history),
        seconds={k: round(v, 2) for k, v in seconds.items()}, recipe=recipe.to_dict(),
        checkpoint=_relative(checkpoint / CHECKPOINT_NAME, out_dir), train_threads=list(run.threads),
    )


def unit_checkpoint_dir(out_dir: str | Path, dataset: str, unit) -> Path:
    """Where a unit keeps its network: ``OUT/checkpoints/isbi2012_foldK``, ``OUT/checkpoints/DATASET_trainSS`` (a
    direction) or ``OUT/checkpoints/DATASET_blockK`` (a held-out block of both sequences)."""
    if dataset == "isbi2012":
        return Path(out_dir) / "checkpoints" / f"isbi2012_fold{unit}"
    if str(unit).startswith("block"):
        return Path(out_dir) / "checkpoints" / f"{dataset}_{unit}"
    return Path(out_dir) / "checkpoints" / f"{dataset}_train{check_direction(unit)[0]}"


def check_direction(direction: str) -> tuple[str, str]:
    if direction not in DIRECTIONS:
        raise UnetlibError(f"direction {direction!r} is not one of {DIRECTIONS} (train->test sequence)")
    train_seq, test_seq = direction.split("->")
    return train_seq, test_seq


# --------------------------------------------------------------------------- #
# Whole experiments
# --------------------------------------------------------------------------- #
def run_isbi2012(recipe: Recipe, out_dir: str | Path, *, folds: int = 5, run_folds: Sequence[int] | None = None,
                 submission_slices: int = 0, root=None, runner: Runner | None = None,
                 progress: bool = True, resume: bool = True) -> ExperimentResult:
    """ISBI 2012 k-fold over contiguous blocks: every selected fold (:func:`isbi_fold`), then the mean.

    With ``submission_slices > 0`` the first fold's network also segments that many
    sections of the test volume into ``out_dir/isbi2012_test_submission.tif``
    (the challenge's format: float32 P(cell)); the test labels were never published.
    """
    if recipe.dataset != "isbi2012":
        raise UnetlibError(f"run_isbi2012 needs an isbi2012 recipe, got {recipe.dataset!r}")
    if not 0 <= submission_slices <= 30:
        raise UnetlibError(f"submission_slices must lie in 0..30, got {submission_slices}")
    out_dir = Path(out_dir)
    isbi = datasets.load_isbi2012(root)
    splits = select_folds(contiguous_folds(len(isbi.train_images), folds), run_folds)
    start = time.perf_counter()
    calls = [dict(recipe=recipe, split=s, out_dir=out_dir, root=root, progress=progress, resume=resume)
             for s in splits]
    runs = (runner or serial)(isbi_fold, calls)
    files = {}
    if submission_slices:
        files["submission"] = _isbi_submission(runs[0], recipe, isbi, out_dir, submission_slices)
    return ExperimentResult(
        experiment="isbi2012_em", dataset="isbi2012", profile=recipe.profile, recipe=recipe.to_dict(),
        protocol=(f"{folds}-fold cross-validation over contiguous blocks of the 30 training sections; folds run: "
                  f"{[r.fold for r in runs]}; held-out training data, not the hidden challenge test set"),
        runs=[r.to_dict() for r in runs],
        mean={k: float(np.mean([getattr(r, k) for r in runs])) for k in ("warping_error", "rand_error", "pixel_error")},
        data={"train_volume": pixel_digest(isbi.train_images), "train_labels": pixel_digest(isbi.train_labels),
              "test_volume": pixel_digest(isbi.test_images)},
        timings={"wall": round(time.perf_counter() - start, 1)},
        files=files,
    )


def _isbi_submission(fold: FoldResult, recipe: Recipe, isbi, out_dir: Path, slices: int) -> str:
    prob = Segmenter(load_model(out_dir / fold.checkpoint), recipe).p_cell(isbi.test_images[:slices])
    path = out_dir / "isbi2012_test_submission.tif"
    write_tiff(path, prob.astype(np.float32))
    return _relative(path, out_dir)


def run_ctc(recipe: Recipe, out_dir: str | Path, *, directions: Sequence[str] = DIRECTIONS, root=None,
            runner: Runner | None = None, progress: bool = True, resume: bool = True) -> ExperimentResult:
    """Both directions (train on one sequence, test on the other) of a CTC dataset, then the mean SEG."""
    if recipe.dataset not in datasets.CTC_DATASETS:
        raise UnetlibError(f"run_ctc needs a Cell Tracking Challenge recipe, got {recipe.dataset!r}")
    directions = list(directions)
    if not directions or len(set(directions)) != len(directions):
        raise UnetlibError(f"DIRECTIONS must list distinct directions of {DIRECTIONS}, got {directions}")
    for direction in directions:
        check_direction(direction)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    calls = [dict(recipe=recipe, direction=d, out_dir=out_dir, root=root, progress=progress, resume=resume)
             for d in directions]
    runs = (runner or serial)(ctc_direction, calls)
    data = {}
    for seq in sorted({r.train_sequence for r in runs} | {r.test_sequence for r in runs}):
        q = datasets.load_ctc(recipe.dataset, seq, root, tra=False)
        data[f"{seq}_frames"] = pixel_digest(q.frames)
        data[f"{seq}_seg"] = pixel_digest(np.stack([q.seg[t] for t in sorted(q.seg)]))
    return ExperimentResult(
        experiment=recipe.dataset, dataset=recipe.dataset, profile=recipe.profile, recipe=recipe.to_dict(),
        protocol=("train on one sequence's annotated frames, test on the other's; directions run: "
                  f"{directions}; held-out training data, not the hidden challenge test set"),
        runs=[r.to_dict() for r in runs],
        mean={"SEG": float(np.mean([r.SEG for r in runs]))},
        data=data,
        timings={"wall": round(time.perf_counter() - start, 1)},
        files={},
    )
