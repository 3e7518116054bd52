"""The claims' verdict rows, their helpers, and zero padding against one whole-image pass."""

import math

import numpy as np
import pytest
import torch

from unetlib import claims, profiles
from unetlib.errors import UnetlibError
from unetlib.inference import Tiling, predict
from unetlib.model import BORDER, UNet
from unetlib.study import StudyResult


def _result(rows, variants, units=(1,)):
    spec = {"name": "c", "recipe": {"dataset": "isbi2012"}, "variants": {v: {} for v in variants},
            "seeds": sorted({r["seed"] for r in rows}), "units": list(units)}
    return StudyResult(spec, rows)


def _row(variant, seed, pixel_error, seconds=100.0, unit=1, **more):
    return {"variant": variant, "seed": seed, "unit": unit, "pixel_error": pixel_error, "rand_error": 0.1,
            "warping_error": 0.001, "final_loss": 0.3, "train_seconds": seconds, **more}


PASSED = (True, "checked")


def test_a_claim_is_decided_from_the_paired_difference_and_its_practical_size():
    claim = claims.CLAIMS["elastic"]  # practical size 0.005 of pixel error; the paper: worse without elastic
    # without elastic the error is higher on every seed by 0.01, 0.02, 0.03: mean 0.02, sd 0.01,
    # half width t(0.975, 2) * 0.01 / sqrt(3) = 0.024841: the interval includes 0 and reaches past 0.005
    rows = [_row("few", s, 0.10) for s in range(3)] + [_row("few, no elastic", s, 0.10 + d)
                                                      for s, d in enumerate((0.01, 0.02, 0.03))]
    row = claims.decide(claim, _result(rows, ["few", "few, no elastic"]), PASSED)
    assert row["effect"] == pytest.approx(0.02) and row["n"] == 3 and row["verdict"] == "undecided"
    assert row["high"] - row["effect"] == pytest.approx(0.024841, abs=1e-5)
    # undecided: the sentence says how many seeds the spread would need, (1.96 * 0.01 / 0.005)^2 = 15.4 -> 16
    assert claims.paired_sd(row) == pytest.approx(0.01) and claims.seeds_needed(row) == 16
    assert "about 16 seeds would narrow the interval to ±0.005" in claims.sentence(row)
    tight = rows[:3] + [_row("few, no elastic", s, 0.12 + d) for s, d in enumerate((0.0, 0.001, 0.002))]
    assert claims.decide(claim, _result(tight, ["few", "few, no elastic"]), PASSED)["verdict"] == "supported"
    other = rows[:3] + [_row("few, no elastic", s, 0.08 + d) for s, d in enumerate((0.0, 0.001, 0.002))]
    assert claims.decide(claim, _result(other, ["few", "few, no elastic"]), PASSED)["verdict"] == "contradicted"
    none = rows[:3] + [_row("few, no elastic", s, 0.10 + d) for s, d in enumerate((-0.001, 0.0, 0.001))]
    decided = claims.decide(claim, _result(none, ["few", "few, no elastic"]), PASSED)
    assert decided["verdict"] == "no effect larger than ±0.005" and "seeds would" not in claims.sentence(decided)
    failed = claims.decide(claim, _result(tight, ["few", "few, no elastic"]), (False, "no few-images regime"))
    assert failed["verdict"] == "not testable at this budget: no few-images regime"
    assert failed["metric"].startswith("pixel error (ISBI")


def test_the_controls_say_what_they_found():
    regime = _result([_row("all", s, 0.07) for s in range(3)] + [_row("few", s, 0.08 + 0.001 * s) for s in range(3)],
                     ["all", "few"])
    regime.study["variants"]["few"] = {"train_images": 2}
    hela_rows = [{"variant": "w0 = 10", "seed": s, "unit": "01->02", "SEG": v} for s, v in enumerate((0.6, 0.2, 0.5))]
    hela = StudyResult({"name": "w", "recipe": {"dataset": "DIC-C2DH-HeLa"}, "variants": {"w0 = 10": {}},
                        "seeds": [0, 1, 2], "units": ["01->02"]}, hela_rows)
    found = claims.controls({"regime": regime, "weighted_loss": hela}, constant=0.133)
    assert found["regime"][0] and "2 sections worse than all 24 by +0.0110" in found["regime"][1]
    assert found["learned:regime"][0] and claims.control_of(claims.CLAIMS["tta"], found) == found["learned:regime"]
    assert not found["finds_cells"][0] and "seed 1" in found["finds_cells"][1]
    unlearned = claims.controls({"regime": regime}, constant=0.09)  # 0.08 is not 0.02 below 0.09
    assert not unlearned["learned:regime"][0] and "6 of 6 networks did not learn (e.g. few seed 2: 0.0820)" in (
        unlearned["learned:regime"][1])
    with pytest.raises(UnetlibError, match="was not checked"):
        claims.control_of(claims.CLAIMS["momentum"], found)
    flat = _result([_row("all", s, 0.07) for s in range(3)] + [_row("few", s, 0.07) for s in range(3)], ["all", "few"])
    flat.study["variants"]["few"] = {"train_images": 2}
    assert not claims.controls({"regime": flat}, constant=0.133)["regime"][0]


def test_throughput_is_the_claim_that_a_large_tile_wastes_less():
    large = {"tile": 444, "batch": 1, "step_times": [0.30, 0.31, 0.29], "peak_memory_mib": 900.0}
    batch = {"tile": 316, "batch": 4, "step_times": [0.46, 0.47, 0.45], "peak_memory_mib": 1200.0}
    row = claims.throughput_row(large, batch)
    assert row["paper's arm"] == pytest.approx(np.mean([260**2 / t for t in large["step_times"]]))
    assert row["effect"] < 0 and row["verdict"] == "supported"  # the batch puts out fewer pixels per second
    assert "900 MiB against 1,200 MiB" in row["control"]


def test_speed_is_judged_only_on_a_gpu():
    cpu = claims.speed_row({"seconds": 5.0, "device": "cpu", "width": 64, "size": 512, "repeats": 3})
    assert cpu["verdict"].startswith("not testable") and math.isnan(cpu["low"])
    assert claims.speed_row({"seconds": 0.4, "device": "cuda", "width": 64, "size": 512, "repeats": 3})[
        "verdict"] == "supported"
    assert claims.speed_row({"seconds": 1.4, "device": "cuda", "width": 64, "size": 512, "repeats": 3})[
        "verdict"] == "contradicted"


def test_border_band_is_the_92_pixels_next_to_the_border():
    band = claims.border_band((512, 512))
    assert band[0, 300] and band[91, 300] and not band[92, 300] and band[420, 300] and not band[419, 300]
    assert band.sum() == 512 * 512 - (512 - 2 * BORDER) ** 2


def test_every_claim_has_its_arms_on_each_budget():
    for profile in (p for p in profiles.NAMES if profiles.load(p).claims):
        studies = claims.claim_studies(profile, (0, 1))
        for claim in claims.CLAIMS.values():
            assert {claim.baseline, claim.variant} <= set(studies[claim.study].variants), (profile, claim.key)
        regime = studies["regime"]
        assert regime.trained_by("all, d4") == "all"  # averaging evaluates the same networks
        assert regime.trained_by("all, zero padding") == "all, zero padding"  # trained with zero padding
        sgd = [regime.recipe.replace(**studies["optimiser"].variants[v]).train for v in studies["optimiser"].variants]
        assert len({round(t.lr / (1 - t.momentum), 9) for t in sgd}) == 1  # equal effective step size
        pilot = claims.pilot_study(profile, [10, 20])
        assert len(pilot.variants) == 4


def test_zero_padding_equals_one_pass_over_the_zero_padded_image():
    torch.manual_seed(0)
    model = UNet(width=4).eval()
    image = np.random.default_rng(0).random((250, 270)).astype(np.float32)
    zero = predict(model, image, normalize="none", tiling=Tiling(tile=220, progress=False, padding="zero", amp=False))
    size = 16 * math.ceil((270 + 124) / 16) + 60  # one valid input whose output covers the image
    canvas = np.zeros((size, size), np.float32)
    canvas[BORDER:BORDER + 250, BORDER:BORDER + 270] = image
    with torch.no_grad():
        whole = model(torch.from_numpy(canvas)[None, None]).softmax(1).numpy()[0, :, :250, :270]
    assert np.abs(zero - whole).max() < 1e-5
    mirror = predict(model, image, normalize="none", tiling=Tiling(tile=220, progress=False, amp=False))
    # the same in the interior: a valid U-Net's output pixel sees at most 92 px beyond its tile's output,
    # plus up to 15 px more on one side where the 16-px pooling grid puts it
    inner = BORDER + 16
    assert np.abs(mirror - zero)[:, inner:-inner, inner:-inner].max() < 1e-5
    assert np.abs(mirror - zero).max() > 1e-3  # and different at the border
