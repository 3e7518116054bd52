"""Eq. 2 weight maps and the separation target, against slow obvious references."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unetlib.errors import UnetlibError
from unetlib.weights import (
    class_weight_map,
    instances_from_binary,
    separation_target,
    training_target,
    weight_map,
)

REAL_MASKS = [
    "DIC-C2DH-HeLa/01_GT/SEG/man_seg002.tif",
    "DIC-C2DH-HeLa/02_GT/SEG",  # first file of the folder
    "PhC-C2DH-U373/01_GT/SEG",
]


# --------------------------------------------------------------------------- #
# Slow references
# --------------------------------------------------------------------------- #
def reference_separation(instances):
    """Pixel by pixel: a cell pixel whose 3x3 neighbourhood holds another cell label becomes background."""
    height, width = instances.shape
    target = np.zeros(instances.shape, np.uint8)
    for r in range(height):
        for c in range(width):
            label = instances[r, c]
            if label == 0:
                continue
            window = instances[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
            others = window[(window != 0) & (window != label)]
            target[r, c] = others.size == 0
    return target


def reference_weight_map(instances, target, w0=10.0, sigma=5.0):
    """Balanced w_c by counting, plus the border term from one full-image EDT per cell."""
    cells = np.where(target > 0, instances, 0)
    n = target.size
    n_cell = int((target > 0).sum())
    present = (n_cell > 0) + (n_cell < n)
    w_c = np.where(target > 0, n / (present * max(n_cell, 1)), n / (present * max(n - n_cell, 1)))
    labels = [v for v in np.unique(cells) if v != 0]
    if len(labels) < 2:
        return w_c.astype(np.float32)
    distances = np.stack([ndimage.distance_transform_edt(cells != v) for v in labels])
    distances.sort(axis=0)
    border = w0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))
    return (w_c + np.where(target == 0, border, 0.0)).astype(np.float32)


def touching_squares():
    mask = np.zeros((40, 60), np.int32)
    mask[10:30, 8:30] = 1
    mask[10:30, 30:52] = 2  # shares a vertical edge with cell 1
    return mask


def voronoi_cells(shape=(160, 200), n=30, seed=0):
    """Many cells, most touching their neighbours, some background."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.int32)
    rows, cols = rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)
    seeds[rows, cols] = np.arange(1, n + 1)
    distance, (nr, nc) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    return np.where(distance < 18, seeds[nr, nc], 0).astype(np.int32)


def load_real(data_root, relative):
    path = data_root / relative
    if path.is_dir():
        path = sorted(path.glob("man_seg*.tif"))[0]
    return tifffile.imread(path)


# --------------------------------------------------------------------------- #
# Separation target
# --------------------------------------------------------------------------- #
def test_separation_matches_pixelwise_reference():
    cells = voronoi_cells(shape=(48, 56), n=12, seed=3)
    assert np.array_equal(separation_target(cells), reference_separation(cells))


def test_separation_border_separates_touching_instances():
    instances = touching_squares()
    target = separation_target(instances)
    _, n_components = ndimage.label(target, structure=ndimage.generate_binary_structure(2, 1))
    assert n_components >= 2
    assert target[15, 29] == 0 and target[15, 30] == 0  # both sides of the contact are cut
    assert target[15, 20] == 1 and target[15, 40] == 1
    assert target.dtype == np.uint8 and set(np.unique(target)) == {0, 1}


def test_separation_keeps_isolated_cells_whole():
    mask = np.zeros((20, 20), np.int32)
    mask[2:8, 2:8] = 5
    mask[12:18, 12:18] = 9
    assert np.array_equal(separation_target(mask), (mask > 0).astype(np.uint8))


def test_separation_counts_many_touching_cells():
    cells = voronoi_cells()
    target = separation_target(cells)
    _, n_components = ndimage.label(target, structure=ndimage.generate_binary_structure(2, 1))
    assert n_components >= len(np.unique(cells)) - 1


# --------------------------------------------------------------------------- #
# Instances from binary masks
# --------------------------------------------------------------------------- #
def test_instances_are_four_connected():
    mask = np.zeros((5, 5), np.uint8)
    mask[1, 1] = 255
    mask[2, 2] = 255  # diagonal neighbour: a separate cell under 4-connectivity
    mask[2, 3] = 255
    labels = instances_from_binary(mask)
    assert labels.dtype == np.int32
    assert labels.max() == 2
    assert labels[2, 2] == labels[2, 3] != labels[1, 1]


def test_instances_from_isbi_labels(data_root):
    labels = tifffile.imread(data_root / "isbi2012" / "train-labels.tif", key=0)
    instances = instances_from_binary(labels)
    assert instances.max() > 50  # an EM slice holds many cells
    assert np.array_equal(instances > 0, labels > 0)


# --------------------------------------------------------------------------- #
# Weight map
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("relative", REAL_MASKS)
def test_weight_map_matches_brute_force_on_real_masks(data_root, relative):
    instances = load_real(data_root, relative)
    target, weights = training_target(instances)
    expected = reference_weight_map(instances, target)
    assert len(np.unique(instances)) > 3
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=1e-6, atol=1e-6)


def test_weight_map_matches_brute_force_with_many_cells_and_small_sigma():
    instances = voronoi_cells()
    target = separation_target(instances)
    for sigma in (5.0, 2.0):
        expected = reference_weight_map(instances, target, sigma=sigma)
        np.testing.assert_allclose(weight_map(instances, sigma=sigma), expected, rtol=1e-6, atol=1e-6)


def test_weight_map_is_largest_in_the_gap_between_touching_cells():
    weights = weight_map(touching_squares())
    gap, far = weights[20, 29], weights[2, 2]
    assert gap > far + 5.0  # w0 exp(-(1 + 1)^2 / 50) = 9.2 on top of w_c


def test_fewer_than_two_cells_gives_class_weights_only():
    one = np.zeros((30, 30), np.int32)
    one[5:15, 5:15] = 7
    np.testing.assert_array_equal(weight_map(one), class_weight_map(separation_target(one)))
    np.testing.assert_array_equal(weight_map(np.zeros((30, 30), np.uint16)), np.ones((30, 30), np.float32))


def test_class_weights_none_leaves_border_term_on_ones():
    instances = touching_squares()
    target = separation_target(instances)
    weights = weight_map(instances, class_weights=None)
    assert np.all(weights[target == 1] == 1.0)
    border = reference_weight_map(instances, target) - class_weight_map(target)
    np.testing.assert_allclose(weights - 1.0, border, atol=1e-5)


def test_balanced_class_weights_are_inverse_frequency_with_mean_one():
    target = np.zeros((10, 10), np.uint8)
    target[:2] = 1  # 20 % cells
    w = class_weight_map(target)
    assert w.mean() == pytest.approx(1.0)
    assert w[0, 0] / w[9, 9] == pytest.approx(80 / 20)


def test_explicit_class_weights():
    target = separation_target(touching_squares())
    w = class_weight_map(target, (0.5, 2.0))
    assert set(np.unique(w[target == 1])) == {2.0}
    assert set(np.unique(w[target == 0])) == {0.5}


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((8, 8), np.float32), "integer labels"),
        (np.zeros((8, 8), bool), "instances_from_binary"),
        (np.zeros((2, 8, 8), np.int32), "2-D"),
        (np.full((8, 8), -1, np.int32), "negative"),
    ],
)
def test_bad_masks_are_refused(bad, match):
    with pytest.raises(UnetlibError, match=match):
        weight_map(bad)


def test_bad_parameters_are_refused():
    mask = touching_squares()
    with pytest.raises(ValueError, match="sigma"):
        weight_map(mask, sigma=0)
    with pytest.raises(ValueError, match="balanced"):
        weight_map(mask, class_weights="median")
    with pytest.raises(ValueError, match="pair"):
        weight_map(mask, class_weights=(1.0,))


def test_bool_masks_are_fine_for_binary_helpers():
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    assert instances_from_binary(mask).max() == 1
    assert class_weight_map(mask).mean() == pytest.approx(1.0)
