"""The recipe: presets, round trips, validation, and the recipe travelling with the network."""

import json

import numpy as np
import pytest
import torch

from unetlib import protocols, trainset
from unetlib.checkpoint import load_checkpoint
from unetlib.cli import main
from unetlib.errors import UnetlibError
from unetlib.recipe import PROFILES, WHY, Recipe, preset


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("dataset", ["isbi2012", "PhC-C2DH-U373", "DIC-C2DH-HeLa"])
def test_every_preset_is_valid_and_round_trips_through_json(dataset, profile):
    recipe = preset(dataset, profile)
    assert recipe.dataset == dataset and recipe.profile == profile
    assert Recipe.from_dict(json.loads(recipe.to_json())) == recipe


def test_the_paper_profile_keeps_the_papers_training():
    for dataset in ("isbi2012", "PhC-C2DH-U373", "DIC-C2DH-HeLa"):
        t = preset(dataset, "paper").train
        assert (t.width, t.tile, t.batch, t.optimizer, t.momentum, t.schedule) == (64, 572, 1, "sgd", 0.99, "constant")
        assert t.augment.elastic_points == 3 and t.augment.elastic_sigma == 10.0
        assert t.augment.scale == 0.0  # the paper names no zoom
        assert preset(dataset, "paper").w0 == 10.0 and preset(dataset, "paper").sigma == 5.0
    # test-time averaging: the paper's 8 symmetries on EM, the release's 4 flips on the cells
    assert [preset(d, "paper").tta for d in ("isbi2012", "PhC-C2DH-U373", "DIC-C2DH-HeLa")] == ["d4", "flips", "flips"]


def test_the_cpu_recipe_and_its_longer_runs_average_hela_over_the_8_symmetries():
    assert {p: preset("DIC-C2DH-HeLa", p).tta for p in ("smoke", "cpu", "overnight", "gpu", "paper")} == {
        "smoke": "flips", "cpu": "d4", "overnight": "d4", "gpu": "d4", "paper": "flips"}


def test_the_gpu_profile_trains_the_budget_studys_point_on_isbi():
    """The gpu profile's ISBI network is the budget study's w16-20000 point (its prediction is that point's)."""
    gpu, point = preset("isbi2012", "gpu"), preset("isbi2012", "cpu").replace(**{"train.iterations": 20000})
    assert not gpu.differs_from(point)
    assert not gpu.differs_from(preset("isbi2012", "overnight"))


def test_cell_presets_switch_grey_values_off_and_the_em_preset_keeps_them():
    for dataset in ("PhC-C2DH-U373", "DIC-C2DH-HeLa"):
        a = preset(dataset, "cpu").train.augment
        assert a.brightness == a.contrast == a.gamma == 0.0
    assert preset("isbi2012", "cpu").train.augment.brightness > 0


def test_every_choice_shown_has_a_reason():
    for dataset in ("isbi2012", "PhC-C2DH-U373", "DIC-C2DH-HeLa"):
        rows = preset(dataset, "cpu").choices()
        assert {name for name, _, _ in rows} == set(WHY)
        assert all(why for _, _, why in rows)


def test_replace_reaches_nested_fields_and_refuses_unknown_ones():
    r = preset("DIC-C2DH-HeLa", "cpu")
    changed = r.replace(**{"train.lr": 0.01, "train.augment.rotation": False}, tta="none")
    assert changed.train.lr == 0.01 and not changed.train.augment.rotation and changed.tta == "none"
    assert r.train.lr == 0.001  # frozen: the original is untouched
    for bad in ({"train.lrr": 1}, {"ttta": "none"}, {"normalize.x": 1}, {"train.augment.spin": 1}):
        with pytest.raises(UnetlibError, match="unknown"):
            r.replace(**bad)


def test_a_threshold_given_by_hand_is_used_not_tuned():
    r = preset("PhC-C2DH-U373", "cpu")
    assert r.tune_postprocessing
    assert not r.replace(threshold=0.6).tune_postprocessing
    assert not r.replace(min_size=50).tune_postprocessing
    assert r.replace(threshold=0.6, tune_postprocessing=True).tune_postprocessing


@pytest.mark.parametrize("changes, message", [
    ({"normalize": "auto"}, "normalize"),
    ({"tta": "rotations"}, "tta"),
    ({"threshold": 1.0}, "threshold"),
    ({"threshold": float("nan")}, "threshold"),
    ({"min_size": -1}, "min_size"),
    ({"predict_tile": 500}, "508"),
    ({"class_weights": "balance"}, "class_weights"),
    ({"class_weights": (1.0, -2.0)}, "class weights"),
    ({"w0": -1.0}, "w0"),
    ({"train.seed": -1}, "seed"),
    ({"train.tile": 500}, "508"),
])
def test_bad_values_are_refused_when_the_recipe_is_made(changes, message):
    with pytest.raises(UnetlibError, match=message):
        preset("PhC-C2DH-U373", "cpu").replace(**changes)


def test_em_recipe_refuses_cell_only_fields():
    with pytest.raises(UnetlibError, match="Cell Tracking Challenge"):
        preset("isbi2012", "cpu").replace(ignore_unannotated=True)


def test_from_dict_refuses_malformed_data():
    good = preset("isbi2012", "smoke").to_dict()
    for bad in ([], {**good, "colour": 1}, {**good, "train": {**good["train"], "speed": 2}}):
        with pytest.raises(UnetlibError):
            Recipe.from_dict(bad)


def _blobs(n=2, shape=(200, 200), seed=0):
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(n):
        mask = np.zeros(shape, np.int32)
        for k in range(1, 6):
            y, x = rng.integers(20, shape[0] - 20, 2)
            mask[y - 12:y + 12, x - 12:x + 12] = k
        images.append((60 + 120 * (mask > 0) + rng.integers(0, 30, shape)).astype(np.uint8))
        masks.append(mask)
    return images, masks


def test_checkpoint_resumes_only_with_the_same_recipe_and_training_items(tmp_path):
    images, masks = _blobs()
    recipe = preset("PhC-C2DH-U373", "smoke").replace(**{"train.iterations": 2})
    data = trainset.training_data(recipe, images, masks)
    trainset.train_network(recipe, data, tmp_path, progress=False, trained_on={"frames": [0, 1]})
    assert load_checkpoint(tmp_path / "last.pt")["metadata"]["recipe"] == recipe.to_dict()
    again = trainset.train_network(recipe, data, tmp_path, progress=False, trained_on={"frames": [0, 1]})
    assert len(again.history) == 2  # complete: reused, not retrained
    with pytest.raises(UnetlibError, match="trained_on"):
        trainset.train_network(recipe, data, tmp_path, progress=False, trained_on={"frames": [0, 2]})
    other = recipe.replace(w0=5.0)
    with pytest.raises(UnetlibError, match="w0"):
        trainset.train_network(other, trainset.training_data(other, images, masks), tmp_path, progress=False,
                                trained_on={"frames": [0, 1]})
    hela = Recipe.from_dict({**recipe.to_dict(), "dataset": "DIC-C2DH-HeLa"})
    with pytest.raises(UnetlibError, match="dataset"):
        trainset.train_network(hela, data, tmp_path, progress=False, trained_on={"frames": [0, 1]})


def test_tuned_postprocessing_travels_with_the_checkpoint_to_predict(tmp_path, data_root):
    recipe = preset("PhC-C2DH-U373", "smoke").replace(**{"train.iterations": 3})
    result = protocols.ctc_direction(recipe, "01->02", tmp_path, root=data_root, progress=False)
    stored = Recipe.from_dict(load_checkpoint(tmp_path / result.checkpoint)["metadata"]["recipe"])
    assert stored.tune_postprocessing and (stored.threshold, stored.min_size) == (result.threshold, result.min_size)
    assert result.recipe == stored.to_dict() and result.postprocessing == "tuned on the training sequence"
    assert result.train_threads == [torch.get_num_threads()]  # the bits depend on it: recorded with the result
    with np.load(tmp_path / result.example) as ex:
        image, pred = ex["image"], ex["pred"]
    import tifffile

    tifffile.imwrite(tmp_path / "frame.tif", image)
    assert main(["predict", str(tmp_path / result.checkpoint), str(tmp_path / "frame.tif"),
                 "--instances", str(tmp_path / "instances.tif"), "--device", "cpu"]) == 0
    assert np.array_equal(tifffile.imread(tmp_path / "instances.tif"), pred)


def test_differs_from_is_the_one_answer_to_same_network():
    base = preset("isbi2012", "cpu")
    applied = base.replace(tta="none", predict_tile=700, **{"train.device": "cpu", "train.checkpoint_every": 7})
    assert base.differs_from(applied) == {}  # how a network is applied or where it ran: the same network
    other = base.replace(w0=5.0, **{"train.lr": 0.002, "train.augment.scale": 0.1})
    assert other.differs_from(base) == {"w0": (10.0, 5.0), "train.lr": (0.001, 0.002),
                                        "train.augment.scale": (0.0, 0.1)}
    assert set(applied.differs_from(base, fields=None)) == {"tta", "predict_tile", "train.device",
                                                            "train.checkpoint_every"}
    assert other.differs_from(base, ignore=("train",)) == {"w0": (10.0, 5.0)}


def test_a_resumed_checkpoint_says_so_in_one_line(tmp_path, capsys):
    images, masks = _blobs()
    recipe = preset("PhC-C2DH-U373", "smoke").replace(**{"train.iterations": 1})
    data = trainset.training_data(recipe, images, masks)
    trainset.train_network(recipe, data, tmp_path, progress=False, trained_on={"frames": [0, 1]})
    longer = recipe.replace(**{"train.iterations": 2})  # a constant learning rate: the run continues
    trainset.train_network(longer, data, tmp_path, progress=False, trained_on={"frames": [0, 1]})
    trainset.train_network(longer, data, tmp_path, progress=False, trained_on={"frames": [0, 1]})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(str(tmp_path))[0] for line in lines if "last.pt" in line] == ["resuming ", "reusing the trained network "]
    assert "at iteration 1 of 2 (smoke recipe of PhC-C2DH-U373)" in lines[0] if lines else False
    with pytest.raises(UnetlibError, match="already holds 2 iterations, more than the 1 asked for"):
        trainset.train_network(recipe, data, tmp_path, progress=False, trained_on={"frames": [0, 1]})
    poly = longer.replace(**{"train.schedule": "poly", "train.iterations": 3})
    with pytest.raises(UnetlibError, match="holds another network"):
        trainset.check_resumable(tmp_path / "last.pt", poly)
