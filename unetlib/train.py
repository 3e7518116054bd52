"""The training loop of the paper (Section 3), readable top to bottom in :func:`train`.

Each iteration

1. takes the augmented tile(s) of that iteration, drawn from the generator
   ``np.random.default_rng([seed, iteration])`` in a background thread (so the
   tiles of iteration ``i`` depend only on ``seed`` and ``i``, and a resumed
   run sees the same tiles);
2. runs the network (channels_last, autocast where it is fast, freed
   buffers reused for the next step: :mod:`unetlib.runtime`), with dropout
   seeded from ``(seed, iteration)``;
3. applies the pixel-wise softmax and the cross entropy weighted by the
   pre-computed weight map w(x) (paper Eq. 1, with the minus sign);
4. takes one optimiser step: the paper's SGD with momentum 0.99 and one tile
   per step, or Adam (a recorded choice of the short profiles).

A run resumed from a checkpoint ends with weights bit-identical (on the CPU)
to an uninterrupted run with the same seed. Ctrl-C and SIGTERM finish the
current step, save the checkpoint and stop.

Choices where the paper is silent (recorded in every checkpoint and result
file through :meth:`TrainConfig.to_dict`):

- loss normalisation: ``sum(w * ce) / number of output pixels`` (mean over
  pixels), so the learning rate does not depend on the tile size;
- learning rate, schedule (constant, poly or cosine decay after a linear
  warm-up), optimiser and tiles per step: see :class:`TrainConfig`;
- no weight decay;
- the paper's 2 classes, one grey-value input channel.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from unetlib.augment import AugmentParams, augmented_tile
from unetlib.checkpoint import load_checkpoint, save_checkpoint
from unetlib.errors import UnetlibError, short_repr
from unetlib.model import VARIANTS, UNet, check_input_size, output_size
from unetlib.preprocess import normalize_image
from unetlib.progress import Progress
from unetlib.runtime import amp_dtype, autocast, pick_device, reuse_freed_memory, to_channels_last
from unetlib.values import check_bool, check_choice, check_integer, check_real, differing

__all__ = [
    "SCHEDULES",
    "OPTIMIZERS",
    "TrainConfig",
    "NETWORK_FIELDS",
    "TrainResult",
    "Interrupted",
    "train",
    "weighted_cross_entropy",
    "learning_rate",
]

SCHEDULES = ("constant", "poly", "cosine")
OPTIMIZERS = ("sgd", "adam")
NUM_CLASSES = 2  # the paper's two classes (background/border, cell)
CHECKPOINT_NAME = "last.pt"
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")



# --------------------------------------------------------------------------- #
# Configuration and result
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
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
    batch : int
        Tiles per step (the paper: 1, "large input tiles over a large batch size").
    iterations : int
        Number of optimiser steps.
    optimizer : {"sgd", "adam"}
        SGD with ``momentum`` (the paper) or Adam (betas 0.9, 0.999).
    lr : float
        Peak learning rate.
    momentum : float
        SGD momentum (0.99, paper Section 3); unused by Adam.
    schedule : {"constant", "poly", "cosine"}
        Decay after the warm-up; see :func:`learning_rate`.
    warmup : int
        Iterations of linear warm-up from ``lr / warmup`` to ``lr`` (0: none).
    weight_decay : float
        L2 penalty [choice: 0].
    clip_grad : float
        Largest norm of the whole gradient; a larger one is scaled down to it
        before the step (0: no clipping).
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
    """

    width: int = 64
    variant: str = "paper"
    dropout: float = 0.5
    tile: int = 572
    batch: int = 1
    iterations: int = 10000
    optimizer: str = "sgd"
    lr: float = 0.001
    momentum: float = 0.99
    schedule: str = "constant"
    warmup: int = 0
    weight_decay: float = 0.0
    clip_grad: float = 0.0
    checkpoint_every: int = 500
    seed: int = 0
    device: str | None = None
    amp: bool = True
    augment: AugmentParams = field(default_factory=AugmentParams)

    def __post_init__(self) -> None:
        check_input_size(self.tile, "TrainConfig.tile")
        for name in ("width", "batch", "checkpoint_every"):
            check_integer(f"TrainConfig.{name}", getattr(self, name), 1)
        check_integer("TrainConfig.iterations", self.iterations, 0)
        check_integer("TrainConfig.warmup", self.warmup, 0)
        check_integer("TrainConfig.seed", self.seed, 0, 2**63 - 1)
        check_real("TrainConfig.lr", self.lr, 0, low_open=True)
        check_real("TrainConfig.momentum", self.momentum, 0, 1, high_open=True)
        check_real("TrainConfig.dropout", self.dropout, 0, 1, high_open=True)
        check_real("TrainConfig.weight_decay", self.weight_decay, 0)
        check_real("TrainConfig.clip_grad", self.clip_grad, 0)
        check_choice("TrainConfig.schedule", self.schedule, SCHEDULES)
        check_choice("TrainConfig.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("TrainConfig.variant", self.variant, VARIANTS)
        if self.device is not None and not (isinstance(self.device, str) and _DEVICE.fullmatch(self.device)):
            raise UnetlibError(f"TrainConfig.device must be None (CUDA when available), 'cpu', 'cuda' or "
                               f"'cuda:N'; got {self.device!r}")
        check_bool("TrainConfig.amp", self.amp)
        if not isinstance(self.augment, AugmentParams):
            raise UnetlibError("TrainConfig.augment must be an AugmentParams")

    def model_config(self) -> dict:
        """The constructor arguments of the :class:`UNet` this config trains."""
        return {"in_channels": 1, "num_classes": NUM_CLASSES, "width": self.width,
                "variant": self.variant, "dropout": self.dropout}

    def to_dict(self) -> dict:
        """Plain-data form (JSON-safe) for checkpoints and result files."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """The inverse of :meth:`to_dict`; a field missing (written before it existed) takes its default."""
        data = dict(data or {})
        augment = dict(data.pop("augment", {}) or {})
        try:
            return cls(**data, augment=AugmentParams(**augment))
        except TypeError as exc:
            raise UnetlibError(f"malformed training config: {exc}") from None

    def differs_from(self, other: TrainConfig, ignore: Sequence[str] = ()) -> dict[str, tuple[Any, Any]]:
        """The fields of :data:`NETWORK_FIELDS` (augmentation's as ``augment.NAME``) whose values differ:
        name -> (``other``'s value, this one's). Empty when both train the same network."""
        return differing(other.to_dict(), self.to_dict(), NETWORK_FIELDS, ignore)


#: What identifies the network a config trains: every field but where and in what arithmetic it runs and how
#: often it is saved (``device``, ``amp``, ``checkpoint_every``). Two configs that agree on these train the same
#: network (digit for digit on one machine, thread count and precision).
NETWORK_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("device", "amp",
                                                                                          "checkpoint_every"))


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
    threads : tuple of int
        The PyTorch thread counts the iterations ran with (more than one when
        resumed with another): on the CPU the bits of the result depend on it,
        so a fixed seed repeats digit for digit on one machine at one count.
    """

    model: UNet
    history: list
    checkpoint: Path | None
    threads: tuple = ()


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT) or SIGTERM after saving its checkpoint; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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
        The weight map w(x) of paper Eq. 2 (0 ignores a pixel).

    Returns
    -------
    Scalar tensor ``sum(w * -log softmax(logits)[target]) / (N * H * W)``.
    """
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (weight.float() * ce).mean()


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """Learning rate of the 0-based ``iteration``.

    A linear warm-up ``(i + 1) / warmup`` over the first ``warmup`` iterations
    multiplies the schedule: ``"constant"``: ``lr``; ``"poly"``:
    ``lr * (1 - i / iterations) ** 0.9``; ``"cosine"``: ``lr * (1 + cos(pi i / iterations)) / 2``.
    """
    ramp = min(1.0, (iteration + 1) / config.warmup) if config.warmup else 1.0
    progress = iteration / max(config.iterations, 1)
    if config.schedule == "poly":
        return ramp * config.lr * (1.0 - progress) ** 0.9
    if config.schedule == "cosine":
        return ramp * config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return ramp * config.lr


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
    metadata: dict | None = None,
) -> TrainResult:
    """Train a U-Net, one optimiser step on ``config.batch`` augmented tiles per iteration.

    Parameters
    ----------
    images : list of (H, W) arrays
        Network inputs: float images already scaled (see :mod:`unetlib.preprocess`);
        integer images are scaled by their dtype's maximum ("unit").
        Images smaller than a tile are extrapolated by mirroring.
    targets, weights : lists of (H, W) arrays
        Class labels (0/1) and weight maps w(x), one per image, as returned by
        :func:`unetlib.weights.training_target`.
    config : TrainConfig
        Hyper-parameters (defaults: ``TrainConfig()``).
    checkpoint_dir : path or None
        Folder of ``last.pt``, written every ``config.checkpoint_every``
        iterations, at the end, and on Ctrl-C / SIGTERM. None: no checkpoints.
    resume : bool
        Continue from ``checkpoint_dir/last.pt`` if it exists (True).
    progress : bool
        A progress bar on a terminal; a few lines elsewhere (logs, notebooks).
    model : UNet or None
        Initial network (its config must match ``config``); None builds one
        seeded by ``config.seed``.
    metadata : dict or None
        JSON-safe data stored in every checkpoint (the experiment's recipe and
        what it trained on; :func:`unetlib.trainset.train_network` checks them
        before a resume).

    Returns
    -------
    TrainResult(model, history, checkpoint)

    Raises
    ------
    UnetlibError
        Bad data or configuration, a non-finite loss (names the iteration; the
        last good checkpoint is kept) or a checkpoint that does not fit ``config``.
    Interrupted
        Ctrl-C or SIGTERM, after the checkpoint of the last completed step is saved.
    """
    config = TrainConfig() if config is None else config
    data = _check_training_data(images, targets, weights)
    device = pick_device(config.device)
    model = _initial_model(config, model, device)
    optimizer = _make_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and amp_dtype(device) == torch.float16)
    run = _Run(config, model, optimizer, scaler, device, checkpoint_dir, metadata)
    if resume and run.path is not None and run.path.is_file():
        run.resume()
    if run.iteration < config.iterations:
        run.start()

    tiles = _tile_source(lambda i: _sample_tiles(data, config, i), run.iteration, config.iterations, device)
    bar = Progress(config.iterations, "train", "it", initial=run.iteration, enabled=progress)
    start = time.perf_counter()
    try:
        # Ctrl-C and SIGTERM wait until the current step is complete; each step's activations reuse the
        # previous step's freed buffers instead of fresh pages (5-14 % faster per step on the CPU, same arithmetic)
        with _DeferSignals() as signals, reuse_freed_memory(device):
            for i in range(run.iteration, config.iterations):
                x, y, w = (t.to(device, non_blocking=True) for t in tiles.get(i))
                x = x.contiguous(memory_format=torch.channels_last)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(config, i)
                torch.manual_seed(_dropout_seed(config.seed, i))
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, config.amp):
                    logits = model(x)
                loss = weighted_cross_entropy(logits, y, w)
                value = loss.item()
                if not math.isfinite(value):
                    raise run.non_finite(value, i)
                scaler.scale(loss).backward()
                if config.clip_grad:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                run.record(i + 1, value, time.perf_counter() - start)
                bar.update(loss=value)
                if run.iteration % config.checkpoint_every == 0:
                    run.save()
                if signals.hit is not None:
                    raise Interrupted(signals.hit)
    except KeyboardInterrupt as stop:
        if run.iteration > 0:
            run.save()
            bar.write(f"interrupted: saved iteration {run.iteration} to {run.path}" if run.path else "interrupted")
        raise stop if isinstance(stop, Interrupted) else Interrupted(signal.SIGINT) from None
    finally:
        tiles.close()
        bar.close()
    if run.saved_at != run.iteration:
        run.save()
    return TrainResult(model.eval(), run.history, run.path, tuple(run.threads))


# --------------------------------------------------------------------------- #
# Training data and tiles
# --------------------------------------------------------------------------- #
def _check_training_data(images, targets, weights) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Validate the three lists; return (input float32, target uint8, weight float32) triples of CPU tensors,
    the planes every iteration's tiles are cut from (:func:`unetlib.augment.augmented_tile`)."""
    lists = {"images": images, "targets": targets, "weights": weights}
    for name, value in lists.items():
        if isinstance(value, np.ndarray) and value.ndim == 2:
            raise UnetlibError(f"{name} must be a list of 2-D arrays, got one 2-D array: wrap it in a list")
        if len(value) == 0:
            raise UnetlibError(f"{name} is empty: give at least one training image with its target and weights")
    if not len(images) == len(targets) == len(weights):
        raise UnetlibError(
            f"images, targets and weights must have one entry per image, got "
            f"{len(images)}, {len(targets)} and {len(weights)}"
        )
    return [_check_one(i, im, t, w) for i, (im, t, w) in enumerate(zip(images, targets, weights))]


def _check_one(i: int, image, target, weight) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    image, target, weight = np.asarray(image), np.asarray(target), np.asarray(weight)
    if image.ndim != 2:
        raise UnetlibError(f"images[{i}] must be a 2-D grey-value image, got shape {image.shape}")
    if target.shape != image.shape or weight.shape != image.shape:
        raise UnetlibError(
            f"images[{i}] has shape {image.shape} but targets[{i}] has {target.shape} and "
            f"weights[{i}] has {weight.shape}: they must match pixel for pixel"
        )
    if not (np.issubdtype(target.dtype, np.integer) or target.dtype == bool):
        raise UnetlibError(
            f"targets[{i}] has dtype {target.dtype}: it must hold integer class labels "
            "(0/1, as returned by unetlib.weights.training_target)"
        )
    if target.size and (target.min() < 0 or target.max() >= NUM_CLASSES):
        raise UnetlibError(
            f"targets[{i}] holds labels {int(target.min())}..{int(target.max())}: only 0 "
            f"(background) and 1 (cell) are allowed; convert instance masks with training_target"
        )
    if not np.issubdtype(weight.dtype, np.floating) or not np.isfinite(weight).all() or (weight < 0).any():
        raise UnetlibError(f"weights[{i}] must be a finite, non-negative float weight map")
    if image.dtype.kind not in "biuf":
        raise UnetlibError(f"images[{i}] has dtype {image.dtype}: give integer or float images")
    inputs = image.astype(np.float32) if image.dtype.kind == "f" else normalize_image(image, "unit")
    if not np.isfinite(inputs).all():
        raise UnetlibError(f"images[{i}] contains NaN or infinite values")
    return (torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)),
            torch.from_numpy(target.astype(np.uint8)), torch.from_numpy(weight.astype(np.float32)))


def _sample_tiles(data, config: TrainConfig, iteration: int):
    """The ``(x, y, w)`` batch of ``iteration``: it depends only on the seed and the iteration."""
    rng = np.random.default_rng([config.seed, iteration])
    xs, ys, ws = [], [], []
    for _ in range(config.batch):
        image, target, weight = data[int(rng.integers(len(data)))]
        x, y, w = augmented_tile(image, target, weight, in_size=config.tile, out_size=output_size(config.tile),
                                 rng=rng, params=config.augment)
        xs.append(x)
        ys.append(y)
        ws.append(w)
    return torch.stack(xs), torch.stack(ys), torch.stack(ws)


def _dropout_seed(seed: int, iteration: int) -> int:
    return int(np.random.SeedSequence([seed, iteration, 1]).generate_state(1, np.uint64)[0] >> 1)


def _tile_source(make: Callable[[int], Any], start: int, stop: int, device: torch.device):
    """Where the tiles come from: background threads on a GPU; the training thread itself on the CPU.

    On the CPU the step already keeps every core busy; a second thread drawing
    tiles at the same time oversubscribes the cores and slows the step's
    parallel regions by far more than the tile costs (width 16, 572² tiles:
    0.299 s per iteration with a background thread, 0.247 s in line; see
    docs/performance.md). With a GPU the CPU is otherwise idle, so tiles are
    drawn ahead while the GPU computes. ``UNETLIB_TILE_THREADS`` chooses
    explicitly (0: in line).
    """
    threads = os.environ.get("UNETLIB_TILE_THREADS")
    depth = int(threads) if threads else (4 if device.type == "cuda" else 0)
    return _Prefetcher(make, start, stop, depth=depth) if depth > 0 else _InLine(make)


class _InLine:
    """Draws the tile of an iteration when it is asked for."""

    def __init__(self, make: Callable[[int], Any]) -> None:
        self._make = make

    def get(self, iteration: int):
        return self._make(iteration)

    def close(self) -> None:
        pass


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
# Model, optimiser, the run's state and its checkpoint
# --------------------------------------------------------------------------- #
def _initial_model(config: TrainConfig, model: UNet | None, device: torch.device) -> UNet:
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = UNet(**config.model_config())
    elif model.config() != config.model_config():
        raise UnetlibError(
            f"the given model has configuration {model.config()} but the TrainConfig asks for "
            f"{config.model_config()}: make width, variant and dropout agree"
        )
    return to_channels_last(model, device).train()


def _make_optimizer(model: UNet, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


class _Run:
    """One run's progress (completed iterations, loss history) and its checkpoint file."""

    def __init__(self, config, model, optimizer, scaler, device, checkpoint_dir, metadata) -> None:
        self.config, self.model, self.optimizer, self.scaler, self.device = config, model, optimizer, scaler, device
        self.path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
        self.metadata = metadata
        self.iteration = 0
        self.history: list[tuple[int, float, float]] = []
        self.seconds_before = 0.0
        self.saved_at: int | None = None  # iteration of the checkpoint on disk
        self.threads: list[int] = []  # PyTorch thread counts the iterations ran with

    def start(self) -> None:
        """Note the thread count of the iterations about to run."""
        self.threads = sorted({*self.threads, torch.get_num_threads()})

    def record(self, iteration: int, loss: float, seconds: float) -> None:
        self.iteration = iteration
        self.history.append((iteration, loss, self.seconds_before + seconds))

    def resume(self) -> None:
        payload = load_checkpoint(self.path)
        self._check_compatible(payload)
        self.model.load_state_dict(payload["model_state"])
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            if payload.get("scaler"):
                self.scaler.load_state_dict(payload["scaler"])
            self.iteration = int(payload["iteration"])
            self.history = [tuple(h) for h in payload.get("history", [])]
            self.threads = [int(t) for t in payload.get("threads", [])]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UnetlibError(f"checkpoint {self.path} holds a malformed training state ({exc}); "
                               "delete it or start afresh (resume=False / --no-resume)") from None
        self.seconds_before = self.history[-1][2] if self.history else 0.0
        self.saved_at = self.iteration

    def _check_compatible(self, payload: dict) -> None:
        """The checkpoint trains the network this run asks for (:meth:`TrainConfig.differs_from`; with a
        constant learning rate a run may also continue it to more iterations)."""
        try:
            saved = TrainConfig.from_dict(payload.get("config") or {})
        except UnetlibError as exc:
            raise UnetlibError(f"checkpoint {self.path} holds an unreadable training config ({exc}): start afresh "
                               "(resume=False / --no-resume) or use another output folder") from None
        differ = self.config.differs_from(saved, ignore=("iterations",) if self.config.schedule == "constant" else ())
        if differ or "optimizer" not in payload:
            changes = (f"{f}: {short_repr(a, 60)} -> {short_repr(b, 60)}" for f, (a, b) in differ.items())
            what = ", ".join(changes) or "no optimizer state"
            raise UnetlibError(
                f"checkpoint {self.path} cannot be resumed by this run ({what}): use the same settings, "
                "another output folder, or start afresh (resume=False / --no-resume)"
            )

    def save(self) -> None:
        """Write the checkpoint atomically; never replace a good one by non-finite weights."""
        if self.path is None:
            return
        for name, p in self.model.named_parameters():
            if not torch.isfinite(p).all():
                raise UnetlibError(
                    f"weights became non-finite ({name}) after iteration {self.iteration}; "
                    f"the last good checkpoint {self.path} is kept: lower the learning rate"
                )
        save_checkpoint(
            self.path, self.model,
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            iteration=self.iteration,
            config=self.config.to_dict(),
            history=[list(h) for h in self.history],
            threads=list(self.threads),
            device=str(self.device),
            metadata=self.metadata,
        )
        self.saved_at = self.iteration

    def non_finite(self, loss: float, iteration: int) -> UnetlibError:
        kept = (
            f"the last good checkpoint {self.path} (iteration {self.saved_at}) was kept"
            if self.path is not None and self.saved_at else "no checkpoint was written"
        )
        return UnetlibError(
            f"the loss is {loss} at iteration {iteration + 1}: training stopped and {kept}; "
            "check the images and weight maps, or lower the learning rate (TrainConfig.lr / --lr)"
        )


class _DeferSignals:
    """Records SIGINT and SIGTERM in ``hit`` instead of acting on them; the loop stops after its step."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.hit: int | None = None
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for signum in self._SIGNALS:
                self._old[signum] = signal.signal(signum, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        self.hit = signum

    def __exit__(self, exc_type, exc, tb) -> bool:
        for signum, old in self._old.items():
            signal.signal(signum, old)
        return False
