"""The claims' verdict rows, their helpers, and zero padding against one whole-image pass."""

import math

import numpy as np
import pytest
import torch

from unetlib import claims, profiles
from unetlib.inference import Tiling, predict
from unetlib.model import BORDER, UNet
from unetlib.study import StudyResult


def _result(rows, variants):
    spec = {"name": "c", "recipe": {"dataset": "isbi2012"}, "variants": {v: {} for v in variants},
            "seeds": sorted({r["seed"] for r in rows}), "units": [1]}
    return StudyResult(spec, rows)


def _row(variant, seed, pixel_error, seconds=100.0):
    return {"variant": variant, "seed": seed, "unit": 1, "pixel_error": pixel_error, "rand_error": 0.1,
            "warping_error": 0.001, "final_loss": 0.3, "train_seconds": seconds}


def test_claim_row_is_the_paired_difference_with_its_verdict():
    # without elastic the error is higher on every seed by 0.01, 0.02, 0.03: mean 0.02, sd 0.01,
    # half width t(0.975, 2) * 0.01 / sqrt(3) = 0.024841: the interval includes 0
    rows = [_row("2 sections", s, 0.10) for s in range(3)] + \
           [_row("2 sections, no elastic", s, 0.10 + d) for s, d in enumerate((0.01, 0.02, 0.03))]
    row = claims.claim_row(claims.CLAIMS["elastic"], _result(rows, ["2 sections", "2 sections, no elastic"]))
    assert row["effect"] == pytest.approx(0.02) and row["n"] == 3
    assert row["high"] - row["effect"] == pytest.approx(0.024841, abs=1e-5)
    assert row["verdict"] == "not detectable at this budget"
    rows = rows[:3] + [_row("2 sections, no elastic", s, 0.12 + d) for s, d in enumerate((0.0, 0.001, 0.002))]
    row = claims.claim_row(claims.CLAIMS["elastic"], _result(rows, ["2 sections", "2 sections, no elastic"]))
    assert row["verdict"] == "supported"
    rows = rows[:3] + [_row("2 sections, no elastic", s, 0.08 + d) for s, d in enumerate((0.0, 0.001, 0.002))]
    row = claims.claim_row(claims.CLAIMS["elastic"], _result(rows, ["2 sections", "2 sections, no elastic"]))
    assert row["verdict"] == "contradicted"


def test_a_claim_judged_on_a_second_metric_claims_the_variant_does_worse_in_it():
    # w0 = 0 against w0 = 10: the claim is about merges (more without the border term), and so SEG falls
    def row(variant, seed, merges, seg):
        return {"variant": variant, "seed": seed, "unit": "01->02", "merges": merges, "SEG": seg, "final_loss": 0.3}

    rows = [row("w0 = 10", s, 3, 0.62 + 0.01 * s) for s in range(3)] + \
           [row("w0 = 0", s, 8 + s, 0.42 + 0.011 * s) for s in range(3)]
    spec = {"name": "w", "recipe": {"dataset": "DIC-C2DH-HeLa"}, "variants": {"w0 = 10": {}, "w0 = 0": {}},
            "seeds": [0, 1, 2], "units": ["01->02"]}
    result = StudyResult(spec, rows)
    claim = claims.CLAIMS["weighted_loss"]
    assert claims.claim_row(claim, result)["verdict"] == "supported"  # merges 9 against 3 on every seed
    seg = claims.claim_row(claim, result, metric="SEG")
    assert seg["effect"] == pytest.approx(-0.199) and seg["verdict"] == "supported"
    rows[3:] = [row("w0 = 0", s, 8, 0.72 + 0.011 * s) for s in range(3)]  # SEG higher without the border term
    assert claims.claim_row(claim, StudyResult(spec, rows), metric="SEG")["verdict"] == "contradicted"


def test_equal_time_arm_gets_the_steps_that_fit_in_the_large_tile_time():
    rows = [_row("1 large tile", s, 0.1, seconds=t) for s, t in enumerate((100, 110, 120))] + \
           [_row("batch of 4 small tiles", s, 0.1, seconds=t) for s, t in enumerate((200, 220, 260))]
    result = _result(rows, ["1 large tile", "batch of 4 small tiles"])
    result.study["variants"]["batch of 4 small tiles"] = {"train.tile": 316, "train.batch": 4}
    assert claims.equal_time_variant(result, 600) == {"train.tile": 316, "train.batch": 4, "train.iterations": 300}


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


def test_every_claim_has_its_studies_on_each_budget():
    for profile in (p for p in profiles.NAMES if profiles.load(p).claims):
        studies = claims.claim_studies(profile, (0, 1))
        elastic = studies["elastic"].variants
        assert "24 sections" in elastic and "dropout 0" in elastic
        for key in ("elastic", "dropout", "weighted_loss", "large_tiles", "momentum"):
            claim = claims.CLAIMS[key]
            study = studies[{"dropout": "elastic", "momentum": "large_tiles"}.get(key, key)]
            assert claim.baseline in study.variants and claim.variant in study.variants, (profile, key)
        large, small = studies["large_tiles"].recipe, studies["large_tiles"].recipe.replace(
            **studies["large_tiles"].variants["batch of 4 small tiles"])
        out = lambda t: (t - 2 * BORDER) ** 2  # noqa: E731
        assert abs(4 * out(small.train.tile) - out(large.train.tile)) / out(large.train.tile) < 0.1  # equal pixels


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
