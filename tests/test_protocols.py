"""The experiments' data splits: ISBI folds and the both-sequence protocol's held-out blocks."""

import pytest

from unetlib import protocols
from unetlib.errors import UnetlibError

U373 = {"01": [1, 5, 6, 7, 21, 49, 59, 67, 72, 75, 92, 96, 100, 102, 112],
        "02": [10, 17, 19, 20, 22, 26, 35, 36, 41, 49, 51, 52, 59, 74, 77, 85, 92, 106, 112]}


def test_every_annotated_frame_is_held_out_once_and_never_trained_near_a_scored_one():
    held_out = {seq: [] for seq in U373}
    for block in range(3):
        train, held = protocols.block_split(U373, block, blocks=3, gap=5)
        for seq, frames in U373.items():
            assert held[seq] == sorted(held[seq]) and held[seq][-1] - held[seq][0] <= frames[-1] - frames[0]
            assert not set(train[seq]) & set(held[seq])
            assert all(min(abs(t - h) for h in held[seq]) > 5 for t in train[seq])
            # everything else that is far enough is trained on
            assert set(train[seq]) == {t for t in frames if t not in held[seq] and min(abs(t - h) for h in held[seq]) > 5}
            held_out[seq] += held[seq]
    assert held_out == U373  # each frame scored exactly once, blocks of consecutive frames
    sizes = [len(protocols.block_split(U373, b)[1]["02"]) for b in range(3)]
    assert max(sizes) - min(sizes) <= 1


def test_bad_blocks_are_refused():
    with pytest.raises(UnetlibError, match="block 3 does not exist"):
        protocols.block_split(U373, 3, blocks=3)
    with pytest.raises(UnetlibError, match="fewer than 3 blocks"):
        protocols.block_split({"01": [1, 2]}, 0, blocks=3)
    assert protocols.block_index("block2") == 2
    with pytest.raises(UnetlibError, match="not a held-out block"):
        protocols.block_index("block3")


def test_the_held_out_loss_is_the_training_loss_on_other_images():
    import numpy as np
    import torch

    from unetlib.recipe import preset
    from unetlib.train import weighted_cross_entropy
    from unetlib.weights import instances_from_binary, training_target

    rng = np.random.default_rng(0)
    labels = np.full((2, 64, 64), 255, np.uint8)
    labels[:, 20:22, :] = 0  # membranes
    labels[:, :, 40:43] = 0
    logits = torch.from_numpy(rng.normal(size=(2, 2, 64, 64)).astype(np.float32))
    prob = torch.softmax(logits, 1)[:, 1].numpy()
    recipe = preset("isbi2012", "smoke")
    expected = []
    for i in range(2):
        target, weight = training_target(instances_from_binary(labels[i]), w0=recipe.w0, sigma=recipe.sigma,
                                         class_weights=recipe.class_weights)
        expected.append(float(weighted_cross_entropy(logits[i:i + 1], torch.from_numpy(target[None]).long(),
                                                     torch.from_numpy(weight[None]))))
    assert protocols.held_out_loss(prob, labels, recipe) == pytest.approx(np.mean(expected), rel=1e-5)


def test_border_errors_count_the_band_and_the_interior_apart():
    import numpy as np

    cells = np.ones((1, 300, 300), bool)
    prob = np.ones((1, 300, 300))
    prob[0, :10, :] = 0.0  # wrong only at the top edge
    errors = protocols.border_errors(prob, cells, width=92)
    band = 300 * 300 - (300 - 184) ** 2
    assert errors == {"border_error": pytest.approx(10 * 300 / band), "interior_error": 0.0}
