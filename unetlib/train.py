"""The training loop of the paper (Section 3): SGD, one tile per step, momentum 0.99.

Each iteration

1. draws an image and a random, augmented tile from the generator
   ``np.random.default_rng([seed, iteration])`` (so the tile of iteration ``i``
   depends only on ``seed`` and ``i``, and a resumed run sees the same tiles);
2. runs the network (channels_last, autocast where it is fast:
   :mod:`unetlib.runtime`), with dropout seeded from ``(seed, iteration)``;
3. applies the pixel-wise softmax and the cross entropy weighted by the
   pre-computed weight map w(x) (paper Eq. 1, with the minus sign);
4. takes one SGD step with momentum 0.99.

Tiles are prepared in a background thread while the step runs; a CPU run
resumed from a checkpoint ends with weights bit-identical to an uninterrupted
run with the same seed.

Choices where the paper is silent (recorded in every checkpoint through
:meth:`TrainConfig.to_dict`):

- loss normalisation: ``sum(w * ce) / number of output pixels`` (mean over
  pixels), so the learning rate does not depend on the tile size;
- learning rate 0.002 (see ``DEFAULT_LR``), constant by default; ``schedule="poly"`` decays it as
  ``lr * (1 - i / iterations) ** 0.9``;
- no weight decay;
- the paper's 2 classes, one grey-value input channel.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from unetlib.augment import AugmentParams, random_tile
from unetlib.checkpoint import load_checkpoint, save_checkpoint
from unetlib.atomic import atomic_open
from unetlib.errors import UnetlibError
from unetlib.model import UNet, check_input_size, output_size
from unetlib.runtime import amp_dtype, autocast, pick_device, to_channels_last

__all__ = [
    "DEFAULT_LR",
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "train",
    "prepare_targets",
    "weighted_cross_entropy",
    "learning_rate",
    "register_cli",
]

#: Default learning rate for momentum 0.99 and the mean-normalised loss
#: [choice]. Short ISBI 2012 runs (widths 8 and 16, tiles 252 and 380,
#: 200-400 iterations): 0.01 diverged (NaN loss), 0.004-0.005 collapsed to
#: an all-background output, 0.001-0.003 learnt steadily.
DEFAULT_LR = 0.002
SCHEDULES = ("constant", "poly")
NUM_CLASSES = 2  # the paper's two classes (background/border, cell)
CHECKPOINT_NAME = "last.pt"

# Fields whose change makes a resumed run a different experiment.
_TRAJECTORY_FIELDS = (
    "tile", "lr", "momentum", "schedule", "weight_decay", "seed", "augment",
)


# --------------------------------------------------------------------------- #
# Configuration and result
# --------------------------------------------------------------------------- #
@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    Parameters
    ----------
    width : int
        Channels of the first U-Net level (64 in the paper).
    variant : {"paper", "phseg_v5"}
        Network variant, see :class:`unetlib.model.UNet`.
    dropout : float
        Dropout probability at the end of the contracting path (0.5).
    tile : int
        Input tile edge in pixels, ``16 k + 60`` (572 -> 388 output pixels).
    iterations : int
        Number of SGD steps, one tile each [choice: 10000].
    lr : float
        Learning rate [choice: ``DEFAULT_LR`` = 0.002].
    momentum : float
        SGD momentum (0.99, paper Section 3).
    schedule : {"constant", "poly"}
        Learning-rate schedule [choice: constant]; see :func:`learning_rate`.
    weight_decay : float
        L2 penalty of SGD [choice: 0].
    checkpoint_every : int
        Save ``last.pt`` every this many iterations (and at the end).
    seed : int
        Seeds the initial weights, the tiles and the dropout masks.
    device : str or None
        ``None`` picks CUDA when available, else the CPU.
    amp : bool
        Use autocast where it is fast (bf16 CPUs, CUDA); fp16 uses a GradScaler.
    augment : AugmentParams
        Augmentation of every tile (elastic deformation, rotation, ...).
    log_every : int
        Refresh the progress bar's mean loss every this many iterations.
    """

    width: int = 64
    variant: str = "paper"
    dropout: float = 0.5
    tile: int = 572
    iterations: int = 10000
    lr: float = DEFAULT_LR
    momentum: float = 0.99
    schedule: str = "constant"
    weight_decay: float = 0.0
    checkpoint_every: int = 500
    seed: int = 0
    device: str | None = None
    amp: bool = True
    augment: AugmentParams = field(default_factory=AugmentParams)
    log_every: int = 10

    def __post_init__(self) -> None:
        check_input_size(self.tile, "TrainConfig.tile")
        _check_positive("iterations", self.iterations, integer=True, allow_zero=True)
        _check_positive("checkpoint_every", self.checkpoint_every, integer=True)
        _check_positive("log_every", self.log_every, integer=True)
        _check_positive("lr", self.lr)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"TrainConfig.momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")

    def model_config(self) -> dict:
        """The constructor arguments of the :class:`UNet` this config trains."""
        return {
            "in_channels": 1,
            "num_classes": NUM_CLASSES,
            "width": self.width,
            "variant": self.variant,
            "dropout": self.dropout,
        }

    def to_dict(self) -> dict:
        """Plain-data form (JSON-safe) for checkpoints and result files."""
        return dataclasses.asdict(self)


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes
    ----------
    model : UNet
        The trained network, in eval mode, on the training device.
    history : list of (iteration, loss, seconds)
        One entry per completed iteration (1-based), the loss of that step and
        the training wall time in seconds up to it (summed over resumed runs).
    checkpoint : Path or None
        ``checkpoint_dir / "last.pt"``, or None without a checkpoint_dir.
    """

    model: UNet
    history: list
    checkpoint: Path | None


def _check_positive(name: str, value: Any, integer: bool = False, allow_zero: bool = False) -> None:
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float))
    bad = not ok_type or isinstance(value, bool) or (value < 0 if allow_zero else value <= 0)
    if bad or (not integer and not math.isfinite(value)):
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"TrainConfig.{name} must be {kind} {bound}, got {value!r}")


# --------------------------------------------------------------------------- #
# Loss and learning rate
# --------------------------------------------------------------------------- #
def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pixel-wise softmax + cross entropy weighted by w(x), averaged over pixels.

    Parameters
    ----------
    logits : (N, C, H, W) float tensor
        Network output; computed in float32 whatever its dtype.
    target : (N, H, W) int64 tensor
        Class of every pixel.
    weight : (N, H, W) float tensor
        The weight map w(x) of paper Eq. 2.

    Returns
    -------
    Scalar tensor ``sum(w * -log softmax(logits)[target]) / (N * H * W)``.
    """
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (weight.float() * ce).mean()


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """Learning rate of the 0-based ``iteration``.

    ``"constant"``: ``config.lr``; ``"poly"``: ``config.lr * (1 - iteration / iterations) ** 0.9``.
    """
    if config.schedule == "poly":
        return config.lr * (1.0 - iteration / max(config.iterations, 1)) ** 0.9
    return config.lr


# --------------------------------------------------------------------------- #
# Training data
# --------------------------------------------------------------------------- #
def prepare_targets(
    instance_masks: Sequence[np.ndarray],
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: Any = "balanced",
    cache_dir: str | Path | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Targets and weight maps (paper Eq. 2) for each instance mask, computed once.

    Parameters
    ----------
    instance_masks : sequence of (H, W) integer arrays
        0 = background, k > 0 = cell k.
    w0, sigma : float
        Border weight (10) and its width in pixels (5), paper Section 3.
    class_weights
        Passed to :func:`unetlib.weights.training_target` ("balanced").
    cache_dir : path or None
        If given, each result is stored there as ``.npz`` under a hash of the
        mask and the parameters, and read back on the next call.

    Returns
    -------
    (targets, weights) : lists of uint8 (0/1) and float32 arrays.
    """
    from unetlib.weights import training_target

    targets, weights = [], []
    for mask in instance_masks:
        mask = np.asarray(mask)
        cache = _cache_path(cache_dir, mask, w0, sigma, class_weights)
        if cache is not None and cache.is_file():
            with np.load(cache) as stored:
                target, weight = stored["target"], stored["weight"]
        else:
            target, weight = training_target(mask, w0=w0, sigma=sigma, class_weights=class_weights)
            if cache is not None:
                _save_npz_atomic(cache, target=target, weight=weight)
        targets.append(target)
        weights.append(weight)
    return targets, weights


def _cache_path(cache_dir, mask: np.ndarray, w0, sigma, class_weights) -> Path | None:
    if cache_dir is None:
        return None
    import hashlib

    digest = hashlib.sha1(np.ascontiguousarray(mask).tobytes())
    digest.update(repr((mask.shape, str(mask.dtype), float(w0), float(sigma), repr(class_weights))).encode())
    return Path(cache_dir) / f"target-{digest.hexdigest()[:20]}.npz"


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    with atomic_open(path, suffix=".npz") as f:
        np.savez(f, **arrays)


def _check_training_data(images, targets, weights) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Validate the three lists; return (image float32 in [0, 1], target uint8, weight float32) triples."""
    lists = {"images": images, "targets": targets, "weights": weights}
    for name, value in lists.items():
        if isinstance(value, np.ndarray) and value.ndim == 2:
            raise ValueError(f"{name} must be a list of 2-D arrays, got one 2-D array: wrap it in a list")
        if len(value) == 0:
            raise ValueError(f"{name} is empty: give at least one training image with its target and weights")
    if not len(images) == len(targets) == len(weights):
        raise ValueError(
            f"images, targets and weights must have one entry per image, got "
            f"{len(images)}, {len(targets)} and {len(weights)}"
        )
    return [_check_one(i, im, t, w) for i, (im, t, w) in enumerate(zip(images, targets, weights))]


def _check_one(i: int, image, target, weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, target, weight = np.asarray(image), np.asarray(target), np.asarray(weight)
    if image.ndim != 2:
        raise ValueError(f"images[{i}] must be a 2-D grey-value image, got shape {image.shape}")
    if target.shape != image.shape or weight.shape != image.shape:
        raise ValueError(
            f"images[{i}] has shape {image.shape} but targets[{i}] has {target.shape} and "
            f"weights[{i}] has {weight.shape}: they must match pixel for pixel"
        )
    if not (np.issubdtype(target.dtype, np.integer) or target.dtype == bool):
        raise ValueError(
            f"targets[{i}] has dtype {target.dtype}: it must hold integer class labels "
            "(0/1, as returned by unetlib.weights.training_target)"
        )
    if target.size and (target.min() < 0 or target.max() >= NUM_CLASSES):
        raise ValueError(
            f"targets[{i}] holds labels {int(target.min())}..{int(target.max())}: only 0 "
            f"(background) and 1 (cell) are allowed; convert instance masks with training_target"
        )
    if not np.issubdtype(weight.dtype, np.floating) or not np.isfinite(weight).all() or (weight < 0).any():
        raise ValueError(f"weights[{i}] must be a finite, non-negative float weight map")
    return _to_unit_float(i, image), target.astype(np.uint8), weight.astype(np.float32)


def _to_unit_float(i: int, image: np.ndarray) -> np.ndarray:
    """uint8 -> /255 and uint16 -> /65535; float images are used as given."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError(f"images[{i}] contains NaN or infinite values")
        return image.astype(np.float32)
    raise ValueError(f"images[{i}] has dtype {image.dtype}: give uint8, uint16 or float images")


# --------------------------------------------------------------------------- #
# Deterministic per-iteration randomness
# --------------------------------------------------------------------------- #
def _tile_rng(seed: int, iteration: int) -> np.random.Generator:
    return np.random.default_rng([seed, iteration])


def _dropout_seed(seed: int, iteration: int) -> int:
    return int(np.random.SeedSequence([seed, iteration, 1]).generate_state(1, np.uint64)[0] >> 1)


def _sample_tile(data, config: TrainConfig, iteration: int):
    """The (x, y, w) tile of ``iteration``, with a batch axis; depends only on seed and iteration."""
    rng = _tile_rng(config.seed, iteration)
    image, target, weight = data[int(rng.integers(len(data)))]
    x, y, w = random_tile(
        image, target, weight,
        in_size=config.tile, out_size=output_size(config.tile), rng=rng, params=config.augment,
    )
    return x[None], y[None], w[None]


class _Prefetcher:
    """Computes the tiles of the next iterations in background threads, in order."""

    def __init__(self, make: Callable[[int], Any], start: int, stop: int, depth: int) -> None:
        self._make, self._next, self._stop, self._depth = make, start, stop, depth
        self._pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="unetlib-tiles")
        self._futures: dict[int, Future] = {}
        self._fill()

    def _fill(self) -> None:
        while self._next < self._stop and len(self._futures) < self._depth:
            self._futures[self._next] = self._pool.submit(self._make, self._next)
            self._next += 1

    def get(self, iteration: int):
        tile = self._futures.pop(iteration).result()
        self._fill()
        return tile

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- #
# Model, optimiser, checkpoints
# --------------------------------------------------------------------------- #
def _initial_model(config: TrainConfig, model: UNet | None, device: torch.device) -> UNet:
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = UNet(**config.model_config())
    elif model.config() != config.model_config():
        raise ValueError(
            f"the given model has configuration {model.config()} but the TrainConfig asks for "
            f"{config.model_config()}: make width, variant and dropout agree"
        )
    return to_channels_last(model, device).train()


def _make_optimizer(model: UNet, config: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _make_scaler(device: torch.device, config: TrainConfig) -> torch.amp.GradScaler:
    fp16 = config.amp and amp_dtype(device) == torch.float16
    return torch.amp.GradScaler(device.type, enabled=fp16)


class _State:
    """Mutable progress of a run: completed iterations, history, elapsed seconds."""

    def __init__(self) -> None:
        self.iteration = 0
        self.history: list[tuple[int, float, float]] = []
        self.seconds_before = 0.0
        self.saved_at: int | None = None  # iteration of the checkpoint on disk


def _resume(path: Path, model, optimizer, scaler, config: TrainConfig, state: _State) -> None:
    payload = load_checkpoint(path)
    _check_compatible(path, payload, config)
    model.load_state_dict(payload["model_state"])
    optimizer.load_state_dict(payload["optimizer"])
    if payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    state.iteration = int(payload["iteration"])
    state.history = [tuple(h) for h in payload.get("history", [])]
    state.seconds_before = state.history[-1][2] if state.history else 0.0
    state.saved_at = state.iteration


def _check_compatible(path: Path, payload: dict, config: TrainConfig) -> None:
    if payload["model_config"] != config.model_config():
        raise UnetlibError(
            f"checkpoint {path} holds a model {payload['model_config']} but this run asks for "
            f"{config.model_config()}: use the checkpoint's settings, another output folder, "
            "or start afresh (resume=False / --no-resume)"
        )
    saved, now = payload.get("config", {}), config.to_dict()
    fields = list(_TRAJECTORY_FIELDS) + (["iterations"] if config.schedule != "constant" else [])
    differ = [f for f in fields if f in saved and saved[f] != now[f]]
    if differ or "optimizer" not in payload:
        what = ", ".join(f"{f}: {saved[f]!r} -> {now[f]!r}" for f in differ) or "no optimizer state"
        raise UnetlibError(
            f"checkpoint {path} cannot be resumed by this run ({what}): use the same settings, "
            "another output folder, or start afresh (resume=False / --no-resume)"
        )


def _save(path: Path, model, optimizer, scaler, config: TrainConfig, state: _State, device) -> Path:
    """Write ``path`` atomically; refuse to replace a good checkpoint by non-finite weights."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise UnetlibError(
                f"weights became non-finite ({name}) after iteration {state.iteration}; "
                f"the last good checkpoint {path} is kept: lower the learning rate"
            )
    written = save_checkpoint(
        path, model,
        optimizer=optimizer.state_dict(),
        scaler=scaler.state_dict() if scaler.is_enabled() else None,
        iteration=state.iteration,
        config=config.to_dict(),
        history=list(state.history),
        device=str(device),
        amp_dtype=str(amp_dtype(device)) if config.amp else None,
    )
    state.saved_at = state.iteration
    return written


# --------------------------------------------------------------------------- #
# One step
# --------------------------------------------------------------------------- #
def _train_step(model, optimizer, scaler, tile, config: TrainConfig, device, iteration: int) -> float:
    x, y, w = (t.to(device, non_blocking=True) for t in tile)
    x = x.contiguous(memory_format=torch.channels_last)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(config, iteration)
    torch.manual_seed(_dropout_seed(config.seed, iteration))
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, config.amp):
        logits = model(x)
    loss = weighted_cross_entropy(logits, y, w)
    value = loss.item()
    if not math.isfinite(value):
        raise _NonFiniteLoss(value)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return value


class _NonFiniteLoss(ArithmeticError):
    """The loss of a step is NaN or infinite (turned into a UnetlibError by the loop)."""


def _non_finite_error(loss: float, iteration: int, path: Path | None, state: _State) -> UnetlibError:
    kept = (
        f"the last good checkpoint {path} (iteration {state.saved_at}) was kept"
        if path is not None and state.saved_at else "no checkpoint was written"
    )
    return UnetlibError(
        f"the loss is {loss} at iteration {iteration + 1}: training stopped and {kept}; "
        "check the images and weight maps, or lower the learning rate (TrainConfig.lr / --lr)"
    )


class _DeferSigint:
    """Delays Ctrl-C until the current step is complete, then raises KeyboardInterrupt."""

    def __enter__(self):
        self.hit = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        self.hit = True

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        if self.hit and exc_type is None:
            raise KeyboardInterrupt
        return False


# --------------------------------------------------------------------------- #
# The loop
# --------------------------------------------------------------------------- #
def train(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    weights: Sequence[np.ndarray],
    config: TrainConfig | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    model: UNet | None = None,
) -> TrainResult:
    """Train a U-Net with SGD (momentum 0.99), one augmented tile per iteration.

    Parameters
    ----------
    images : list of (H, W) arrays
        Grey-value images; uint8 is scaled by 1/255, float used as given.
        Images smaller than a tile are extrapolated by mirroring.
    targets, weights : lists of (H, W) arrays
        Class labels (0/1) and weight maps w(x), one per image, as returned by
        :func:`prepare_targets` / :func:`unetlib.weights.training_target`.
    config : TrainConfig
        Hyper-parameters (defaults: ``TrainConfig()``).
    checkpoint_dir : path or None
        Folder of ``last.pt``, written every ``config.checkpoint_every``
        iterations, at the end, and on Ctrl-C. None: no checkpoints.
    resume : bool
        Continue from ``checkpoint_dir/last.pt`` if it exists (True).
    progress : bool
        Show a tqdm progress bar with the loss and iterations/s.
    model : UNet or None
        Initial network (its config must match ``config``); None builds one
        seeded by ``config.seed``.

    Returns
    -------
    TrainResult(model, history, checkpoint)

    Raises
    ------
    UnetlibError
        Non-finite loss (names the iteration; the last good checkpoint is
        kept) or a checkpoint that does not fit ``config``.
    ValueError
        Bad training data or configuration.
    """
    config = TrainConfig() if config is None else config
    data = _check_training_data(images, targets, weights)
    device = pick_device(config.device)
    model = _initial_model(config, model, device)
    optimizer = _make_optimizer(model, config)
    scaler = _make_scaler(device, config)
    path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    state = _State()
    if path is not None and resume and path.is_file():
        _resume(path, model, optimizer, scaler, config, state)
    _run_loop(data, model, optimizer, scaler, config, device, state, path, progress)
    if path is not None and state.saved_at != state.iteration:
        _save(path, model, optimizer, scaler, config, state, device)
    return TrainResult(model.eval(), state.history, path)


def _run_loop(data, model, optimizer, scaler, config, device, state: _State, path, progress) -> None:
    from tqdm.auto import tqdm

    depth = 4 if device.type == "cuda" else 1
    tiles = _Prefetcher(lambda i: _sample_tile(data, config, i), state.iteration, config.iterations, depth)
    # a terminal redraws the bar in place; a notebook or log keeps every update, so update rarely there
    interval = 0.5 if sys.stderr.isatty() else 20.0
    bar = tqdm(total=config.iterations, initial=state.iteration, disable=not progress,
               desc="train", unit="it", dynamic_ncols=True, mininterval=interval, maxinterval=max(10.0, interval))
    start, window = time.perf_counter(), []
    try:
        for i in range(state.iteration, config.iterations):
            tile = tiles.get(i)
            with _DeferSigint():
                try:
                    loss = _train_step(model, optimizer, scaler, tile, config, device, i)
                except _NonFiniteLoss as bad:
                    raise _non_finite_error(bad.args[0], i, path, state) from None
                state.iteration = i + 1
                state.history.append((i + 1, loss, state.seconds_before + time.perf_counter() - start))
                bar.update(1)
            window.append(loss)
            if len(window) == config.log_every:
                bar.set_postfix(loss=f"{sum(window) / len(window):.4f}")
                window.clear()
            if path is not None and state.iteration % config.checkpoint_every == 0:
                _save(path, model, optimizer, scaler, config, state, device)
    except KeyboardInterrupt:
        if path is not None and state.iteration > 0:
            _save(path, model, optimizer, scaler, config, state, device)
            bar.write(f"interrupted: saved iteration {state.iteration} to {path}")
        raise
    finally:
        tiles.close()
        bar.close()


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #
DATASETS = ("isbi2012", "PhC-C2DH-U373", "DIC-C2DH-HeLa")


def register_cli(subparsers) -> None:
    """Add ``unetlib train DATASET ...``."""
    p = subparsers.add_parser(
        "train", help="train a U-Net on one of the paper's datasets",
        description="Train a U-Net (paper Section 3) and write OUT/last.pt; "
        "an existing OUT/last.pt is resumed unless --no-resume.",
    )
    d = TrainConfig()
    p.add_argument("dataset", choices=DATASETS, metavar="DATASET", help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--sequence", default="01", choices=("01", "02"), help="CTC sequence to train on (01)")
    p.add_argument("--slices", default=None, help="ISBI 2012 slices, e.g. 0-19 or 0-9,20-29 (all 30)")
    p.add_argument("--iterations", type=int, default=d.iterations, help=f"SGD steps ({d.iterations})")
    p.add_argument("--width", type=int, default=d.width, help=f"first-level channels ({d.width})")
    p.add_argument("--tile", type=int, default=d.tile, help=f"input tile edge, 16k+60 ({d.tile})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate ({d.lr})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed ({d.seed})")
    p.add_argument("--out", default=None, help="output folder for last.pt (runs/train-DATASET)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help=f"iterations between checkpoints ({d.checkpoint_every})")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/last.pt exists")
    p.add_argument("--data", default=None, help="dataset root (default: the kit's data folder)")
    p.set_defaults(func=_cli)


def parse_slices(text: str, count: int) -> list[int]:
    """``"0-19"`` or ``"0-9,20-29"`` (inclusive ranges) -> sorted slice indices below ``count``."""
    chosen: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"--slices {text!r}: write ranges like 0-19 or 0-9,20-29") from None
        if not 0 <= a <= b < count:
            raise ValueError(f"--slices {text!r}: slices must lie in 0-{count - 1}, in increasing order")
        chosen.update(range(a, b + 1))
    return sorted(chosen)


def _cli_data(args) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images and instance masks of the chosen dataset."""
    from unetlib import data as datasets
    from unetlib.weights import instances_from_binary

    if args.dataset == "isbi2012":
        isbi = datasets.load_isbi2012(args.data)
        keep = parse_slices(args.slices, len(isbi.train_images)) if args.slices else range(len(isbi.train_images))
        return [isbi.train_images[i] for i in keep], [instances_from_binary(isbi.train_labels[i]) for i in keep]
    if args.slices:
        raise ValueError("--slices applies to isbi2012 only; CTC datasets train on the annotated SEG frames")
    ctc = datasets.load_ctc(args.dataset, args.sequence, args.data)
    frames = sorted(ctc.seg)
    return [ctc.frames[t] for t in frames], [ctc.seg[t] for t in frames]


def _cli(args: argparse.Namespace) -> int:
    out = Path(args.out or f"runs/train-{args.dataset}")
    config = TrainConfig(
        width=args.width, tile=args.tile, iterations=args.iterations, lr=args.lr,
        seed=args.seed, checkpoint_every=args.checkpoint_every,
    )
    images, instances = _cli_data(args)
    targets, weights = prepare_targets(instances, cache_dir=out / "targets-cache")
    result = train(images, targets, weights, config, checkpoint_dir=out, resume=not args.no_resume)
    last = result.history[-1] if result.history else None
    summary = f"iteration {last[0]}, loss {last[1]:.4f}" if last else "no iterations run"
    print(f"trained {args.dataset} on {len(images)} images ({summary}); wrote {result.checkpoint}")
    return 0
