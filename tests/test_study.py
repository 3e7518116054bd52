"""Studies: variants x seeds x units, their statistics against hand-computed numbers, resume and locking."""

import json
import math
import os
import subprocess
import sys

import pytest

from unetlib import decisions, recipe, stats, study, tables
from unetlib.atomic import LOCK_NAME, folder_lock
from unetlib.errors import UnetlibError
from unetlib.study import MEAN_UNIT, Study, StudyResult


def _row(variant, seed, unit, seg, loss=0.2):
    return {"variant": variant, "seed": seed, "unit": unit, "SEG": seg, "foreground_iou": seg,
            "matched_objects": 10, "merges": 0, "final_loss": loss}


def _result(rows, units=("01->02",)):
    spec = {"name": "t", "recipe": recipe.preset("DIC-C2DH-HeLa", "smoke").to_dict(),
            "variants": {"base": {}, "other": {"train.lr": 0.002}}, "seeds": [0, 1, 2], "units": list(units)}
    return StudyResult(study=spec, runs=rows)


# hand-computed: baseline 0.5 0.7 0.6 (mean 0.6, sd 0.1); variant 0.6 0.9 0.7 (mean 0.7333, sd 0.152753)
# differences 0.1 0.2 0.1: mean 0.133333, sd 0.057735, t(0.975, 2) = 4.302653, half width 0.143422
HAND = [_row("base", 0, "01->02", 0.5), _row("base", 1, "01->02", 0.7), _row("base", 2, "01->02", 0.6),
        _row("other", 0, "01->02", 0.6), _row("other", 1, "01->02", 0.9), _row("other", 2, "01->02", 0.7)]


def test_summary_is_mean_sd_min_max_n_over_seeds():
    table = stats.summarize(_result(HAND), ["SEG"]).set_index(["variant", "metric"])
    base, other = table.loc[("base", "SEG")], table.loc[("other", "SEG")]
    assert base["n"] == 3 and base["mean"] == pytest.approx(0.6) and base["sd"] == pytest.approx(0.1)
    assert (base["min"], base["max"]) == (0.5, 0.7)
    assert other["mean"] == pytest.approx(0.733333, abs=1e-6) and other["sd"] == pytest.approx(0.152753, abs=1e-6)
    assert other["values"] == {0: 0.6, 1: 0.9, 2: 0.7}


def test_comparison_is_paired_by_seed_with_a_t_interval():
    row = stats.compare(_result(HAND), "SEG").iloc[0]
    assert row["n"] == 3 and row["difference"] == pytest.approx(0.133333, abs=1e-6)
    assert row["low"] == pytest.approx(0.133333 - 0.143422, abs=1e-6)
    assert row["high"] == pytest.approx(0.133333 + 0.143422, abs=1e-6)
    assert row["spread"] == pytest.approx(0.152753, abs=1e-6) and not row["beyond_spread"]
    assert row["verdict"] == "undecided"
    # a consistent gain of 0.1 on every seed is supported, a loss contradicts the claim of a gain
    shifted = HAND[:3] + [_row("other", s, "01->02", v + 0.1) for s, v in ((0, 0.5), (1, 0.7), (2, 0.6))]
    rows = [*shifted[:4], _row("other", 1, "01->02", 0.81), _row("other", 2, "01->02", 0.69)]
    assert stats.compare(_result(rows), "SEG").iloc[0]["verdict"] == "supported"
    assert stats.compare(_result(rows), "SEG", claimed=-1).iloc[0]["verdict"] == "contradicted"


def test_only_seeds_present_in_both_arms_are_paired():
    rows = HAND[:3] + [_row("other", 0, "01->02", 0.6), _row("other", 5, "01->02", 0.1)]
    row = stats.compare(_result(rows), "SEG").iloc[0]
    assert row["n"] == 1 and row["difference"] == pytest.approx(0.1)
    assert math.isnan(row["low"]) and row["verdict"] == "undecided"


def test_the_mean_unit_averages_the_units_per_seed():
    rows = [_row("base", 0, "01->02", 0.4), _row("base", 0, "02->01", 0.8),
            _row("base", 1, "01->02", 0.6), _row("base", 1, "02->01", 0.6), _row("base", 2, "01->02", 0.3)]
    result = _result(rows, units=("01->02", "02->01"))
    assert result.values("base", MEAN_UNIT, "SEG") == {0: pytest.approx(0.6), 1: pytest.approx(0.6)}  # seed 2 lacks 02->01


@pytest.mark.parametrize("low, high, claimed, practical, expected", [
    (0.01, 0.2, 1, None, "supported"), (-0.2, -0.01, -1, 0.05, "supported"),
    (-0.1, 0.2, 1, None, "undecided"), (0.0, 0.2, 1, None, "undecided"),
    (math.nan, math.nan, 1, 0.05, "undecided"),
    (-0.2, -0.01, 1, None, "contradicted"), (0.01, 0.2, -1, 0.05, "contradicted"),
    (-0.004, 0.003, 1, 0.005, "no effect larger than ±0.005"),  # the data rule out anything that matters
    (-0.004, 0.006, 1, 0.005, "undecided"),  # straddles 0 and reaches past the practical size
    (0.0, 0.0, 1, 0.005, "no effect larger than ±0.005"),  # every seed the same: a zero-width interval at 0
    (0.003, 0.003, -1, 0.005, "contradicted"),  # every seed the same, the other way
])
def test_verdict_from_the_interval(low, high, claimed, practical, expected):
    assert stats.verdict(low, high, claimed, practical) == expected


def test_verdict_needs_a_direction_and_a_positive_practical_size():
    with pytest.raises(UnetlibError, match="claimed"):
        stats.verdict(0.1, 0.2, 0)
    with pytest.raises(UnetlibError, match="practical size"):
        stats.verdict(0.1, 0.2, 1, 0.0)


def test_a_zero_variance_difference_has_a_zero_width_interval_and_an_unknown_direction_is_refused():
    rows = [_row("base", s, "01->02", 0.5) for s in range(3)] + [_row("other", s, "01->02", 0.6) for s in range(3)]
    row = stats.compare(_result(rows), "SEG").iloc[0]
    assert row["low"] == row["high"] == pytest.approx(0.1) and row["verdict"] == "supported"
    with pytest.raises(UnetlibError, match="whether a larger border_error is better is unknown"):
        stats.compare(_result(rows), "border_error")


def test_t_interval_by_hand():
    mean, low, high = stats.t_interval([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, sd 1.290994, se 0.645497, t(0.975, 3) = 3.182446
    assert mean == 2.5 and high - mean == pytest.approx(3.182446 * 0.645497, abs=1e-5) and low == 2.5 - (high - 2.5)


def test_a_run_far_above_its_seed_mates_loss_is_flagged():
    rows = [_row("base", 0, "01->02", 0.62, 0.21), _row("base", 1, "01->02", 0.65, 0.23),
            _row("base", 2, "01->02", 0.29, 0.42), _row("other", 0, "01->02", 0.6, 0.2)]
    flagged = stats.flag_runs(_result(rows))
    assert [(f["variant"], f["seed"]) for f in flagged] == [("base", 2)]
    assert flagged[0]["median_final_loss"] == pytest.approx(0.23) and flagged[0]["SEG"] == 0.29
    assert stats.flag_runs(_result(HAND)) == []


def test_bad_studies_are_refused_before_any_work():
    base = recipe.preset("PhC-C2DH-U373", "smoke")
    with pytest.raises(UnetlibError, match="unknown"):
        Study("s", base, {"a": {"train.nonsense": 1}}, (0,), ("01->02",))
    with pytest.raises(UnetlibError, match="seeds"):
        Study("s", base, {"a": {}}, (0, 0), ("01->02",))
    with pytest.raises(UnetlibError, match="direction"):
        Study("s", base, {"a": {}}, (0,), ("01->03",))
    with pytest.raises(UnetlibError, match="RUN_FOLDS"):
        Study("s", recipe.preset("isbi2012", "smoke"), {"a": {}}, (0,), (7,))


def test_a_folder_is_held_by_one_process(tmp_path):
    with folder_lock(tmp_path, "study"):
        other = subprocess.run([sys.executable, "-c", "import sys; from unetlib.atomic import folder_lock\n"
                                f"with folder_lock({str(tmp_path)!r}, 'study'): pass"],
                               capture_output=True, text=True)
        assert other.returncode != 0 and "in use by another study" in other.stderr
    assert not (tmp_path / LOCK_NAME).exists()
    # a lock left by a process that is gone is stale and taken over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{os.uname().nodename} {dead.pid}\n")
    with folder_lock(tmp_path, "study"):
        pass


@pytest.mark.data
@pytest.mark.slow
def test_smoke_study_runs_resumes_and_aggregates(tmp_path, monkeypatch, data_root):
    base = recipe.preset("PhC-C2DH-U373", "smoke").replace(tune_postprocessing=False, tta="none")
    spec = Study("smoke", base, {"base": {}, "lr": {"train.lr": 0.002}}, (0, 1), ("01->02",))
    result = study.run_study(spec, tmp_path, progress=False)
    assert len(result.runs) == 4
    assert {(r["variant"], r["seed"]) for r in result.runs} == {("base", 0), ("base", 1), ("lr", 0), ("lr", 1)}
    assert [r["unit_seed"] for r in result.runs if r["variant"] == "base"] == [1, 2]  # seed + train sequence
    stored = study.read_study(tmp_path / "study.json")
    assert stored.runs == json.loads(json.dumps(result.runs))
    table = stats.summarize(stored, ["SEG"]).set_index(["variant", "metric"])
    seg = [r["SEG"] for r in result.runs if r["variant"] == "lr"]
    assert table.loc[("lr", "SEG"), "mean"] == pytest.approx(sum(seg) / 2)
    # a second run has nothing left to do: it trains nothing
    monkeypatch.setattr(study, "run_job", lambda **kw: pytest.fail("a finished job ran again"))
    again = study.run_study(spec, tmp_path, progress=False)
    assert again.runs == result.runs
    # the same folder with another base recipe is refused
    other = Study("smoke", base.replace(**{"train.lr": 0.01}), {"base": {}}, (0,), ("01->02",))
    with pytest.raises(UnetlibError, match="another"):
        study.run_study(other, tmp_path, progress=False)


@pytest.mark.data
def test_a_variant_that_only_applies_the_networks_differently_reuses_them(tmp_path, data_root):
    base = recipe.preset("PhC-C2DH-U373", "smoke").replace(tune_postprocessing=False, tta="none",
                                                           **{"train.iterations": 2})
    spec = Study("reuse", base, {"none": {}, "flips": {"tta": "flips"}, "lr": {"train.lr": 0.002}}, (0,),
                 ("01->02",))
    assert [spec.trained_by(v) for v in spec.variants] == [spec.baseline, spec.baseline, list(spec.variants)[2]]
    assert [v for v, _, _ in spec.jobs()] == ["none", "lr", "flips"]  # trained networks first
    checkpoint = study.run_folder(tmp_path, "none", 0) / "checkpoints" / "PhC-C2DH-U373_train01" / "last.pt"
    result = study.run_study(spec, tmp_path, progress=False)
    rows = {r["variant"]: r for r in result.runs}
    assert rows["flips"]["loss_curve"] == rows["none"]["loss_curve"]  # the same network, not trained again
    assert rows["lr"]["loss_curve"] != rows["none"]["loss_curve"]
    assert rows["flips"]["recipe"]["tta"] == "flips" and rows["none"]["recipe"]["tta"] == "none"
    from unetlib.checkpoint import load_checkpoint

    assert load_checkpoint(checkpoint)["metadata"]["recipe"]["tta"] == "none"  # the baseline's file is untouched


def test_seed_study_runs_the_named_alternatives_only():
    from unetlib.decisions import seed_study

    hela = seed_study("DIC-C2DH-HeLa", "cpu", variants=["no-split", "split"])
    assert list(hela.variants) == ["cpu", "no-split"]  # "split" is U373's alternative: skipped here
    assert list(seed_study("PhC-C2DH-U373", "cpu", variants=["no-split", "split"]).variants) == ["cpu", "split"]
    assert len(seed_study("DIC-C2DH-HeLa", "cpu", variants=[]).variants) == 6
    assert seed_study("DIC-C2DH-HeLa", "cpu").recipe.train.augment.scale == 0.25  # zoom adopted (cpu)
    with pytest.raises(UnetlibError, match="unknown decision variants \\['no-such'\\]"):
        seed_study("DIC-C2DH-HeLa", "cpu", variants=["no-such"])


def test_reliability_is_each_units_sd_over_seeds_against_its_goal():
    table = decisions.reliability({"DIC-C2DH-HeLa": _result(HAND)}).iloc[0]  # baseline 0.5 0.7 0.6: sd 0.1
    assert (table["metric"], table["n"], table["goal"]) == ("SEG", 3, 0.03)
    assert table["sd"] == pytest.approx(0.1) and not table["met"] and table["flagged runs"] == 0
    steady = [_row("base", s, "01->02", v) for s, v in ((0, 0.60), (1, 0.62), (2, 0.61))]
    assert decisions.reliability({"DIC-C2DH-HeLa": _result(steady)}).iloc[0]["met"]


def test_adopting_a_variant_reuses_its_runs_as_the_new_recipes(tmp_path):
    """After a recipe adopts a variant, the variant's runs become the recipe's and the old recipe's runs those
    of the variant undoing it; runs of any other recipe are left alone, and the source folder is only read."""
    old = recipe.preset("DIC-C2DH-HeLa", "smoke")
    before = Study("before", old, {"cpu": {}, "zoom": {"train.augment.scale": 0.25}, "lr": {"train.lr": 0.01}},
                   (0, 1), ("01->02",))
    source = tmp_path / "before"
    for variant, seed, unit in before.jobs():
        row = {**_row(variant, seed, unit, 0.5 + seed / 10), "recipe": before.variant_recipe(variant, seed).to_dict()}
        path = study._row_path(source, variant, seed, unit)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row))
        checkpoint = study.protocols.unit_checkpoint_dir(path.parent, old.dataset, unit) / "last.pt"
        checkpoint.parent.mkdir(parents=True)
        checkpoint.write_bytes(f"{variant} {seed}".encode())
    untouched = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    after = Study("after", old.replace(**{"train.augment.scale": 0.25}),
                  {"cpu": {}, "no-zoom": {"train.augment.scale": 0.0}, "lr": {"train.lr": 0.002}}, (0, 1),
                  ("01->02",))
    adopted = study.adopt_runs(after, tmp_path / "after", source)
    assert sorted(adopted) == [("cpu", 0, "01->02"), ("cpu", 1, "01->02"), ("no-zoom", 0, "01->02"),
                               ("no-zoom", 1, "01->02")]  # lr 0.002 was never run: nothing to adopt
    rows = {(r["variant"], r["seed"]): r for r in study.gather(after, tmp_path / "after").runs}
    assert rows[("cpu", 1)]["adopted_from"] == "before/zoom" and rows[("no-zoom", 0)]["adopted_from"] == "before/cpu"
    assert rows[("cpu", 1)]["SEG"] == 0.6 and ("lr", 0) not in rows
    checkpoint = study.protocols.unit_checkpoint_dir(study.run_folder(tmp_path / "after", "cpu", 1), old.dataset,
                                                     "01->02") / "last.pt"
    assert checkpoint.read_bytes() == b"zoom 1"
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == untouched
    assert study.adopt_runs(after, tmp_path / "after", source) == []  # done once: nothing more
    with pytest.raises(UnetlibError, match="another out_dir"):
        study.adopt_runs(after, source, source)


def test_the_recipes_studies_are_read_from_their_dataset_folders_only(tmp_path):
    from unetlib import tables

    now = _result(HAND)
    earlier = _result([{**r, "SEG": 0.1} for r in HAND])
    study.write_study(tmp_path / "DIC-C2DH-HeLa" / "study.json", now)
    study.write_study(tmp_path / "earlier" / "DIC-C2DH-HeLa-before-zoom" / "study.json", earlier)
    study.write_study(tmp_path / "DIC-C2DH-HeLa-old" / "study.json", earlier)  # not the recipe's numbers
    found = tables.read_studies(tmp_path)
    assert list(found) == ["DIC-C2DH-HeLa"] and found["DIC-C2DH-HeLa"].runs == now.runs


def test_over_seeds_by_hand():
    assert stats.over_seeds([0.5, 0.7, 0.6]) == pytest.approx({"n": 3, "mean": 0.6, "sd": 0.1, "min": 0.5, "max": 0.7})
    one = stats.over_seeds([0.4])
    assert (one["n"], one["mean"], one["min"], one["max"]) == (1, 0.4, 0.4, 0.4) and math.isnan(one["sd"])
    assert stats.over_seeds([])["n"] == 0


def _fake_jobs(calls):
    """A run_job that records its calls and writes the row a finished job would (no training)."""
    def run_job(variant, seed, unit, out_dir, **kw):
        calls.append(variant)
        row = {**_row(variant, seed, unit, 0.5), "unit_seed": seed, "train_seconds": 1.0,
               "recipe": kw["study"].variant_recipe(variant, seed).to_dict()}
        study._write_row(study._row_path(out_dir, variant, seed, unit), row)
        return row
    return run_job


def test_runs_that_evaluate_the_baselines_networks_start_once_every_network_is_trained(tmp_path, monkeypatch):
    base = recipe.preset("PhC-C2DH-U373", "smoke").replace(tta="none")
    spec = Study("phases", base, {"none": {}, "flips": {"tta": "flips"}, "lr": {"train.lr": 0.002}}, (0,),
                 ("01->02",))
    calls, batches = [], []

    def scheduler(fn, kwargs_list):  # an existing scheduler: every call of a phase at once
        batches.append([kw["variant"] for kw in kwargs_list])
        return [fn(**kw) for kw in kwargs_list]

    scheduler.workers = 0
    monkeypatch.setattr(study, "run_job", _fake_jobs(calls))
    result = study.run_study(spec, tmp_path, runner=scheduler, progress=False)
    assert batches == [["none", "lr"], ["flips"]]  # never a reusing run beside the network it reuses
    assert [r["variant"] for r in result.runs] == ["none", "lr", "flips"]


def test_studies_run_together_share_the_workers_longest_runs_first(tmp_path, monkeypatch):
    base = recipe.preset("PhC-C2DH-U373", "smoke").replace(tta="none", **{"train.iterations": 100})
    short = Study("short", base, {"a": {}, "flips": {"tta": "flips"}}, (0, 1), ("01->02",))
    long = Study("long", base, {"b": {"train.iterations": 400}, "c": {"train.iterations": 200}}, (0,), ("01->02",))
    assert study.job_cost(long, "b") == 2 * study.job_cost(long, "c") and study.job_cost(short, "flips") == 0
    calls, batches = [], []

    def cluster(fn, kwargs_list):  # a local cluster of two workers
        batches.append([(kw["study"].name, kw["variant"], kw["seed"]) for kw in kwargs_list])
        return [fn(**kw) for kw in kwargs_list]

    cluster.workers = 2
    monkeypatch.setattr(study, "run_job", _fake_jobs(calls))
    first, second = study.run_studies([(short, tmp_path / "short"), (long, tmp_path / "long")], runner=cluster,
                                      progress=False)
    # longest first across the studies, two at a time; a run of another variant's networks after every training
    assert batches == [[("long", "b", 0), ("long", "c", 0)], [("short", "a", 0), ("short", "a", 1)],
                       [("short", "flips", 0), ("short", "flips", 1)]]
    assert {r["variant"] for r in first.runs} == {"a", "flips"} and {r["variant"] for r in second.runs} == {"b", "c"}
    assert study.read_study(tmp_path / "long" / "study.json").runs == second.runs
    with pytest.raises(UnetlibError, match="its own folder"):
        study.run_studies([(short, tmp_path / "x"), (long, tmp_path / "y" / ".." / "x")], runner=cluster,
                          progress=False)
    # a study alone keeps its seed-major order, whatever its runs cost
    batches.clear()
    study.run_study(Study("alone", base, {"c": {"train.iterations": 200}, "b": {"train.iterations": 400}}, (0, 1),
                          ("01->02",)), tmp_path / "alone", runner=cluster, progress=False)
    assert batches == [[("alone", "c", 0), ("alone", "b", 0)], [("alone", "c", 1), ("alone", "b", 1)]]
    # a refused study (its folder holds another base recipe) leaves the other study's new folder untouched
    with pytest.raises(UnetlibError, match="another base recipe"):
        study.run_studies([(short, tmp_path / "fresh"), (Study("long", base.replace(**{"train.lr": 0.01}),
                                                               long.variants, (0,), ("01->02",)), tmp_path / "long")],
                          runner=cluster, progress=False)
    assert not (tmp_path / "fresh" / "plan.json").exists()


def test_a_run_of_the_baselines_network_needs_that_network(tmp_path):
    base = recipe.preset("PhC-C2DH-U373", "smoke")
    spec = Study("early", base, {"cpu": {}, "flips": {"tta": "flips"}}, (0,), ("01->02",))
    with pytest.raises(UnetlibError, match="not trained yet"):
        study.run_job(spec, "flips", 0, "01->02", tmp_path)


def test_a_study_folder_of_other_folds_is_refused(tmp_path, monkeypatch):
    base = recipe.preset("isbi2012", "smoke")
    five = Study("folds", base, {"cpu": {}}, (0,), (0,), folds=5)
    monkeypatch.setattr(study, "run_job", _fake_jobs([]))
    study.run_study(five, tmp_path, progress=False)
    with pytest.raises(UnetlibError, match="over 5 folds, not 6"):
        study.run_study(Study("folds", base, {"cpu": {}}, (0,), (0,), folds=6), tmp_path, progress=False)


def test_a_hand_set_post_processing_is_part_of_the_recipe_a_run_is_matched_on(tmp_path, monkeypatch):
    base = recipe.preset("PhC-C2DH-U373", "smoke").replace(tune_postprocessing=False)
    monkeypatch.setattr(study, "run_job", _fake_jobs([]))
    study.run_study(Study("pp", base, {"cpu": {}}, (0,), ("01->02",)), tmp_path, progress=False)
    with pytest.raises(UnetlibError, match="another recipe"):  # threshold 0.6 is not the stored run's 0.5
        study.run_study(Study("pp", base, {"cpu": {"threshold": 0.6}}, (0,), ("01->02",)), tmp_path, progress=False)
    tuned = recipe.preset("PhC-C2DH-U373", "smoke")  # tuned: the threshold stored is the tuned one, whatever it is
    import dataclasses

    assert study._same_run(dataclasses.replace(tuned, threshold=0.3), tuned)
    assert not study._same_run(dataclasses.replace(tuned, tta="d4"), tuned)


def test_a_row_with_a_missing_loss_or_numpy_numbers_is_written_as_json(tmp_path):
    import numpy as np

    study._write_row(tmp_path / "row.json", {"final_loss": float("nan"), "SEG": np.float32(0.5), "n": np.int64(3)})
    assert json.loads((tmp_path / "row.json").read_text()) == {"final_loss": None, "SEG": 0.5, "n": 3}


def test_the_interval_for_one_more_seed_by_hand():
    low, high = stats.prediction_interval([0.5, 0.7, 0.6])  # 0.6 -+ 4.302653 * 0.1 * sqrt(4 / 3)
    assert (low, high) == pytest.approx((0.6 - 0.496828, 0.6 + 0.496828), abs=1e-6)
    assert all(math.isnan(v) for v in stats.prediction_interval([0.5]))


def test_the_experiments_number_takes_the_wider_of_the_seed_and_the_unit_reading():
    def two_units(first, second):
        return _result([_row("base", s, u, v) for u, values in (("01->02", first), ("02->01", second))
                        for s, v in enumerate(values)], units=("01->02", "02->01"))

    # units moving in opposite directions: every per-seed mean is 2, so that reading has no width. As independent
    # networks each unit's share of the mean's variance is 1 / 3 / 4 = 1/12, df = (1/6)^2 / (2 (1/12)^2 / 2) = 4,
    # t(0.975, 4) = 2.776445: the mean -+ 2.776445 sqrt(1/6) = 1.133478, one more seed -+ 2.776445 sqrt(2/3) = 2.266958
    mean, low, high, next_low, next_high = stats.number_intervals(two_units([1, 2, 3], [3, 2, 1]), "base", "SEG")
    assert (mean, low, high) == pytest.approx((2, 2 - 1.133478, 2 + 1.133478), abs=1e-6)
    assert (next_low, next_high) == pytest.approx((2 - 2.266958, 2 + 2.266958), abs=1e-6)
    # units moving together: the per-seed reading (1 2 3: -+ 4.302653 / sqrt(3) = 2.484138) is the wider one
    _, low, high, _, _ = stats.number_intervals(two_units([1, 2, 3], [1, 2, 3]), "base", "SEG")
    assert (low, high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    # the README's tables give the experiment's number that way
    table = tables.seed_table({"DIC-C2DH-HeLa": two_units([1, 2, 3], [3, 2, 1])})
    assert table.iloc[0]["95 % interval of the mean"] == "0.8665–3.1335"


def test_pooled_seg_weighs_each_unit_by_its_cells():
    rows = [{**_row("base", 0, u, seg), "result": {"objects": n}} for u, seg, n in
            (("block0", 0.9, 10), ("block1", 0.6, 30))] + [{**_row("base", 1, "block0", 0.5), "result": {"objects": 10}}]
    result = _result(rows, units=("block0", "block1"))
    assert stats.pooled(result, "base") == {0: pytest.approx((0.9 * 10 + 0.6 * 30) / 40)}  # seed 1 lacks block1


def test_more_seeds_run_their_variant_alone_and_the_network_it_evaluates():
    base = recipe.preset("PhC-C2DH-U373", "smoke")
    spec = Study("h", base, {"recipe": {}, "other": {"w0": 5.0}, "other, no tta": {"w0": 5.0, "tta": "none"}},
                 (0, 1), ("01->02",), more_seeds={"recipe": (2, 3), "other, no tta": (4,)})
    assert spec.trained_by("other, no tta") == "other" and spec.seeds_of("other") == (0, 1, 4)
    assert [(v, s) for v, s, _ in spec.jobs()] == [
        ("recipe", 0), ("other", 0), ("recipe", 1), ("other", 1), ("recipe", 2), ("recipe", 3), ("other", 4),
        ("other, no tta", 0), ("other, no tta", 1), ("other, no tta", 4)]  # evaluations after every network
    with pytest.raises(UnetlibError, match="more_seeds"):
        Study("h", base, {"recipe": {}}, (0,), ("01->02",), more_seeds={"recipe": (1, 1)})
    with pytest.raises(UnetlibError, match="more_seeds"):
        Study("h", base, {"recipe": {}}, (0,), ("01->02",), more_seeds={"nobody": (1,)})
    with pytest.raises(UnetlibError, match="mix directions and held-out blocks"):
        Study("h", base, {"recipe": {}}, (0,), ("01->02", "block0"))
    both = decisions.both_sequences_study("PhC-C2DH-U373", "smoke", (0,))
    assert both.units == ("block0", "block1", "block2")
