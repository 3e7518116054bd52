"""The training set of one network, from the dataset's images to what the training loop takes, and its training.

    choose the unit's training images (:func:`unit_data`: ISBI sections or a
    CTC sequence's annotated frames, the recipe's ``train_images`` of them)
    -> scale and resample them, targets and Eq. 2 weight maps, cached
    (:func:`training_data`) -> train, resuming a checkpoint only of the same
    network and training images (:func:`train_network`, :func:`check_resumable`)

The experiments (:mod:`unetlib.protocols`) and ``unetlib train`` both build
their networks here.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from unetlib import data as datasets
from unetlib.atomic import atomic_open
from unetlib.augment import paste_touching
from unetlib.checkpoint import load_checkpoint
from unetlib.errors import UnetlibError
from unetlib.manifest import pixel_digest
from unetlib.preprocess import normalize_image, resample, resampled_shape
from unetlib.recipe import Recipe
from unetlib.train import CHECKPOINT_NAME, TrainResult, train
from unetlib.weights import instances_from_binary, training_target

__all__ = ["UnitData", "unit_data", "TrainingData", "training_data", "with_touching_copies", "training_subset",
           "unannotated_markers", "train_network", "check_resumable"]

_TOUCHING_STREAM = 1731  # the random stream of the pasted-neighbour copies (apart from training's own draws)


@dataclass
class UnitData:
    """The training images of one network: images, instance masks, tracking markers (or None) and what they
    are (``trained_on``: the ISBI sections, or the CTC sequence and frames; stored with the network)."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    markers: list[np.ndarray] | None
    trained_on: dict
    description: str


def unit_data(recipe: Recipe, *, sections: Sequence[int] | None = None, sequence: str | None = None,
              frames: dict[str, Sequence[int]] | None = None, root=None) -> UnitData:
    """The training images of ``recipe``'s dataset: ISBI 2012 ``sections`` (indices of the 30 training
    sections); the annotated frames of one CTC ``sequence`` ("01", "02"), of which the recipe's
    ``train_images`` (evenly spaced; 0: all); or chosen annotated ``frames`` of several sequences
    (sequence -> frame indices, all of them used). Tracking markers are read when the recipe needs them."""
    given = [name for name, v in (("sections", sections), ("sequence", sequence), ("frames", frames)) if v is not None]
    wanted = ("sections",) if recipe.dataset == "isbi2012" else ("sequence", "frames")
    if len(given) != 1 or given[0] not in wanted:
        raise UnetlibError(f"{recipe.dataset} trains on one of: {', '.join(wanted)}; got {given or 'none'}")
    if sections is not None:
        isbi = datasets.load_isbi2012(root)
        ids = training_subset(sections, recipe.train_images)
        masks = [instances_from_binary(isbi.train_labels[i]) for i in ids]
        return UnitData(list(isbi.train_images[ids]), masks, None, {"sections": ids}, f"{len(ids)} sections")
    if sequence is not None:
        ctc = datasets.load_ctc(recipe.dataset, sequence, root, tra=recipe.needs_markers)
        chosen = training_subset(sorted(ctc.seg), recipe.train_images)
        markers = [ctc.tra[t] for t in chosen] if recipe.needs_markers else None
        return UnitData([ctc.frames[t] for t in chosen], [ctc.seg[t] for t in chosen], markers,
                        {"sequence": sequence, "frames": chosen}, f"{len(chosen)} annotated frames of sequence {sequence}")
    images, masks, markers = [], [], [] if recipe.needs_markers else None
    for seq, chosen in sorted(frames.items()):
        ctc = datasets.load_ctc(recipe.dataset, seq, root, tra=recipe.needs_markers)
        missing = sorted(set(chosen) - set(ctc.seg))
        if missing:
            raise UnetlibError(f"frames {missing} of {recipe.dataset} {seq} have no segmentation annotation")
        images += [ctc.frames[t] for t in chosen]
        masks += [ctc.seg[t] for t in chosen]
        if markers is not None:
            markers += [ctc.tra[t] for t in chosen]
    on = {seq: list(chosen) for seq, chosen in sorted(frames.items())}
    what = " and ".join(f"{len(v)} of sequence {seq}" for seq, v in on.items())
    return UnitData(images, masks, markers, {"frames": on}, f"annotated frames: {what}")


@dataclass
class TrainingData:
    """Network inputs (scaled), binary targets and Eq. 2 weight maps, one per training image."""

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    weights: list[np.ndarray]


def training_data(recipe: Recipe, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                  markers: Sequence[np.ndarray] | None = None, cache_dir: str | Path | None = None) -> TrainingData:
    """Scale (and resample) the images; compute each mask's target and weight map once (recipe's w0, sigma, w_c).

    With ``recipe.resample`` other than 1, images (bilinear), masks and
    markers (nearest) are resampled first, and the weight maps are computed on
    what the network sees. With ``recipe.ignore_unannotated`` and tracking
    ``markers`` given, cells that have a marker but no segmentation mask get
    weight 0 around them (25 px at full resolution), instead of being taught as
    background. With ``recipe.touching_copies``, the copies with pasted
    neighbours (:func:`with_touching_copies`) are trained on too. Weight maps
    are cached in ``cache_dir`` (a corrupt cache entry is recomputed).
    """
    if recipe.touching_copies:
        images, masks, markers = with_touching_copies(recipe, images, masks, markers)
    inputs, targets, weights = [], [], []
    margin = max(1, round(25 * recipe.resample))
    for i, (image, mask) in enumerate(zip(images, masks)):
        shape = resampled_shape(np.shape(image), recipe.resample)
        inputs.append(resample(normalize_image(image, recipe.normalize), shape))
        mask = resample(np.asarray(mask).astype(np.int32, copy=False), shape, labels=True)
        target, weight = _cached_target(mask, recipe, cache_dir)
        if recipe.ignore_unannotated and markers is not None:
            near = _unannotated(mask, resample(np.asarray(markers[i]), shape, labels=True), margin)
            weight = np.where(near, np.float32(0), weight)
        targets.append(target)
        weights.append(weight)
    return TrainingData(inputs, targets, weights)


def with_touching_copies(recipe: Recipe, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                         markers: Sequence[np.ndarray] | None = None) -> tuple[list, list, list | None]:
    """The frames followed by ``recipe.touching_copies`` copies of each with cells pasted beside others
    (:func:`unetlib.augment.paste_touching`; never over a cell that has a marker but no mask); drawn from
    the recipe's training seed, so the same recipe makes the same copies."""
    rng = np.random.default_rng([_TOUCHING_STREAM, recipe.train.seed])
    images, masks = list(images), list(masks)
    markers = None if markers is None else list(markers)
    for i in range(len(masks)):
        avoid = None if markers is None else _unannotated(masks[i], markers[i])
        for _ in range(recipe.touching_copies):
            image, mask, _made = paste_touching(images[i], masks[i], rng, avoid=avoid)
            images.append(image)
            masks.append(mask)
            if markers is not None:
                markers.append(markers[i])
    return images, masks, markers


def training_subset(items: Sequence, count: int) -> list:
    """``count`` of ``items``, evenly spaced from the first to the last (all of them for 0 or more than there are)."""
    items = list(items)
    if count <= 0 or count >= len(items):
        return items
    picks = np.unique(np.linspace(0, len(items) - 1, count).round().astype(int))
    return [items[i] for i in picks]


def unannotated_markers(mask: np.ndarray, markers: np.ndarray) -> list[int]:
    """Tracking markers of a frame whose cell has no segmentation mask (a partial annotation)."""
    return [int(m) for m in np.unique(markers) if m and not (mask[markers == m] > 0).any()]


def _unannotated(mask: np.ndarray, markers: np.ndarray, margin: int = 25) -> np.ndarray:
    """Pixels within ``margin`` of a tracking marker whose cell has no mask (and not in any mask)."""
    missing = unannotated_markers(mask, markers)
    if not missing:
        return np.zeros(mask.shape, bool)
    near = ndimage.binary_dilation(np.isin(markers, missing), iterations=margin)
    return near & (mask == 0)


def _cached_target(mask: np.ndarray, recipe: Recipe, cache_dir) -> tuple[np.ndarray, np.ndarray]:
    if cache_dir is None:
        return training_target(mask, w0=recipe.w0, sigma=recipe.sigma, class_weights=recipe.class_weights)
    key = hashlib.sha256(f"{pixel_digest(mask)}|{recipe.w0}|{recipe.sigma}|{recipe.class_weights}".encode())
    path = Path(cache_dir) / f"target-{key.hexdigest()[:24]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                target, weight = stored["target"], stored["weight"]
            if target.shape == mask.shape and weight.shape == mask.shape and np.isfinite(weight).all():
                return target, weight
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # corrupt entry: recompute and replace it
    target, weight = training_target(mask, w0=recipe.w0, sigma=recipe.sigma, class_weights=recipe.class_weights)
    with atomic_open(path, suffix=".npz") as f:
        np.savez(f, target=target, weight=weight)
    return target, weight


def train_network(recipe: Recipe, data: TrainingData, checkpoint_dir: str | Path | None = None,
                  progress: bool = True, resume: bool = True, trained_on: Any = None) -> TrainResult:
    """Train the recipe's network on ``data``; the recipe and ``trained_on`` are saved in the checkpoint.

    An existing ``checkpoint_dir/last.pt`` is resumed (or, when complete, reused)
    unless ``resume=False``, and only if :func:`check_resumable` says it is the
    same network, trained on the same items ``trained_on`` (slice or frame
    indices); it prints one line saying which it does.
    """
    if resume and checkpoint_dir is not None and (Path(checkpoint_dir) / CHECKPOINT_NAME).is_file():
        print(check_resumable(Path(checkpoint_dir) / CHECKPOINT_NAME, recipe, trained_on), flush=True)
    return train(data.inputs, data.targets, data.weights, recipe.train, checkpoint_dir=checkpoint_dir,
                 progress=progress, resume=resume, metadata={"recipe": recipe.to_dict(), "trained_on": trained_on})


def check_resumable(path: Path, recipe: Recipe, trained_on: Any = None) -> str:
    """What resuming the checkpoint ``path`` with ``recipe`` (on ``trained_on``) will do, in one line; a
    one-line error naming the fix when it holds another network (:meth:`Recipe.differs_from`; with a constant
    learning rate it may be continued to more iterations), was trained on other items, is past the
    iterations asked for, or cannot be read."""
    try:
        payload = load_checkpoint(path)
        done = int(payload.get("iteration") or 0)
        metadata = payload.get("metadata") or {}
        stored = Recipe.from_dict(metadata["recipe"]) if metadata.get("recipe") is not None else None
    except (UnetlibError, TypeError, ValueError) as exc:
        raise UnetlibError(f"cannot resume: {exc}; or start afresh (--no-resume / resume=False; the file is then "
                           "replaced at the first checkpoint)") from None
    afresh = "choose another output folder, or start afresh (--no-resume / resume=False)"
    if stored is not None:
        constant = recipe.train.schedule == "constant"
        differ = recipe.differs_from(stored, ignore=("train.iterations",) if constant else ())
        if differ:
            what = ", ".join(f"{name}: {before!r} -> {after!r}" for name, (before, after) in differ.items())
            raise UnetlibError(f"{path} holds another network ({what}): {afresh}")
    # checkpoints written before trained_on had its own entry kept it in their "identity"
    stored_on = metadata.get("trained_on", (metadata.get("identity") or {}).get("trained_on"))
    if trained_on is not None and stored_on is not None and stored_on != trained_on:
        raise UnetlibError(f"{path} was trained on other images (trained_on {stored_on} -> {trained_on}): {afresh}")
    iterations = recipe.train.iterations
    if done > iterations:
        raise UnetlibError(f"{path} already holds {done} iterations, more than the {iterations} asked for: ask for "
                           f"at least as many, or {afresh}")
    made = f"{recipe.profile} recipe of {recipe.dataset}"
    if done == iterations:
        return f"reusing the trained network {path} ({done} iterations, {made})"
    return f"resuming {path} at iteration {done} of {iterations} ({made})"
