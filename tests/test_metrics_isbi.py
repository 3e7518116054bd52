"""ISBI 2012 metrics: the organisers' outputs, hand-worked cases and slow references."""

import json
import re

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unetlib.metrics import isbi2012 as m
from unetlib.metrics import warping
from unetlib.metrics.isbi2012 import (
    isbi2012_errors,
    pixel_error_curve,
    rand_error_curve,
    warping_error_curve,
)

CASES = ["continuous", "saturated", "uniform_slice"]


# ---------------------------------------------------------------------------
# Slow, obvious references (written from the definitions in docs/metrics.md, independent of the kernels)
# ---------------------------------------------------------------------------

CROSS = ndimage.generate_binary_structure(2, 1)
SQUARE = ndimage.generate_binary_structure(2, 2)


def ref_is_simple(L, y, x):
    """T4 == 1 and T8 == 1 on the 3x3 patch, components labelled by scipy."""
    patch = L[y - 1 : y + 2, x - 1 : x + 2].astype(bool).copy()
    patch[1, 1] = False  # the centre is not part of N8*
    cells, _ = ndimage.label(patch, CROSS)
    edge_labels = {cells[0, 1], cells[1, 0], cells[1, 2], cells[2, 1]} - {0}
    background = ~patch
    background[1, 1] = False
    _, t8 = ndimage.label(background, SQUARE)
    return len(edge_labels) == 1 and t8 == 1


def java6_sort(items, cmp):
    """Java 6 Arrays.sort(Object[], Comparator), transcribed recursively."""
    dest = list(items)
    src = list(items)

    def merge_sort(src, dest, low, high):
        if high - low < 7:
            for i in range(low, high):
                j = i
                while j > low and cmp(dest[j - 1], dest[j]) > 0:
                    dest[j], dest[j - 1] = dest[j - 1], dest[j]
                    j -= 1
            return
        mid = (low + high) // 2
        merge_sort(dest, src, low, mid)
        merge_sort(dest, src, mid, high)
        if cmp(src[mid - 1], src[mid]) <= 0:
            dest[low:high] = src[low:high]
            return
        p, q = low, mid
        for i in range(low, high):
            if q >= high or (p < mid and cmp(src[p], src[q]) <= 0):
                dest[i] = src[p]
                p += 1
            else:
                dest[i] = src[q]
                q += 1

    merge_sort(src, dest, 0, len(dest))
    return dest


def jan2015_cmp(z1, z2):
    return int((np.float32(z2) - np.float32(z1)) * np.float32(10000))


def float_cmp(z1, z2):
    return int(z2 > z1) - int(z2 < z1)


def ref_warping_counts(prob2d, gt_cell, t, sort_mode="jan2015", radius=20):
    """Split and merge pixels of one slice at threshold t, plain Python."""
    H, W = prob2d.shape
    p = prob2d.astype(np.float64)
    L = np.pad(gt_cell.astype(np.uint8), 1)
    T = np.pad((p > t).astype(np.uint8), 1)
    z = np.pad(np.abs(p - t).astype(np.float32), 1)
    cmp = jan2015_cmp if sort_mode == "jan2015" else float_cmp
    prev = None
    while True:
        M = [(y, x) for x in range(1, W + 1) for y in range(1, H + 1) if L[y, x] != T[y, x]]
        if not M or len(M) == prev:
            break
        prev = len(M)
        for y, x in java6_sort(M, lambda a, b: cmp(z[a], z[b])):
            if ref_is_simple(L, y, x):
                L[y, x] = 1 - L[y, x]
    warped = L[1:-1, 1:-1]
    comp, _ = ndimage.label(warped, CROSS)
    splits = merges = 0
    for y, x in zip(*np.nonzero(warped != (p > t))):
        U = {comp[yy, xx] for yy in range(y - 1, y + 2) for xx in range(x - 1, x + 2)
             if (yy, xx) != (y, x) and 0 <= yy < H and 0 <= xx < W}
        cell = warped[y, x] == 1
        if len(U) >= 3:
            splits, merges = splits + cell, merges + (not cell)
        elif len(U) == 2 and cell:
            big = np.pad(warped, radius)  # outside the image = membrane
            win = big[y : y + 2 * radius + 1, x : x + 2 * radius + 1].copy()
            win[radius, radius] = 0
            wcomp, _ = ndimage.label(win, CROSS)
            U2 = set(wcomp[radius - 1 : radius + 2, radius - 1 : radius + 2].ravel()) - {wcomp[radius, radius]}
            U2 |= {0}  # p itself is membrane now (label 0)
            splits += len(U2) > 2
    return splits, merges


def random_case(seed, shape=(2, 18, 22), quantise=None):
    """Smooth random GT and a differently smooth prediction (topology differs)."""
    rng = np.random.default_rng(seed)
    gt = ndimage.gaussian_filter(rng.normal(size=shape), (0, 1.5, 1.5)) > -0.1
    prob = ndimage.gaussian_filter(rng.normal(size=shape), (0, 1.2, 1.2))
    prob = 1 / (1 + np.exp(-4 * prob))
    if quantise:  # many near-ties: exercises the non-transitive Jan-2015 comparator
        prob = np.round(prob * quantise) / quantise + rng.uniform(0, 2e-4, shape)
        prob = np.clip(prob, 0, 1)
    return prob.astype(np.float32), (gt * 255).astype(np.uint8)


# ---------------------------------------------------------------------------
# The organisers' own outputs (Fiji, Jan 2015)
# ---------------------------------------------------------------------------


def test_threshold_lists_are_the_java_loops():
    assert m.PIXEL_RAND_THRESHOLDS.tolist() == [
        0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7,
        0.7999999999999999, 0.8999999999999999, 0.9999999999999999,
    ]
    assert m.WARPING_THRESHOLDS.tolist() == m.PIXEL_RAND_THRESHOLDS.tolist()[:10]


@pytest.mark.parametrize("case", CASES)
def test_golden_curves_and_final_values(golden, case):
    quirk = case == "uniform_slice"
    r = isbi2012_errors(golden[f"{case}_pred"], golden[f"{case}_gt"], fiji_uniform_slice_quirk=quirk)
    np.testing.assert_allclose(r.pixel_f, golden[f"{case}_pixelF"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.rand_f, golden[f"{case}_randF"], rtol=0, atol=1e-12)
    assert (r.warping_splits + r.warping_merges).tolist() == golden[f"{case}_warp_count"].tolist()
    warping, rand, pixel = golden[f"{case}_final"]
    assert r.warping_error == warping
    assert r.pixel_error == pixel
    # Fiji accumulates the pair counts in a different floating-point order: last-bit agreement only
    assert r.rand_error == pytest.approx(rand, rel=0, abs=2e-16)


def test_uniform_slice_without_quirk_is_scored_like_any_slice(golden):
    prob, gt = golden["uniform_slice_pred"], golden["uniform_slice_gt"]
    assert (gt > 0).reshape(len(gt), -1).all(axis=1).any(), "fixture must hold a slice without membrane"
    r = warping_error_curve(prob, gt)
    expected = [
        sum(sum(ref_warping_counts(prob[s], gt[s] > 0, t)) for s in range(len(prob)))
        for t in m.WARPING_THRESHOLDS
    ]
    counts = (r.per_slice["splits"] + r.per_slice["merges"]).sum(axis=0)
    assert counts.tolist() == expected
    assert counts.tolist() != golden["uniform_slice_warp_count"].tolist()


def test_curve_functions_agree_with_the_combined_call(golden):
    prob, gt = golden["continuous_pred"], golden["continuous_gt"]
    r = isbi2012_errors(prob, gt)
    assert pixel_error_curve(prob, gt).error == r.pixel_error
    assert rand_error_curve(prob, gt).error == r.rand_error
    w = warping_error_curve(prob, gt)
    assert (w.error, w.best_threshold) == (r.warping_error, r.warping_threshold)
    json.dumps(r.to_dict())
    json.dumps(w.to_dict())
    assert r.per_slice["warping_splits"].shape == (3, 10)
    assert r.per_slice["rand_tp"].shape == (3, 11)


# ---------------------------------------------------------------------------
# Hand-worked cases
# ---------------------------------------------------------------------------


def square(n=12, rows=(2, 10), cols=(2, 10)):
    gt = np.zeros((n, n), np.uint8)
    gt[rows[0] : rows[1], cols[0] : cols[1]] = 255
    return gt


def test_perfect_prediction_has_no_error():
    gt = square()
    gt[:, 5] = 0
    r = isbi2012_errors((gt > 0).astype(np.float32), gt)
    assert (r.warping_error, r.rand_error, r.pixel_error) == (0.0, 0.0, 0.0)


def test_one_object_split_by_a_membrane_line():
    gt = square()  # one 8x8 object, rows/cols 2..9
    prob = (gt > 0).astype(np.float32)
    prob[2:10, 5] = 0  # left part 8x3 = 24 px, right part 8x4 = 32 px, 8 px line
    r = isbi2012_errors(prob, gt)
    # The descent flips the line top-down until its last pixel, whose removal
    # would disconnect the membrane above from below: 1 split pixel.
    assert r.warping_splits.tolist() == [1] * 10 and r.warping_merges.tolist() == [0] * 10
    assert r.warping_error == 1 / 144
    # Rand: C = 24^2 + 32^2 + 8 singletons = 1608, A = 64^2 = 4096, B = 1608: F = 2C/(A+B)
    assert r.rand_f[0] == pytest.approx(2 * 1608 / (4096 + 1608), abs=1e-15)
    # pixel: TP = 56, FP = 0, FN = 8 -> P = 1, R = 7/8, F = 14/15
    assert r.pixel_error == pytest.approx(1 - 14 / 15, abs=1e-15)


def test_one_pixel_merge_gap():
    gt = square()
    gt[:, 5] = 0  # two objects separated by a membrane line
    prob = (gt > 0).astype(np.float32)
    prob[6, 5] = 1.0  # one-pixel bridge
    r = isbi2012_errors(prob, gt)
    assert r.warping_merges.tolist() == [1] * 10 and r.warping_splits.tolist() == [0] * 10
    # Rand: both GT objects (24 + 32 px) fall into one predicted segment of 57 px,
    # of which 56 are GT foreground: C = 24^2 + 32^2, A = C, B = 56^2
    c, b = 24**2 + 32**2, 56**2
    assert r.rand_f[5] == pytest.approx(2 * c / (c + b), abs=1e-15)


def test_one_pixel_boundary_shift_costs_no_warping_error():
    gt = square()
    prob = np.roll((gt > 0).astype(np.float32), 1, axis=1)  # object moved one pixel right
    r = isbi2012_errors(prob, gt)
    assert r.warping_error == 0.0
    assert r.pixel_error > 0.0  # 8 FN + 8 FP pixels
    assert r.pixel_f[5] == pytest.approx(2 * 56 / (2 * 56 + 8 + 8), abs=1e-15)


def test_probability_equal_to_threshold_in_float32_is_still_cell():
    gt = np.full((4, 4), 255, np.uint8)
    prob = np.full((4, 4), np.float32(0.1))  # 0.10000000149 > 0.1 in double
    r = pixel_error_curve(prob, gt)
    assert r.values[1] == 1.0  # t = 0.1: all cell
    assert r.values[2] == 0.0  # t = 0.2: no cell predicted, P = 1 (no FP), R = 0


def test_rand_2x2_by_hand():
    gt = np.full((2, 2), 255, np.uint8)  # one object, n = 4
    # pred [[1,0],[1,1]]: one 3-px segment + one singleton:
    # C = 3^2 + 1 = 10, A = 4^2 = 16, B = 10 -> P = 1, R = 10/16, F = 20/26
    prob = np.array([[1, 0], [1, 1]], np.float32)
    assert rand_error_curve(prob, gt).values[0] == pytest.approx(20 / 26, abs=1e-15)
    # distinct pairs: C = 10 - 4 = 6, A = 12, B = 6 -> R = 1/2, F = 2/3
    assert rand_error_curve(prob, gt, self_pairs=False).values[0] == pytest.approx(2 / 3, abs=1e-15)
    # diagonal pixels are not 4-connected: two 1-px segments + 2 singletons:
    # C = 1 + 1 + 2 = 4, A = 16, B = 4 -> R = 1/4, F = 0.4
    diagonal = np.array([[1, 0], [0, 1]], np.float32)
    assert rand_error_curve(diagonal, gt).values[0] == pytest.approx(0.4, abs=1e-15)


def test_rand_4x4_merge_by_hand():
    gt = np.full((4, 4), 255, np.uint8)
    gt[:, 2] = 0  # objects: columns 0-1 (8 px) and column 3 (4 px)
    prob = np.ones((4, 4), np.float32)  # everything one segment
    # C = 8^2 + 4^2 = 80, A = 80, B = 12^2 = 144 -> P = 80/144, R = 1, F = 10/14
    assert rand_error_curve(prob, gt).values[5] == pytest.approx(10 / 14, abs=1e-15)
    # separating the two objects makes the segmentations identical: F = 1
    prob[:, 2] = 0
    assert rand_error_curve(prob, gt).values[5] == 1.0


# ---------------------------------------------------------------------------
# Cross-checks against independent implementations
# ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # skimage's unused recall at 0/0
def test_distinct_pair_rand_equals_skimage_adapted_rand_error():
    from skimage.metrics import adapted_rand_error

    prob, gt = random_case(3, shape=(3, 40, 40))
    curve = rand_error_curve(prob, gt, self_pairs=False)
    for k, t in enumerate(m.PIXEL_RAND_THRESHOLDS):
        true, test, offset = [], [], 0
        for s in range(len(gt)):
            g, ng = ndimage.label(gt[s] > 0)
            p, npred = ndimage.label(prob[s].astype(np.float64) > t)
            singles = (g > 0) & (p == 0)
            p[p > 0] += offset
            p[singles] = offset + npred + 1 + np.arange(singles.sum())
            g[g > 0] += offset
            offset += ng + npred + int(singles.sum()) + 1
            true.append(g)
            test.append(p)
        error = adapted_rand_error(np.stack(true), np.stack(test), ignore_labels=(0,))[0]
        assert curve.values[k] == pytest.approx(1 - error, abs=1e-12)


def test_java6_merge_sort_matches_the_transcription():
    rng = np.random.default_rng(1)
    for n in [0, 1, 5, 6, 7, 8, 13, 64, 200, 513]:
        keys = (np.round(rng.uniform(0, 1, n) * 300) / 300 + rng.uniform(0, 3e-4, n)).astype(np.float32)
        for jan in (True, False):
            items = np.arange(n, dtype=np.int64)
            warping._java6_merge_sort(items, keys[items].copy(), jan)
            cmp = jan2015_cmp if jan else float_cmp
            assert items.tolist() == java6_sort(range(n), lambda a, b, c=cmp, k=keys: c(k[a], k[b]))
    # with an exact comparator it is a stable descending sort
    items = np.arange(200, dtype=np.int64)
    keys = np.round(rng.uniform(0, 1, 200) * 20).astype(np.float32)
    warping._java6_merge_sort(items, keys.copy(), False)
    assert items.tolist() == np.argsort(-keys, kind="stable").tolist()


def test_simple_point_table_matches_scipy_components():
    for code in range(256):
        L = np.zeros((3, 3), np.uint8)
        for b, (dy, dx) in enumerate(warping._NEIGHBOURS):
            L[1 + dy, 1 + dx] = code >> b & 1
        assert bool(warping.SIMPLE_POINT_TABLE[code]) == ref_is_simple(L, 1, 1), code


@pytest.mark.parametrize("sort_mode", ["jan2015", "float"])
@pytest.mark.parametrize("seed,quantise", [(0, None), (1, None), (2, 40), (3, 40)])
def test_warping_kernel_matches_slow_reference(seed, quantise, sort_mode):
    prob, gt = random_case(seed, quantise=quantise)
    curve = warping_error_curve(prob, gt, sort_mode=sort_mode)
    for s in range(len(prob)):
        for k, t in enumerate(m.WARPING_THRESHOLDS):
            got = curve.per_slice["splits"][s, k], curve.per_slice["merges"][s, k]
            assert got == ref_warping_counts(prob[s], gt[s] > 0, t, sort_mode), (s, t)


def test_warping_split_window_radius_follows_the_reference():
    prob, gt = random_case(5, shape=(1, 24, 24))
    for radius in (1, 3, 40):  # 40 > image size: the whole image
        curve = warping_error_curve(prob, gt, warping_radius=radius)
        expected = [ref_warping_counts(prob[0], gt[0] > 0, t, radius=radius) for t in m.WARPING_THRESHOLDS]
        assert list(zip(curve.per_slice["splits"][0], curve.per_slice["merges"][0])) == expected
    # r < 1 also means the whole image
    assert warping_error_curve(prob, gt, warping_radius=0).values.tolist() == curve.values.tolist()


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prob,gt,match",
    [
        (np.zeros((4, 4), np.float32), np.zeros((4, 5), np.uint8), "shape"),
        (np.full((4, 4), np.nan, np.float32), np.zeros((4, 4), np.uint8), "NaN"),
        (np.full((4, 4), 1.5, np.float32), np.zeros((4, 4), np.uint8), "outside"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), "float32"),
        (np.zeros((4, 4), np.float32), np.arange(16, dtype=np.uint8).reshape(4, 4), "binary"),
        (np.zeros((4, 4), np.float32), np.array([[1, 2]] * 8, np.uint8).reshape(4, 4), "no 0"),
        (np.zeros((4,), np.float32), np.zeros((4,), np.uint8), "stack"),
    ],
)
def test_bad_input_is_named(prob, gt, match):
    with pytest.raises(ValueError, match=match):
        isbi2012_errors(prob, gt)


def test_bad_sort_mode_is_named():
    with pytest.raises(ValueError, match="sort_mode"):
        warping_error_curve(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8), sort_mode="timsort")


def test_gt_as_0_1_and_single_slice_equal_0_255_stack(golden):
    prob, gt = golden["continuous_pred"][:1], golden["continuous_gt"][:1]
    a = isbi2012_errors(prob, gt)
    b = isbi2012_errors(prob[0], (gt[0] > 0).astype(np.uint8))
    assert (a.warping_error, a.rand_error, a.pixel_error) == (b.warping_error, b.rand_error, b.pixel_error)


def test_cli_prints_json(tmp_path, golden, capsys):
    import tifffile

    from unetlib.cli import main

    tifffile.imwrite(tmp_path / "pred.tif", golden["continuous_pred"], photometric="minisblack")
    tifffile.imwrite(tmp_path / "gt.tif", golden["continuous_gt"], photometric="minisblack")
    assert main(["evaluate", "isbi2012", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["warping_error"] == golden["continuous_final"][0]
    assert main(["evaluate", "isbi2012", str(tmp_path / "nope.tif"), str(tmp_path / "gt.tif")]) == 2
    assert "nope.tif" in capsys.readouterr().err


def _cli_isbi(tmp_path, capsys, pred, gt, **pred_options):
    """Run ``unetlib evaluate isbi2012`` on arrays written as TIFF; (exit code, stderr)."""
    import tifffile

    from unetlib.cli import main

    tifffile.imwrite(tmp_path / "pred.tif", pred, **(pred_options or {"photometric": "minisblack"}))
    tifffile.imwrite(tmp_path / "gt.tif", gt, photometric="minisblack")
    code = main(["evaluate", "isbi2012", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif")])
    err = capsys.readouterr().err
    assert err.count("\n") <= 1, err  # one line, no traceback
    return code, err


def _gt(*shape):
    gt = np.full(shape, 255, np.uint8)
    gt[..., 3, :] = 0
    return gt


@pytest.mark.parametrize("gt_shape", [(8, 8), (3, 8, 8)])
def test_cli_scores_a_two_class_probability_map_by_its_cell_class(tmp_path, capsys, gt_shape):
    """What `unetlib predict --probabilities` writes without --class is scored by class 1, P(cell), with a note."""
    from unetlib.cli import main

    gt = _gt(*gt_shape)
    p_cell = np.where(gt > 0, 0.8, 0.3).astype(np.float32)
    p_cell[..., 0, 0] = 0.1  # a wrong pixel, so that the errors are not all 0
    two_class = np.stack([1 - p_cell, p_cell], axis=-3)  # (2, H, W) or (S, 2, H, W)
    code, err = _cli_isbi(tmp_path, capsys, two_class, gt)
    assert code == 0 and err == ""
    tifffile.imwrite(tmp_path / "pred.tif", two_class, photometric="minisblack")
    assert main(["evaluate", "isbi2012", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif")]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == (f"note: {tmp_path / 'pred.tif'} holds the probabilities of 2 classes "
                                    "(background, cell); scoring class 1, P(cell)")
    assert main(["evaluate", "isbi2012", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"), "--json"]) == 0
    captured = capsys.readouterr()
    scored = json.loads(captured.out)  # stdout stays one JSON object; the note is on stderr
    assert "scoring class 1" in captured.err
    tifffile.imwrite(tmp_path / "cell.tif", p_cell, photometric="minisblack")
    assert main(["evaluate", "isbi2012", str(tmp_path / "cell.tif"), str(tmp_path / "gt.tif"), "--json"]) == 0
    assert scored == json.loads(capsys.readouterr().out)  # the same numbers as P(cell) given alone
    assert scored["pixel_error"] > 0


def test_cli_refuses_two_maps_that_are_not_class_probabilities(tmp_path, capsys):
    gt = _gt(3, 8, 8)
    two = np.stack([gt > 0, gt > 0], axis=-3).astype(np.float32)  # sums to 2 on cells: not a softmax
    code, err = _cli_isbi(tmp_path, capsys, two, gt)
    assert code == 2
    assert "pred.tif" in err and str(two.shape) in err and "do not sum to 1" in err
    assert "unetlib predict --class 1" in err


def test_cli_names_both_files_and_shapes_on_a_mismatch(tmp_path, capsys):
    code, err = _cli_isbi(tmp_path, capsys, np.zeros((3, 8, 8), np.float32), _gt(8, 8))
    assert code == 2
    assert "pred.tif" in err and "gt.tif" in err and "(3, 8, 8)" in err and "(8, 8)" in err


def test_cli_refuses_colour_tiffs(tmp_path, capsys):
    rgb = np.zeros((8, 8, 3), np.uint8)
    code, err = _cli_isbi(tmp_path, capsys, rgb, _gt(8, 8), photometric="rgb")
    assert code == 2 and "pred.tif" in err and "colour" in err

    import tifffile

    from unetlib.cli import main

    tifffile.imwrite(tmp_path / "pred.tif", np.zeros((8, 8), np.float32))
    tifffile.imwrite(tmp_path / "gt.tif", np.stack([_gt(8, 8)] * 3, axis=-1), photometric="rgb")
    assert main(["evaluate", "isbi2012", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif")]) == 2
    err = capsys.readouterr().err
    assert "gt.tif" in err and "colour" in err and err.count("\n") == 1


@pytest.mark.parametrize("bad, match", [(np.nan, "not finite"), (np.inf, "not finite"), (1.5, r"\[0, 1\]")])
def test_cli_checks_probability_values_in_one_line(tmp_path, capsys, bad, match):
    pred = np.full((8, 8), 0.5, np.float32)
    pred[2, 2] = bad
    code, err = _cli_isbi(tmp_path, capsys, pred, _gt(8, 8))
    assert code == 2 and "pred.tif" in err
    assert re.search(match, err), err
