"""The budget study: FLOPs counted from the model against a hand count, the power-law trend on hand numbers,
the curve of a study's rows, and the points each profile declares."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from unetlib import budget
from unetlib.errors import UnetlibError
from unetlib.model import UNet, count_flops
from unetlib.study import MEAN_UNIT, StudyResult


def _hand_count(model: nn.Module, size: int) -> int:
    """2 x multiply-adds of every convolution, from the shapes a forward pass gives (the obvious way)."""
    total = []

    def hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):  # every input pixel meets every kernel weight
            total.append(2 * module.in_channels * module.out_channels * k * inputs[0].shape[-2] * inputs[0].shape[-1])
        else:
            total.append(2 * module.in_channels * module.out_channels * k * output.shape[-2] * output.shape[-1])

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    for h in hooks:
        h.remove()
    return sum(total)


def test_flops_of_a_forward_pass_match_a_hand_count_and_a_training_step_is_about_three():
    model = UNet(width=4).eval()
    forward = count_flops(model, 188, 188)
    assert forward == _hand_count(model, 188)
    step = count_flops(model, 188, 188, training=True)
    assert 2.9 * forward < step < 3.0 * forward  # backward: two passes, but none for the input image
    assert count_flops(model, 188, 188, batch=2) == 2 * forward
    assert next(model.parameters()).device.type == "cpu"  # the model itself is left as it is


def test_flops_grow_with_the_square_of_the_width():
    narrow, wide = (count_flops(UNet(width=w), 188, 188) for w in (8, 16))
    assert 3.9 < wide / narrow < 4.0  # the first and last layers grow only linearly


def test_a_power_law_is_recovered_with_the_compute_that_reaches_a_target():
    flops = np.array([1e14, 2e14, 4e14, 8e14])
    table = pd.DataFrame({"point": ["a", "b", "c", "d"], "unit": MEAN_UNIT, "width": 16, "flops": flops,
                          "rand_error": 0.08 * (flops / 1e14) ** math.log2(0.9)})
    fitted = budget.trend(table, "rand_error")
    assert fitted.per_doubling == pytest.approx(0.9) and fitted.last_factor == pytest.approx(0.9)
    assert fitted.flops_for(0.08 * 0.9**5) == pytest.approx(32e14)
    assert fitted.at(np.array([1e14, 2e14])) == pytest.approx([0.08, 0.072])
    flat = table.assign(rand_error=0.05)
    assert budget.trend(flat, "rand_error").flops_for(0.04) == math.inf
    with pytest.raises(UnetlibError, match="at least two"):
        budget.trend(table.iloc[:1], "rand_error")


def _row(point, unit, **values):
    return {"variant": point, "seed": 0, "unit": unit, "train_seconds": 100.0, "final_loss": 0.3,
            "environment": {"hardware": {"cpu_model": "a CPU", "precision": "bf16"}}, **values}


def test_the_curve_counts_each_points_compute_and_compares_widths_at_equal_compute():
    study = budget.budget_study("cpu", units=(0, 2), points=["w16-10000", "w32-2500"])
    errors = {"pixel_error": 0.06, "warping_error": 0.001}
    runs = [_row(p, u, rand_error=r + 0.01 * u, **errors)
            for p, r in (("w16-2500", 0.09), ("w16-10000", 0.07), ("w32-2500", 0.06)) for u in (0, 2)]
    curve = budget.curve(StudyResult(study=study.to_dict(), runs=runs))
    means = curve[curve.unit == MEAN_UNIT].set_index("point")
    assert means.loc["w16-10000", "flops"] == 4 * means.loc["w16-2500", "flops"]
    assert means.loc["w32-2500", "flops"] == pytest.approx(means.loc["w16-10000", "flops"], rel=0.01)
    assert means.loc["w16-2500", "rand_error"] == pytest.approx(0.10)  # the mean of folds 0 and 2
    assert set(curve.machine) == {"a CPU, bf16"}
    equal = budget.equal_compute(curve, "rand_error").iloc[0]
    assert equal.point == "w32-2500" and equal.narrow_from == "width 16, 10,000 steps"
    assert equal.difference == pytest.approx(-0.01)
    # one seed per point: 0.01 is within 1.96 sqrt(2) 0.005 = 0.0139, the chance difference of two single seeds
    lines = budget.reading(curve, {"the paper": {"rand_error": 0.0382}}, spread={"rand_error": 0.005})
    assert any("w32-2500 gives 0.07 against 0.08" in line and "within the 0.014 by which two single seeds" in line
               for line in lines), lines
    lines = budget.reading(curve, {"the paper": {"rand_error": 0.0382}}, spread={"rand_error": 0.003})
    assert any("w32-2500 gives 0.07 against 0.08" in line and "better by 0.01 (larger than the 0.0083" in line
               for line in lines), lines


def test_each_profile_declares_its_points_and_the_first_is_its_recipe():
    study = budget.budget_study("cpu")
    assert list(study.variants)[:2] == ["w16-2500", "w16-5000"] and study.units == (0, 2) and study.seeds == (0,)
    assert study.variant_recipe("w16-2500", 0) == study.recipe
    wide = study.variant_recipe("w64-1500", 0)
    assert (wide.train.width, wide.train.tile, wide.train.iterations) == (64, 572, 1500)
    with pytest.raises(UnetlibError, match="unknown budget points"):
        budget.budget_study("cpu", points=["w128-1"])
    with pytest.raises(UnetlibError, match="declares no budget points"):
        budget.budget_study("paper")


def test_a_curve_that_stops_falling_is_read_without_overflow():
    # the last doubling barely falls: at that rate the target is out of reach, said in words, not an OverflowError
    study = budget.budget_study("cpu", units=(0, 2), points=["w16-5000", "w16-10000"])
    errors = {"pixel_error": 0.06, "warping_error": 0.001}
    runs = [_row(p, u, rand_error=r, **errors)
            for p, r in (("w16-2500", 0.09), ("w16-5000", 0.07), ("w16-10000", 0.07 * (1 - 1e-12))) for u in (0, 2)]
    curve = budget.curve(StudyResult(study=study.to_dict(), runs=runs))
    lines = budget.reading(curve, {"the paper": {"rand_error": 0.0382}})
    rand = next(line for line in lines if line.startswith("rand error"))
    assert "would not get there within 20 more doublings" in rand and "The fitted trend would reach the paper" in rand


def test_the_figure_draws_the_trend_ahead_of_the_points_only():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unetlib import figures

    study = budget.budget_study("cpu", units=(0, 2), points=["w16-5000", "w16-10000"])
    runs = [_row(p, u, pixel_error=e, rand_error=r, warping_error=0.001)
            for p, e, r in (("w16-2500", 0.057, 0.08), ("w16-5000", 0.055, 0.063), ("w16-10000", 0.054, 0.061))
            for u in (0, 2)]
    curve = budget.curve(StudyResult(study=study.to_dict(), runs=runs))
    trends = {e: budget.trend(curve, e) for e in ("pixel_error", "rand_error")}
    # the paper's pixel error lies above every point: the trend meets it behind them, so it is not drawn there
    fig = figures.budget_curve(curve, paper_values={"pixel_error": 0.0611, "rand_error": 0.0382}, trends=trends)
    lowest = curve.flops.min()
    for ax in (ax for ax in fig.axes if ax.get_title() in ("pixel error", "Rand error")):
        dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert dotted and min(dotted[0].get_xdata()) >= lowest
    rand = next(ax for ax in fig.axes if ax.get_title() == "Rand error")
    far = max(next(line for line in rand.get_lines() if line.get_linestyle() == ":").get_xdata())
    assert far > 2 * curve.flops.max()  # drawn on towards where the paper's Rand error is reached
    plt.close(fig)


def test_a_wider_point_beyond_the_steps_axis_is_set_against_its_point_of_most_compute():
    study = budget.budget_study("cpu", units=(0, 2), points=["w16-5000", "w64-1500"])
    errors = {"pixel_error": 0.06, "warping_error": 0.001}
    runs = [_row(p, u, rand_error=r, **errors)
            for p, r in (("w16-2500", 0.08), ("w16-5000", 0.063), ("w64-1500", 0.083)) for u in (0, 2)]
    curve = budget.curve(StudyResult(study=study.to_dict(), runs=runs))
    row = budget.equal_compute(curve, "rand_error").iloc[0]
    assert row.point == "w64-1500" and row.narrow == pytest.approx(0.063) and row.narrow_from == "width 16, 5,000 steps"
    assert row.narrow_flops == curve[curve.point == "w16-5000"].flops.iloc[0] < row.flops
    lines = budget.reading(curve, {}, spread={"rand_error": 0.005})
    assert any(line.strip().startswith("with 6.5 x the compute of the width 16, 5,000 steps") and
               "worse by 0.02 (larger than the 0.014 by which two single seeds" in line for line in lines), lines


def test_a_prediction_is_the_measured_point_within_the_range_and_both_readings_beyond_it():
    flops = np.array([1e14, 2e14, 4e14])
    curve = pd.DataFrame({"point": ["a", "b", "c"], "unit": MEAN_UNIT, "width": 16, "flops": flops,
                          "rand_error": [0.08, 0.064, 0.0576], "warping_error": 0.001, "pixel_error": 0.06})
    at_c = budget.predict(curve, 4e14).set_index("error")
    assert at_c.loc["rand_error", "measured"] == 0.0576 and math.isnan(at_c.loc["rand_error", "last_rate"])
    beyond = budget.predict(curve, 16e14).set_index("error")  # two doublings past the last point
    assert math.isnan(beyond.loc["rand_error", "measured"])
    assert beyond.loc["rand_error", "last_rate"] == pytest.approx(0.0576 * 0.9**2)  # the last doubling: x 0.9
    slope, intercept = np.polyfit(np.log(flops), np.log([0.08, 0.064, 0.0576]), 1)
    assert beyond.loc["rand_error", "fitted"] == pytest.approx(math.exp(intercept) * 16e14**slope)  # the fit's line
    assert beyond.loc["warping_error", "fitted"] == pytest.approx(0.001)  # a flat error stays where it is
    with pytest.raises(UnetlibError, match="FLOPs"):
        budget.predict(curve, 0)
