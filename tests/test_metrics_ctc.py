"""Cell Tracking Challenge SEG: hand-worked cases, the folder layout and py-ctcmetrics."""

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unetlib.errors import UnetlibError
from unetlib.metrics.ctc import (
    ctc_seg,
    evaluate_ctc_folder,
    read_ctc_gt,
    read_ctc_results,
    write_ctc_results,
)


def blank(shape=(6, 8)):
    return np.zeros(shape, np.uint16)


def test_perfect_result_scores_one_with_any_label_values():
    gt = blank()
    gt[1:3, 1:4], gt[4:6, 5:8] = 1, 2
    pred = np.where(gt == 1, 700, np.where(gt == 2, 5, 0)).astype(np.uint16)
    r = ctc_seg({0: gt}, {0: pred})
    assert (r.seg, r.n_reference, r.n_matched, r.foreground_iou) == (1.0, 2, 2, 1.0)


def test_exactly_half_coverage_is_not_a_match():
    gt = blank()
    gt[0, 0:4] = 1  # |R| = 4
    pred = blank()
    pred[0, 0:2] = 3  # |R ∩ S| = 2 = 0.5 |R|: strict > fails
    r = ctc_seg([gt], [pred])
    assert r.seg == 0.0 and r.objects[0]["matched_label"] == 0


def test_unmatched_objects_are_told_apart_split_or_under_covered():
    gt = blank()
    gt[0, 0:4] = 1  # split: all 4 px are foreground, in two objects of 2 px
    gt[2, 0:4] = 2  # under-covered: 1 of 4 px found
    gt[4, 0:4] = 3  # missed
    gt[5, 0:4] = 4  # matched
    pred = blank()
    pred[0, 0:2], pred[0, 2:4], pred[2, 0], pred[5, 0:4] = 5, 6, 7, 8
    r = ctc_seg([gt], [pred])
    assert [row["covered"] for row in r.objects] == [1.0, 0.25, 0.0, 1.0]
    assert r.unmatched() == {"unmatched": 3, "split": 1, "under_covered": 2}
    assert r.to_dict()["unmatched"] == r.unmatched()


def test_objects_are_told_apart_by_size():
    gt = blank()
    gt[0, 0:2] = 1  # 2 px, matched exactly: J = 1
    gt[2, 0:4] = 2  # 4 px, missed: J = 0
    gt[4, 0:5] = 3  # 5 px, 3 inside S = 3 px: J = 3 / 5
    pred = blank()
    pred[0, 0:2], pred[4, 0:3] = 5, 6
    r = ctc_seg([gt], [pred])
    assert r.by_size(2) == {"within": {"cells": 1, "matched": 1, "jaccard": 1.0},
                            "larger": {"cells": 2, "matched": 1, "jaccard": pytest.approx(0.3)}}
    assert r.by_size(5)["larger"] == {"cells": 0, "matched": 0, "jaccard": None}


def test_jaccard_uses_the_full_result_object():
    gt = blank()
    gt[0, 0:4] = 1  # |R| = 4
    pred = blank()
    pred[0, 1:4] = 9  # 3 px inside R
    pred[1, 0:5] = 9  # 5 px outside any reference object
    # |R ∩ S| = 3 > 2, |S| = 8: J = 3 / (4 + 8 - 3) = 1/3
    r = ctc_seg([gt], [pred])
    assert r.seg == pytest.approx(1 / 3, abs=1e-15)
    row = r.objects[0]
    assert (row["matched_label"], row["r_size"], row["s_size"], row["intersection"]) == (9, 4, 8, 3)
    # foreground IoU is a different quantity: |fg ∩ fg'| / |fg ∪ fg'| = 3 / (4 + 8 - 3) here
    assert r.foreground_iou == pytest.approx(3 / 9, abs=1e-15)


def test_a_merged_result_object_matches_both_references():
    gt = blank()
    gt[0, 0:4], gt[2, 0:4] = 1, 2
    pred = blank()
    pred[0:3, 0:4] = 1  # 12 px covering both: J = 4/12 each
    assert ctc_seg([gt], [pred]).seg == pytest.approx(1 / 3, abs=1e-15)


def test_seg_pools_objects_over_frames():
    good, bad = blank(), blank()
    good[0, 0:2] = 1
    bad[0, 0:2], bad[2, 0:2], bad[4, 0:2] = 1, 2, 3
    pred = {0: good.copy(), 7: blank(), 9: blank()}  # frame 9 is not annotated: ignored
    # 1 object with J = 1, 3 objects with J = 0: SEG = 1/4 (mean of frame means would be 1/2)
    assert ctc_seg({0: good, 7: bad}, pred).seg == 0.25


def test_unannotated_result_objects_do_not_count():
    gt = blank()
    gt[0, 0:2] = 1
    pred = gt.copy()
    pred[4:6, 4:8] = 2  # a cell nobody annotated
    r = ctc_seg([gt], [pred])
    assert r.seg == 1.0 and r.foreground_iou == pytest.approx(2 / 10, abs=1e-15)


@pytest.mark.parametrize(
    "gt,pred,match",
    [
        ({0: blank()}, {0: blank()}, "no reference"),
        ({0: blank() + 1, 1: blank() + 1}, {0: blank()}, r"no result for annotated frame\(s\) \[1\]"),
        ({0: blank() + 1}, {0: blank().astype(np.float32)}, "integer dtype"),
        ({0: blank() + 1}, {0: np.zeros((6, 9), np.uint16)}, "shape"),
        ({0: blank() + 1}, {0: np.zeros((2, 6, 8), np.uint16)}, "2-D"),
        ({0: blank() + 1}, {0: np.full((6, 8), -1, np.int32)}, "negative"),
    ],
)
def test_bad_input_is_named(gt, pred, match):
    with pytest.raises(ValueError, match=match):
        ctc_seg(gt, pred)


def test_folder_layout_round_trip_and_missing_mask(tmp_path):
    gt_dir = tmp_path / "01_GT" / "SEG"
    gt_dir.mkdir(parents=True)
    gt = blank()
    gt[1:3, 1:3] = 4
    for t in (2, 11):
        tifffile.imwrite(gt_dir / f"man_seg{t:03d}.tif", gt)
    written = write_ctc_results({t: gt.astype(np.int64) for t in range(12)}, tmp_path / "01_RES")
    assert written[0].name == "mask000.tif" and tifffile.imread(written[0]).dtype == np.uint16
    assert sorted(read_ctc_gt(tmp_path / "01_GT")) == [2, 11]
    assert evaluate_ctc_folder(tmp_path / "01_RES", tmp_path / "01_GT").seg == 1.0
    (tmp_path / "01_RES" / "mask011.tif").unlink()
    with pytest.raises(UnetlibError, match="mask011.tif"):
        evaluate_ctc_folder(tmp_path / "01_RES", tmp_path / "01_GT")
    assert sorted(read_ctc_results(tmp_path / "01_RES")) == list(range(11))


def test_cli_json_and_summary(tmp_path, capsys):
    from unetlib.cli import main

    gt = blank()
    gt[1:3, 1:3] = 1
    (tmp_path / "GT" / "SEG").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "GT" / "SEG" / "man_seg000.tif", gt)
    write_ctc_results([gt], tmp_path / "RES")
    assert main(["evaluate", "ctc", str(tmp_path / "RES"), str(tmp_path / "GT"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["SEG"] == 1.0
    assert main(["evaluate", "ctc", str(tmp_path / "RES"), str(tmp_path / "GT")]) == 0
    assert "SEG" in capsys.readouterr().out
    assert main(["evaluate", "ctc", str(tmp_path / "nope"), str(tmp_path / "GT")]) == 2
    assert "nope" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Cross-check with py-ctcmetrics on the real U373 ground truth
# ---------------------------------------------------------------------------


def perturb(labels, rng):
    """Erode, dilate, shift, merge, drop and relabel objects of a GT frame."""
    out = np.zeros_like(labels)
    ids = [i for i in np.unique(labels) if i]
    for k, i in enumerate(ids):
        obj = labels == i
        action = k % 5
        if action == 0:
            obj = ndimage.binary_erosion(obj, iterations=int(rng.integers(1, 6)))
        elif action == 1:
            obj = ndimage.binary_dilation(obj, iterations=int(rng.integers(1, 6)))
        elif action == 2:
            obj = np.roll(obj, tuple(rng.integers(-15, 16, 2)), axis=(0, 1))
        elif action == 3 and rng.random() < 0.5:
            continue  # missed object
        out[obj & (out == 0)] = 100 + 3 * k
    if len(ids) >= 2:
        out[out == 100 + 3] = 100  # merge two result objects
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_seg_matches_py_ctcmetrics_on_u373(data_root, tmp_path):
    pytest.importorskip("ctc_metrics")
    from ctc_metrics.metrics import seg
    from ctc_metrics.utils.representations import match

    gt = read_ctc_gt(data_root / "PhC-C2DH-U373" / "01_GT")
    rng = np.random.default_rng(0)
    pred = {t: perturb(labels, rng) for t, labels in gt.items()}
    ours = ctc_seg(gt, pred)
    labels_ref, ious = [], []
    for t in sorted(gt):
        tifffile.imwrite(tmp_path / "ref.tif", gt[t])
        tifffile.imwrite(tmp_path / "comp.tif", pred[t])
        ref, _, _, _, iou = match(str(tmp_path / "ref.tif"), str(tmp_path / "comp.tif"))
        labels_ref.append(ref)
        ious.append(iou)
    assert 0.2 < ours.seg < 0.95  # the perturbations matter
    assert ours.seg == pytest.approx(seg(labels_ref, ious), abs=1e-12)
    assert ours.n_reference == sum(len(x) for x in labels_ref)
