"""The trained model replayed (Segmenter) and resampling: the same pixels in training and inference."""

import numpy as np
import pytest
import tifffile
import torch

from unetlib import trainset
from unetlib.checkpoint import save_checkpoint
from unetlib.cli import main
from unetlib.errors import UnetlibError
from unetlib.inference import Tiling, predict, softmax
from unetlib.model import UNet
from unetlib.postprocess import cell_instances
from unetlib.preprocess import normalize_image, resample, resampled_shape
from unetlib.recipe import preset
from unetlib.segment import Segmenter


def _image(shape=(90, 130), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 255, shape)).astype(np.uint8)


def _model(seed=0):
    torch.manual_seed(seed)
    return UNet(width=4).eval()


def test_labels_are_resampled_by_nearest_neighbour_and_keep_their_ids():
    mask = np.zeros((40, 60), np.int32)
    mask[4:20, 6:30], mask[22:38, 30:58] = 7, 70000
    small = resample(mask, (20, 30), labels=True)
    assert small.dtype == np.int32 and small.shape == (20, 30)
    assert set(np.unique(small)) == {0, 7, 70000}
    assert (small == 7).sum() == pytest.approx((mask == 7).sum() / 4, rel=0.1)
    assert resample(mask, (40, 60), labels=True) is mask  # the same size: untouched


def test_grey_values_are_resampled_bilinearly_and_constant_stays_constant():
    flat = np.full((30, 50), 3.5, np.float32)
    assert np.allclose(resample(flat, (15, 25)), 3.5) and np.allclose(resample(flat, (61, 99)), 3.5)
    ramp = np.tile(np.arange(64, dtype=np.float32), (8, 1))
    doubled = resample(ramp, (8, 128))
    # bilinear with pixel centres aligned: interior output pixel j samples input position (j + 0.5) / 2 - 0.5
    j = np.arange(2, 126)
    assert np.allclose(doubled[0, j], (j + 0.5) / 2 - 0.5, atol=1e-5)
    assert resampled_shape((520, 696), 0.5) == (260, 348) and resampled_shape((3, 3), 0.1) == (1, 1)


def test_at_resample_1_the_segmenter_is_plain_overlap_tile_prediction():
    model, image = _model(), _image()
    recipe = preset("PhC-C2DH-U373", "smoke").replace(tta="flips", normalize="zscore")
    tiling = Tiling(tile=220, progress=False)
    expected = predict(model, image, tta="flips", normalize="zscore", tiling=tiling)[1]
    assert np.array_equal(Segmenter(model, recipe).p_cell(image, tiling=tiling), expected)


def test_at_half_resolution_the_network_sees_the_resampled_image_and_answers_at_full_size():
    model, image = _model(1), _image((100, 140))
    recipe = preset("DIC-C2DH-HeLa", "smoke").replace(resample=0.5, tta="none", normalize="zscore")
    tiling = Tiling(tile=220, progress=False)
    p_cell = Segmenter(model, recipe).p_cell(image, tiling=tiling)
    assert p_cell.shape == image.shape
    # the obvious way, with torch directly
    scaled = torch.from_numpy(normalize_image(image, "zscore"))[None, None]
    small = torch.nn.functional.interpolate(scaled, size=(50, 70), mode="bilinear", antialias=True).numpy()[0, 0]
    logits = predict(model, small, normalize="none", output="logits", tiling=tiling)
    back = torch.nn.functional.interpolate(torch.from_numpy(logits)[None], size=(100, 140), mode="bilinear").numpy()[0]
    assert np.allclose(p_cell, softmax(back)[1], atol=1e-6)
    # a stack gives the same as its images one by one
    stack = np.stack([image, _image((100, 140), seed=3)])
    both = Segmenter(model, recipe).p_cell(stack, tiling=tiling)
    assert np.array_equal(both[0], p_cell)


def test_instances_follow_the_recipe_or_the_values_given():
    p = np.zeros((2, 20, 20), np.float32)
    p[:, 2:6, 2:6], p[:, 10:19, 10:19] = 0.9, 0.7
    seg = Segmenter(_model(), preset("PhC-C2DH-U373", "smoke").replace(threshold=0.8, min_size=0))
    assert seg.instances(p).max() == 1 and np.array_equal(seg.instances(p)[0], cell_instances(p[0], 0.8))
    assert seg.instances(p, threshold=0.5).max() == 2 and seg.instances(p, threshold=0.5, min_size=20).max() == 1


def test_training_data_at_half_resolution(tmp_path):
    mask = np.zeros((80, 120), np.int32)
    mask[10:40, 10:50], mask[10:40, 52:90] = 1, 2  # two cells 2 px apart
    image = (40 + 150 * (mask > 0)).astype(np.uint8)
    recipe = preset("DIC-C2DH-HeLa", "smoke").replace(resample=0.5)
    data = trainset.training_data(recipe, [image], [mask], cache_dir=tmp_path)
    assert data.inputs[0].shape == data.targets[0].shape == data.weights[0].shape == (40, 60)
    assert data.weights[0].max() > 5  # the Eq. 2 border between the cells survives at half resolution
    assert np.allclose(data.inputs[0], resample(normalize_image(image, "zscore"), (40, 60)))


def test_touching_copies_add_frames_with_pasted_neighbours(tmp_path):
    from unetlib.data import touching_pairs

    mask = np.zeros((120, 160), np.int32)
    mask[10:35, 10:40], mask[70:100, 100:140] = 1, 2  # far apart
    image = (40 + 150 * (mask > 0)).astype(np.uint8)
    markers = np.zeros(mask.shape, np.uint16)
    markers[60, 20] = 7  # a cell with a marker but no mask: nothing is pasted there
    recipe = preset("PhC-C2DH-U373", "smoke").replace(touching_copies=2)
    images, masks, marks = trainset.with_touching_copies(recipe, [image], [mask], [markers])
    assert len(images) == len(masks) == len(marks) == 3 and images[0] is image and masks[0] is mask
    assert touching_pairs(masks[:1]) == 0 and all(touching_pairs([m]) >= 1 for m in masks[1:])
    unannotated = trainset._unannotated(mask, markers)
    assert all(np.array_equal(m[unannotated], mask[unannotated]) for m in masks[1:])
    again = trainset.with_touching_copies(recipe, [image], [mask], [markers])
    assert all(np.array_equal(a, b) for a, b in zip(masks, again[1]))  # the recipe's seed fixes the copies
    data = trainset.training_data(recipe, [image], [mask], [markers], cache_dir=tmp_path)
    assert len(data.inputs) == 3 and data.weights[1].max() > data.weights[0].max()  # Eq. 2 weighs the new gap
    with pytest.raises(UnetlibError, match="touching_copies"):
        preset("isbi2012", "smoke").replace(touching_copies=1)
    with pytest.raises(UnetlibError, match="touching_copies"):
        recipe.replace(touching_copies=-1)


def test_touching_copies_keep_off_unannotated_cells_without_ignoring_them():
    mask = np.zeros((120, 160), np.int32)
    mask[10:35, 10:40], mask[70:100, 100:140] = 1, 2
    image = (40 + 150 * (mask > 0)).astype(np.uint8)
    markers = np.zeros(mask.shape, np.uint16)
    markers[50:110, 10:80] = 7  # a large unannotated cell: with ignore_unannotated off it is background
    recipe = preset("PhC-C2DH-U373", "smoke").replace(touching_copies=3, ignore_unannotated=False)
    data = trainset.training_data(recipe, [image], [mask], [markers])
    unannotated = trainset._unannotated(mask, markers)
    assert len(data.inputs) == 4 and all(w[unannotated].min() > 0 for w in data.weights)  # not ignored
    _, masks, _ = trainset.with_touching_copies(recipe, [image], [mask], [markers])
    assert all(not (m[unannotated] > 0).any() for m in masks)  # nothing pasted onto it


def test_checkpoints_from_before_touching_copies_resume(tmp_path):
    from unetlib.checkpoint import load_checkpoint, update_metadata

    images, masks = [_image((120, 120))], [np.pad(np.ones((40, 40), np.int32), 40)]
    recipe = preset("PhC-C2DH-U373", "smoke").replace(**{"train.iterations": 1})
    trainset.train_network(recipe, trainset.training_data(recipe, images, masks), tmp_path, progress=False)
    path = tmp_path / "last.pt"
    metadata = load_checkpoint(path)["metadata"]
    older = {k: v for k, v in metadata["recipe"].items() if k != "touching_copies"}
    identity = {k: v for k, v in older.items() if k not in ("tta", "threshold", "min_size", "profile")}
    update_metadata(path, recipe=older, identity={**identity, "trained_on": None}, trained_on=None)  # as written
    again = trainset.train_network(recipe, trainset.training_data(recipe, images, masks), tmp_path, progress=False)
    assert len(again.history) == 1  # reused, not trained again: the missing field reads as its default
    with pytest.raises(UnetlibError, match="touching_copies"):  # a different network is refused
        other = recipe.replace(touching_copies=1)
        trainset.train_network(other, trainset.training_data(other, images, masks), tmp_path, progress=False)


def test_resample_is_part_of_the_networks_identity(tmp_path):
    images, masks = [_image((120, 120))], [np.pad(np.ones((40, 40), np.int32), 40)]
    recipe = preset("DIC-C2DH-HeLa", "smoke").replace(**{"train.iterations": 1}, resample=1.0)
    trainset.train_network(recipe, trainset.training_data(recipe, images, masks), tmp_path, progress=False)
    half = recipe.replace(resample=0.5)
    with pytest.raises(UnetlibError, match="resample"):
        trainset.train_network(half, trainset.training_data(half, images, masks), tmp_path, progress=False)


def test_predict_command_resamples_as_the_checkpoint_says(tmp_path):
    model, image = _model(2), _image((100, 140))
    recipe = preset("DIC-C2DH-HeLa", "smoke").replace(resample=0.5, tta="none", threshold=0.5, min_size=0)
    save_checkpoint(tmp_path / "net.pt", model, metadata={"recipe": recipe.to_dict()})
    tifffile.imwrite(tmp_path / "image.tif", image)
    assert main(["predict", str(tmp_path / "net.pt"), str(tmp_path / "image.tif"), "--probabilities",
                 str(tmp_path / "p.tif"), "--class", "1", "--device", "cpu", "--no-amp"]) == 0
    expected = Segmenter.load(tmp_path / "net.pt").p_cell(image, tiling=Tiling(amp=False, progress=False))
    assert np.allclose(tifffile.imread(tmp_path / "p.tif"), expected, atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 0.05, 5.0, "half", True])
def test_resample_factors_outside_the_range_are_refused(value):
    with pytest.raises(UnetlibError, match="resample"):
        preset("DIC-C2DH-HeLa", "cpu").replace(resample=value)


def _two_cells_joined(bridge: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """P(cell) of two touching cells whose border the network only lowered to ``bridge``, and their masks."""
    p = np.zeros((24, 44), np.float32)
    p[5:17, 3:20], p[5:17, 22:40] = 0.99, 0.99
    p[5:17, 20:22] = bridge
    truth = np.zeros(p.shape, np.uint16)
    truth[5:17, 3:21], truth[5:17, 21:40] = 1, 2
    return p, truth


def test_split_threshold_separates_touching_cells_along_the_valley():
    p, truth = _two_cells_joined()
    assert cell_instances(p, 0.5).max() == 1  # one merged component
    split = cell_instances(p, 0.5, split_threshold=0.9)
    assert split.max() == 2 and len(np.unique(split[:, :20])) == 2 and len(np.unique(split[:, 22:])) == 2
    assert (split[:, :20][split[:, :20] > 0] != split[:, 22:][split[:, 22:] > 0][0]).all()
    # a component without any core stays whole; background stays background
    p[20:23, 2:6] = 0.6
    labels = cell_instances(p, 0.5, split_threshold=0.9)
    assert labels.max() == 3 and (labels[20:23, 2:6] == 3).all() and (labels[p <= 0.5] == 0).all()
    # without cores above the split threshold, or a split threshold at or below the threshold: plain components
    assert np.array_equal(cell_instances(p, 0.5, split_threshold=0.999), cell_instances(p, 0.5))
    assert np.array_equal(cell_instances(p, 0.5, split_threshold=0.4), cell_instances(p, 0.5))


def test_tuning_finds_the_split_only_when_allowed():
    from unetlib.metrics import ctc_seg
    from unetlib.postprocess import TUNE_SPLITS, tune_postprocessing

    p, truth = _two_cells_joined(bridge=0.95)  # above every threshold of the grid: only a split separates
    threshold, min_size, split = tune_postprocessing(p[None], [truth])
    merged = ctc_seg({0: truth}, {0: cell_instances(p, threshold, min_size)})
    assert split is None and merged.merges() == 1 and merged.seg < 0.6  # one object over both cells
    threshold, min_size, split = tune_postprocessing(p[None], [truth], TUNE_SPLITS)
    assert split is not None and split > threshold
    apart = ctc_seg({0: truth}, {0: cell_instances(p, threshold, min_size, split)})
    assert apart.merges() == 0 and apart.seg > 0.9


def test_the_segmenter_splits_as_its_recipe_says():
    p, _ = _two_cells_joined()
    seg = Segmenter(_model(), preset("DIC-C2DH-HeLa", "smoke").replace(threshold=0.5, min_size=0))
    assert seg.instances(p).max() == 1
    assert seg.with_recipe(split_threshold=0.9).instances(np.stack([p, p])).max() == 2


def test_a_checkpoint_from_before_a_recipe_field_existed_still_resumes(tmp_path):
    from unetlib.checkpoint import load_checkpoint, update_metadata

    images, masks = [_image((120, 120))], [np.pad(np.ones((40, 40), np.int32), 40)]
    recipe = preset("DIC-C2DH-HeLa", "smoke").replace(**{"train.iterations": 2})
    data = trainset.training_data(recipe, images, masks)
    first = trainset.train_network(recipe, data, tmp_path, progress=False)
    payload = load_checkpoint(first.checkpoint)
    stored = {k: v for k, v in payload["metadata"]["recipe"].items() if k != "train_images"}
    update_metadata(first.checkpoint, recipe=stored)  # as written by an earlier version
    again = trainset.train_network(recipe, data, tmp_path, progress=False)
    assert again.history == first.history  # reused, not refused
    other = recipe.replace(train_images=1)
    with pytest.raises(UnetlibError, match="train_images"):
        trainset.train_network(other, data, tmp_path, progress=False)
