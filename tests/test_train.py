"""Tests of the training loop (unetlib.train): loss, determinism, resume, errors, learning."""

from __future__ import annotations

import dataclasses
import signal

import numpy as np
import pytest
import torch

import unetlib.train as train_module
from unetlib.checkpoint import load_checkpoint
from unetlib.errors import UnetlibError
from unetlib.model import UNet
from unetlib.recipe import Recipe
from unetlib.train import (
    Interrupted,
    TrainConfig,
    learning_rate,
    train,
    weighted_cross_entropy,
)
from unetlib.train_cli import parse_slices
from unetlib.trainset import training_data


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def tiny_config(**changes) -> TrainConfig:
    """A network small enough for a few CPU steps in well under a second."""
    base = dict(width=2, tile=188, iterations=6, checkpoint_every=3, lr=0.01, device="cpu", seed=3)
    base.update(changes)
    return TrainConfig(**base)


def synthetic_data(n: int = 3, shape=(200, 230)):
    """Blob images with matching 0/1 targets and positive weight maps."""
    rng = np.random.default_rng(42)
    images, targets, weights = [], [], []
    for _ in range(n):
        target = (rng.random(shape) > 0.6).astype(np.uint8)
        images.append((80 + 100 * target + rng.integers(0, 40, shape)).astype(np.uint8))
        targets.append(target)
        weights.append((1.0 + rng.random(shape)).astype(np.float32))
    return images, targets, weights


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"parameter {name} differs"


@pytest.fixture
def data():
    return synthetic_data()


# --------------------------------------------------------------------------- #
# Loss and schedule
# --------------------------------------------------------------------------- #
def slow_weighted_cross_entropy(logits: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    """Eq. 1 pixel by pixel: -w(x) log softmax(a(x))_{l(x)}, averaged over all pixels."""
    n, c, h, w = logits.shape
    total = 0.0
    for b in range(n):
        for y in range(h):
            for x in range(w):
                a = logits[b, :, y, x].astype(np.float64)
                p = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
                total += -weight[b, y, x] * np.log(p[target[b, y, x]])
    return total / (n * h * w)


def test_weighted_cross_entropy_matches_pixelwise_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (2, 2, 5, 7)).astype(np.float32)
    target = rng.integers(0, 2, (2, 5, 7))
    weight = rng.uniform(0, 11, (2, 5, 7)).astype(np.float32)
    got = weighted_cross_entropy(torch.from_numpy(logits), torch.from_numpy(target), torch.from_numpy(weight))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(slow_weighted_cross_entropy(logits, target, weight), rel=1e-5)


def test_weighted_cross_entropy_zero_weight_ignores_pixels():
    logits = torch.tensor([[[[5.0, -5.0]], [[-5.0, 5.0]]]])  # (1, 2, 1, 2): pixel 0 -> class 0, 1 -> 1
    target = torch.tensor([[[1, 1]]])  # pixel 0 is badly wrong
    ignore_wrong = weighted_cross_entropy(logits, target, torch.tensor([[[0.0, 1.0]]]))
    count_wrong = weighted_cross_entropy(logits, target, torch.tensor([[[1.0, 1.0]]]))
    assert ignore_wrong.item() < 1e-3 < count_wrong.item()


def test_learning_rate_schedules():
    constant = tiny_config(lr=0.02, iterations=100)
    poly = tiny_config(lr=0.02, iterations=100, schedule="poly")
    cosine = tiny_config(lr=0.02, iterations=100, schedule="cosine")
    assert learning_rate(constant, 0) == learning_rate(constant, 99) == 0.02
    assert learning_rate(poly, 0) == pytest.approx(0.02)
    assert learning_rate(poly, 50) == pytest.approx(0.02 * 0.5**0.9)
    assert learning_rate(poly, 99) < learning_rate(poly, 98) < learning_rate(poly, 50)
    assert learning_rate(cosine, 0) == pytest.approx(0.02)
    assert learning_rate(cosine, 50) == pytest.approx(0.01)
    assert learning_rate(cosine, 99) < learning_rate(cosine, 75) == pytest.approx(0.02 * (1 + np.cos(0.75 * np.pi)) / 2)


def test_linear_warmup_multiplies_the_schedule():
    warm = tiny_config(lr=0.02, iterations=100, warmup=10)
    assert [learning_rate(warm, i) for i in (0, 4, 9, 10, 99)] == pytest.approx([0.002, 0.01, 0.02, 0.02, 0.02])
    warm_poly = tiny_config(lr=0.02, iterations=100, warmup=10, schedule="poly")
    assert learning_rate(warm_poly, 4) == pytest.approx(0.5 * 0.02 * (1 - 4 / 100) ** 0.9)


def test_config_to_dict_is_plain_data():
    d = tiny_config().to_dict()
    assert d["width"] == 2 and d["momentum"] == 0.99 and d["tile"] == 188
    assert d["batch"] == 1 and d["optimizer"] == "sgd" and d["warmup"] == 0
    assert isinstance(d["augment"], dict) and "enabled" in d["augment"]
    assert "log_every" not in d  # removed on purpose


def test_config_defaults_and_is_frozen():
    config = TrainConfig()
    assert config.lr == 0.001 and config.schedule == "constant" and config.optimizer == "sgd" and config.batch == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 0.1
    assert dataclasses.replace(config, lr=0.1).lr == 0.1 and config.lr == 0.001
    with pytest.raises(TypeError, match="log_every"):  # removed on purpose
        TrainConfig(log_every=10)
    assert not hasattr(train_module, "DEFAULT_LR")


# --------------------------------------------------------------------------- #
# Determinism and resume
# --------------------------------------------------------------------------- #
def test_seeded_run_is_deterministic_and_seed_matters(data):
    a = train(*data, tiny_config(iterations=3), progress=False)
    b = train(*data, tiny_config(iterations=3), progress=False)
    c = train(*data, tiny_config(iterations=3, seed=4), progress=False)
    assert_same_weights(state_of(a.model), state_of(b.model))
    assert [h[1] for h in a.history] == [h[1] for h in b.history]
    assert not torch.equal(state_of(a.model)["conv_d0a_b.weight"], state_of(c.model)["conv_d0a_b.weight"])


def test_training_reuses_freed_buffers_with_the_same_arithmetic(data, monkeypatch):
    import unetlib.runtime as runtime

    depths = []
    original_forward = UNet.forward

    def forward(self, x):  # what the runtime's reuse block says at every step
        depths.append(runtime._reuse_depth)
        return original_forward(self, x)

    monkeypatch.setattr(UNet, "forward", forward)
    reused = train(*data, tiny_config(iterations=3), progress=False)
    if runtime._glibc() is not None:
        assert depths == [1, 1, 1]
    monkeypatch.setattr(runtime, "_glibc", lambda: None)  # glibc's own handling throughout
    plain = train(*data, tiny_config(iterations=3), progress=False)
    assert_same_weights(state_of(reused.model), state_of(plain.model))
    assert [h[1] for h in reused.history] == [h[1] for h in plain.history]


def test_resume_is_bit_identical(data, tmp_path):
    straight = train(*data, tiny_config(iterations=6), progress=False)
    first = train(*data, tiny_config(iterations=3), checkpoint_dir=tmp_path, progress=False)
    assert load_checkpoint(first.checkpoint)["iteration"] == 3
    resumed = train(*data, tiny_config(iterations=6), checkpoint_dir=tmp_path, progress=False)
    assert_same_weights(state_of(straight.model), state_of(resumed.model))
    assert [h[:2] for h in resumed.history] == [h[:2] for h in straight.history]
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["iteration"] == 6 and len(saved["history"]) == 6
    assert_same_weights(state_of(straight.model), saved["model_state"])


def test_thread_counts_recorded_across_resumes(data, tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        first = train(*data, tiny_config(iterations=2), checkpoint_dir=tmp_path, progress=False)
        torch.set_num_threads(2)
        resumed = train(*data, tiny_config(iterations=3), checkpoint_dir=tmp_path, progress=False)
        reused = train(*data, tiny_config(iterations=3), checkpoint_dir=tmp_path, progress=False)
    finally:
        torch.set_num_threads(before)
    assert first.threads == (1,) and load_checkpoint(first.checkpoint)["threads"] == [1, 2]
    assert resumed.threads == (1, 2)
    assert reused.threads == (1, 2)  # complete: nothing ran now, the recorded counts stay


def test_no_resume_starts_afresh(data, tmp_path):
    train(*data, tiny_config(iterations=3), checkpoint_dir=tmp_path, progress=False)
    again = train(*data, tiny_config(iterations=2), checkpoint_dir=tmp_path, resume=False, progress=False)
    assert [h[0] for h in again.history] == [1, 2]
    assert load_checkpoint(tmp_path / "last.pt")["iteration"] == 2


def test_keyboard_interrupt_saves_last_completed_iteration(data, tmp_path, monkeypatch):
    straight = train(*data, tiny_config(iterations=6), progress=False)
    real, calls = train_module.augmented_tile, []

    def interrupted_at_tile_4(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # tile of iteration index 4: iterations 1..4 are complete
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "augmented_tile", interrupted_at_tile_4)
    with pytest.raises(Interrupted) as stop:
        train(*data, tiny_config(iterations=6, checkpoint_every=100), checkpoint_dir=tmp_path, progress=False)
    assert isinstance(stop.value, KeyboardInterrupt) and stop.value.signum == signal.SIGINT
    assert load_checkpoint(tmp_path / "last.pt")["iteration"] == 4
    monkeypatch.setattr(train_module, "augmented_tile", real)
    resumed = train(*data, tiny_config(iterations=6, checkpoint_every=100), checkpoint_dir=tmp_path, progress=False)
    assert_same_weights(state_of(straight.model), state_of(resumed.model))


def test_sigterm_finishes_the_step_saves_and_raises_interrupted(data, tmp_path, monkeypatch):
    straight = train(*data, tiny_config(iterations=6), progress=False)
    real, calls = train_module.weighted_cross_entropy, []
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def sigterm_during_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGTERM)  # deferred by train until this step is complete
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "weighted_cross_entropy", sigterm_during_step_3)
    with pytest.raises(Interrupted) as stop:
        train(*data, tiny_config(iterations=6, checkpoint_every=100), checkpoint_dir=tmp_path, progress=False)
    assert stop.value.signum == signal.SIGTERM
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["iteration"] == 3 and len(saved["history"]) == 3
    assert all(isinstance(h, list) for h in saved["history"])  # plain data in the file
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
    monkeypatch.setattr(train_module, "weighted_cross_entropy", real)
    resumed = train(*data, tiny_config(iterations=6, checkpoint_every=100), checkpoint_dir=tmp_path, progress=False)
    assert all(isinstance(h, tuple) for h in resumed.history)  # tuples in memory
    assert_same_weights(state_of(straight.model), state_of(resumed.model))


def test_batch_of_tiles_per_step(data, monkeypatch):
    real, shapes = train_module._sample_tiles, []

    def recording(data_, config, iteration):
        batch = real(data_, config, iteration)
        shapes.append(tuple(batch[0].shape))
        return batch

    monkeypatch.setattr(train_module, "_sample_tiles", recording)
    result = train(*data, tiny_config(iterations=2, batch=3), progress=False)
    assert shapes == [(3, 1, 188, 188)] * 2 and len(result.history) == 2
    # the tiles of an iteration depend only on the seed and the iteration
    first = real(train_module._check_training_data(*data), tiny_config(batch=3), 1)
    again = real(train_module._check_training_data(*data), tiny_config(batch=3), 1)
    for a, b in zip(first, again):
        assert torch.equal(a, b)


def test_adam_optimizer_trains_and_differs_from_sgd(data):
    sgd = train(*data, tiny_config(iterations=2), progress=False)
    adam = train(*data, tiny_config(iterations=2, optimizer="adam", lr=0.001), progress=False)
    assert all(np.isfinite(h[1]) for h in adam.history)
    assert not torch.equal(state_of(sgd.model)["conv_d0a_b.weight"], state_of(adam.model)["conv_d0a_b.weight"])


def test_float_images_are_used_as_given_integer_images_scaled(data):
    images, targets, weights = data
    as_uint8 = train(images, targets, weights, tiny_config(iterations=2), progress=False)
    scaled = [im.astype(np.float32) / 255 for im in images]
    as_float = train(scaled, targets, weights, tiny_config(iterations=2), progress=False)
    unscaled = train([im.astype(np.float32) for im in images], targets, weights, tiny_config(iterations=2),
                     progress=False)
    assert [h[1] for h in as_uint8.history] == pytest.approx([h[1] for h in as_float.history], rel=1e-5)
    assert [h[1] for h in unscaled.history] != pytest.approx([h[1] for h in as_float.history], rel=1e-3)


# --------------------------------------------------------------------------- #
# Failures
# --------------------------------------------------------------------------- #
def test_nan_loss_stops_and_keeps_last_good_checkpoint(data, tmp_path, monkeypatch):
    real, calls = train_module.augmented_tile, []

    def nan_weights_from_tile_5(*args, **kwargs):
        x, y, w = real(*args, **kwargs)
        calls.append(1)
        return (x, y, torch.full_like(w, float("nan"))) if len(calls) >= 5 else (x, y, w)

    monkeypatch.setattr(train_module, "augmented_tile", nan_weights_from_tile_5)
    with pytest.raises(UnetlibError, match="iteration 5"):
        train(*data, tiny_config(iterations=8, checkpoint_every=2), checkpoint_dir=tmp_path, progress=False)
    kept = load_checkpoint(tmp_path / "last.pt")
    assert kept["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in kept["model_state"].values())
    monkeypatch.setattr(train_module, "augmented_tile", real)
    good = train(*data, tiny_config(iterations=4), progress=False)
    assert_same_weights(state_of(good.model), kept["model_state"])


def test_checkpoint_with_other_model_config_is_refused(data, tmp_path):
    train(*data, tiny_config(iterations=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(UnetlibError, match="no-resume"):
        train(*data, tiny_config(iterations=2, width=4), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(UnetlibError, match="lr"):
        train(*data, tiny_config(iterations=2, lr=0.5), checkpoint_dir=tmp_path, progress=False)
    fresh = train(*data, tiny_config(iterations=1, width=4), checkpoint_dir=tmp_path, resume=False, progress=False)
    assert fresh.model.width == 4


class _NotPlainData:
    pass


def test_checkpoint_is_plain_data_with_a_checked_weights_digest(tmp_path):
    from unetlib.checkpoint import FORMAT, load_model, save_checkpoint, weights_digest

    model = UNet(width=2)
    path = save_checkpoint(tmp_path / "m.pt", model, iteration=3, metadata={"note": "x"})
    payload = load_checkpoint(path)
    assert payload["format"] == FORMAT == "unetlib-checkpoint-v2" and payload["iteration"] == 3
    assert payload["weights_sha256"] == weights_digest(payload["model_state"])
    assert_same_weights(state_of(load_model(path)), state_of(model))
    payload["model_state"]["conv_d0a_b.weight"].view(-1)[0] += 1.0  # one changed weight
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(UnetlibError, match="corrupt"):
        load_checkpoint(tmp_path / "tampered.pt")
    torch.save({**load_checkpoint(path), "extra": _NotPlainData()}, tmp_path / "object.pt")
    with pytest.raises(UnetlibError, match="cannot be read safely"):
        load_checkpoint(tmp_path / "object.pt")
    torch.save({**load_checkpoint(path), "format": "unetlib-checkpoint-v1"}, tmp_path / "old.pt")
    with pytest.raises(UnetlibError, match="not a unetlib checkpoint"):
        load_checkpoint(tmp_path / "old.pt")


def _bad(case: str, data):
    images, targets, weights = (list(x) for x in data)
    if case == "empty":
        return [], [], []
    if case == "lengths":
        return images, targets[:2], weights
    if case == "shape":
        targets[1] = targets[1][:, :-1]
        return images, targets, weights
    if case == "float targets":
        targets[0] = targets[0].astype(np.float32)
        return images, targets, weights
    if case == "labels 0/255":
        targets[0] = targets[0] * 255
        return images, targets, weights
    if case == "nan weights":
        weights[2] = weights[2].copy()
        weights[2][5, 5] = np.nan
        return images, targets, weights
    if case == "3-D image":
        images[0] = np.stack([images[0]] * 3, axis=-1)
        return images, targets, weights
    if case == "one array":
        return images[0], targets[0], weights[0]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "empty"),
        ("lengths", "one entry per image"),
        ("shape", "pixel for pixel"),
        ("float targets", "integer class labels"),
        ("labels 0/255", "only 0"),
        ("nan weights", "finite"),
        ("3-D image", "2-D"),
        ("one array", "list"),
    ],
)
def test_bad_training_data_is_refused(case, message, data):
    with pytest.raises(ValueError, match=message):
        train(*_bad(case, data), tiny_config(iterations=1), progress=False)


@pytest.mark.parametrize(
    "changes, message",
    [({"tile": 500}, "16k"), ({"iterations": -1}, "iterations"), ({"lr": 0}, "lr"),
     ({"momentum": 1.0}, "momentum"), ({"schedule": "step"}, "schedule"), ({"optimizer": "rmsprop"}, "optimizer"),
     ({"batch": 0}, "batch"), ({"warmup": -1}, "warmup")],
)
def test_bad_config_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**changes)


def test_given_model_must_match_config(data):
    with pytest.raises(ValueError, match="width"):
        train(*data, tiny_config(iterations=1), model=UNet(width=4, dropout=0.5), progress=False)


def test_image_smaller_than_a_tile_trains(data):
    images, targets, weights = synthetic_data(n=2, shape=(60, 90))
    result = train(images, targets, weights, tiny_config(iterations=2), progress=False)
    assert len(result.history) == 2 and all(np.isfinite(h[1]) for h in result.history)


def test_parse_slices():
    assert parse_slices("0-3", 30) == [0, 1, 2, 3]
    assert parse_slices("0-1,28-29", 30) == [0, 1, 28, 29]
    assert parse_slices("7", 30) == [7]
    for bad in ("3-1", "0-30", "a-b"):
        with pytest.raises(ValueError, match="slices"):
            parse_slices(bad, 30)


def _cache_masks():
    masks = [np.zeros((40, 50), np.int32), np.zeros((40, 50), np.int32)]
    masks[0][5:15, 5:20] = 1
    masks[0][17:30, 5:20] = 2
    masks[1][10:30, 10:40] = 7
    images = [np.full((40, 50), 200, np.uint8), np.full((40, 50), 100, np.uint8)]
    return images, masks


def test_training_data_caches_targets_to_disk(tmp_path):
    images, masks = _cache_masks()
    recipe = Recipe(dataset="isbi2012")
    cached = training_data(recipe, images, masks, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    again = training_data(recipe, images, masks, cache_dir=tmp_path)
    direct = training_data(recipe, images, masks)
    for a, b, c in zip(cached.targets + cached.weights, again.targets + again.weights,
                       direct.targets + direct.weights):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    targets, weights = cached.targets, cached.weights
    assert targets[0][10, 10] == 1 and targets[0][0, 0] == 0
    assert weights[0][16, 10] > weights[0][2, 40]  # the gap between two touching cells weighs more
    np.testing.assert_allclose(cached.inputs[0], 200 / 255, rtol=1e-6)  # the recipe's "unit" scaling
    other = training_data(recipe.replace(w0=5.0), images, masks, cache_dir=tmp_path)  # another key
    assert len(list(tmp_path.glob("*.npz"))) == 4
    assert other.weights[0][16, 10] < weights[0][16, 10]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong shape"])
def test_corrupt_cache_entry_is_recomputed(tmp_path, damage):
    images, masks = _cache_masks()
    recipe = Recipe(dataset="isbi2012")
    direct = training_data(recipe, images, masks)
    training_data(recipe, images, masks, cache_dir=tmp_path)
    victim = sorted(tmp_path.glob("*.npz"))[0]
    if damage == "garbage":
        victim.write_bytes(b"not an npz file at all")
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "empty":
        victim.write_bytes(b"")
    else:
        np.savez(victim, target=np.zeros((3, 3), np.uint8), weight=np.ones((3, 3), np.float32))
    recomputed = training_data(recipe, images, masks, cache_dir=tmp_path)
    for a, b in zip(recomputed.targets + recomputed.weights, direct.targets + direct.weights):
        np.testing.assert_array_equal(a, b)
    with np.load(victim) as repaired:  # the entry was replaced by a good one
        assert repaired["weight"].shape == (40, 50)


# --------------------------------------------------------------------------- #
# Real data
# --------------------------------------------------------------------------- #
def _isbi(data_root):
    import tifffile

    images = tifffile.imread(data_root / "isbi2012" / "train-volume.tif")
    labels = tifffile.imread(data_root / "isbi2012" / "train-labels.tif")
    return images, labels


def _cell_probability(model: UNet, image: np.ndarray) -> np.ndarray:
    """P(cell) for a 512 x 512 slice: one valid forward on a 700 x 700 mirror-padded input."""
    pad = (700 - image.shape[0]) // 2
    x = np.pad(image.astype(np.float32) / 255.0, pad, mode="reflect")
    with torch.no_grad():
        logits = model.cpu().eval()(torch.from_numpy(x)[None, None])
    crop = (logits.shape[-1] - image.shape[0]) // 2
    return torch.softmax(logits, 1)[0, 1, crop : crop + image.shape[0], crop : crop + image.shape[1]].numpy()


def _roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random cell pixel scores above a random membrane pixel (ranks; ties are rare)."""
    ranks = np.argsort(np.argsort(score.ravel())).astype(np.float64) + 1
    positive = positive.ravel()
    n_pos, n_neg = positive.sum(), positive.size - positive.sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_roc_auc_helper():
    assert _roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])) == 1.0
    assert _roc_auc(np.array([0.9, 0.2, 0.8, 0.1]), np.array([False, True, True, False])) == 0.5


def test_short_training_on_isbi_learns(data_root):
    """250 steps of width 8 (no augmentation, no dropout: the quickest learner) on 6 slices.

    Adam at 1e-3, the optimiser of the kit's short (cpu/gpu) profiles: with the
    paper's SGD (momentum 0.99, lr 0.002, as this test used before the optimizer
    option existed) the loss does not fall within 250 steps on this machine
    (the same losses before and after the refactor).

    The class-balanced, border-weighted loss of the paper pulls the argmax
    towards membrane early in training, so the held-out check uses what the
    network ranks: the ROC AUC of P(cell) (0.5 for any constant predictor) and
    the pixel error when the membrane fraction is fixed to the true one
    (a random ranking would score 2 f (1 - f), about 0.3, above the trivial f).
    """
    from unetlib.augment import AugmentParams
    from unetlib.weights import instances_from_binary

    images, labels = _isbi(data_root)
    train_ids, held_out = [0, 4, 8, 12, 16, 20], [27, 29]
    masks = [instances_from_binary(labels[i]) for i in train_ids]
    data = training_data(Recipe(dataset="isbi2012"), [images[i] for i in train_ids], masks)  # uint8 / 255
    config = TrainConfig(width=8, tile=252, iterations=250, optimizer="adam", lr=0.001, dropout=0.0,
                         augment=AugmentParams(enabled=False), device="cpu", seed=0, checkpoint_every=1000)
    result = train(data.inputs, data.targets, data.weights, config, progress=False)
    losses = np.array([h[1] for h in result.history])
    assert losses[-30:].mean() < 0.85 * losses[:10].mean()
    for k in held_out:
        cell = labels[k] > 0
        p_cell = _cell_probability(result.model, images[k])
        trivial_error = 1.0 - cell.mean()  # "cell" everywhere: wrong on every membrane pixel
        error_at_prior = np.mean((p_cell > np.quantile(p_cell, trivial_error)) != cell)
        assert _roc_auc(p_cell, cell) > 0.8
        assert error_at_prior < trivial_error, f"slice {k}: {error_at_prior:.3f} vs {trivial_error:.3f}"


def test_cli_trains_isbi_and_writes_checkpoint(data_root, tmp_path, capsys):
    from unetlib.cli import main

    out = tmp_path / "run"
    argv = ["train", "isbi2012", "--slices", "0-1", "--iterations", "2", "--width", "2", "--tile", "188",
            "--out", str(out), "--data", str(data_root), "--checkpoint-every", "1"]
    assert main(argv) == 0
    saved = load_checkpoint(out / "last.pt")
    assert saved["iteration"] == 2 and saved["model_config"]["width"] == 2
    recipe = Recipe.from_dict(saved["metadata"]["recipe"])  # the cpu profile, changed only by the options
    assert recipe.profile == "cpu" and recipe.dataset == "isbi2012" and recipe.normalize == "unit"
    assert (recipe.train.iterations, recipe.train.width, recipe.train.tile) == (2, 2, 188)
    assert recipe.train.optimizer == "adam"
    assert "wrote" in capsys.readouterr().out
    assert main(argv[:-2] + ["--checkpoint-every", "1", "--width", "4"]) == 2  # resume with another width
