"""The cell recipes learn: short runs on the real data beat the trivial predictors on the held-out sequence.

The first `cpu` run of the kit trained its cell networks with a recipe under which
they did not learn (DIC-HeLa loss flat near 0.7, PhC-U373 predicting almost
nothing). These tests run the `cpu` recipe of each cell dataset, shortened (width
16, 380² tiles, a few hundred steps, no test-time averaging), train on sequence 01
and check on sequence 02 that the loss fell clearly and that the foreground IoU
beats both trivial predictors: all background (IoU 0) and all cell (IoU = the
fraction of annotated cell pixels).
"""

import numpy as np
import pytest

from unetlib import data, protocols, recipe

pytestmark = pytest.mark.slow


def _short(dataset: str, iterations: int):
    return recipe.preset(dataset, "cpu").replace(
        tta="none", tune_postprocessing=False,
        **{"train.width": 16, "train.tile": 380, "train.iterations": iterations, "train.warmup": 50})


@pytest.mark.parametrize("dataset, iterations, margin", [
    ("PhC-C2DH-U373", 400, 0.40),  # cells are 5 % of the pixels: all-cell IoU 0.05
    ("DIC-C2DH-HeLa", 400, 0.08),  # cells are 52 % of sequence 02: all-cell IoU 0.52
])
def test_short_cell_run_learns(data_root, tmp_path, dataset, iterations, margin):
    result = protocols.ctc_direction(_short(dataset, iterations), "01->02", tmp_path, root=data_root, progress=False)
    loss = np.array([row[1] for row in result.loss_curve])
    test = data.load_ctc(dataset, "02", data_root, tra=False)
    all_cell_iou = float(np.mean(np.concatenate([(m > 0).ravel() for m in test.seg.values()])))
    first, last = loss[:10].mean(), loss[-10:].mean()
    assert last < 0.5 * first, f"the loss did not fall clearly: {first:.3f} -> {last:.3f}"
    assert result.foreground_iou > all_cell_iou + margin, (
        f"held-out foreground IoU {result.foreground_iou:.3f} does not beat the all-cell predictor "
        f"({all_cell_iou:.3f}) by {margin}")
    assert result.SEG > 0.0
