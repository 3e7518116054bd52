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
