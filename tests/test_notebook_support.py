"""Parameter validation, protocols, result files and tables (the notebooks' support code)."""

import json

import numpy as np
import pytest

from unetlib import data, paper, postprocess, protocols, results, tables
from unetlib import manifest as manifests
from unetlib.errors import UnetlibError
from unetlib.notebook import validate_parameters
from unetlib.protocols import Split
from unetlib.recipe import PROFILES
from unetlib.results import ExperimentResult
from unetlib.values import check_integer, check_real

PARAMS_CELL = 'PROFILE = "smoke"  # profile\nWIDTH = 4  # channels\nLR = 0.01  # rate\nRUN_FOLDS = None  # folds\n'


def _history(*cells):
    return ["", *cells, "PARAMS = validate_parameters(In, globals())"]


def test_defaults_are_returned():
    ns = {}
    exec(PARAMS_CELL, ns)
    assert validate_parameters(_history(PARAMS_CELL), ns) == {
        "PROFILE": "smoke", "WIDTH": 4, "LR": 0.01, "RUN_FOLDS": None}


def test_injected_values_are_accepted_and_checked():
    injected = '# Parameters\nWIDTH = 16\nLR = 1\nRUN_FOLDS = [0, 1]\n'
    ns = {}
    exec(PARAMS_CELL + injected, ns)
    params = validate_parameters(_history(PARAMS_CELL, injected), ns)
    assert params["WIDTH"] == 16 and params["LR"] == 1 and params["RUN_FOLDS"] == [0, 1]


def test_unknown_parameter_is_rejected_with_the_accepted_names():
    injected = "# Parameters\nWITDH = 16\n"
    ns = {}
    exec(PARAMS_CELL + injected, ns)
    with pytest.raises(UnetlibError, match=r"unknown parameter\(s\) WITDH.*accepts: PROFILE, WIDTH, LR, RUN_FOLDS"):
        validate_parameters(_history(PARAMS_CELL, injected), ns)


def test_wrong_type_and_profile_are_rejected():
    for injected, match in (('# Parameters\nWIDTH = "16"\n', "WIDTH"), ('# Parameters\nPROFILE = "fast"\n', "PROFILE")):
        ns = {}
        exec(PARAMS_CELL + injected, ns)
        with pytest.raises(UnetlibError, match=match):
            validate_parameters(_history(PARAMS_CELL, injected), ns)


def test_every_profile_is_accepted():
    assert set(PROFILES) == {"smoke", "cpu", "gpu", "paper", "overnight"}
    for profile in PROFILES:
        injected = f'# Parameters\nPROFILE = "{profile}"\n'
        ns = {}
        exec(PARAMS_CELL + injected, ns)
        assert validate_parameters(_history(PARAMS_CELL, injected), ns)["PROFILE"] == profile


def test_a_numeric_parameter_outside_its_range_is_refused():
    # the notebooks check their numeric parameters with the kit's value checks
    check_integer("ITERATIONS", 10, 1)  # open above
    check_integer("SEED", 0, 0, None)
    check_real("LR", 0.5, 0, 1)
    for value in (-1, 31, 1.5, "1", None, True, [1]):
        with pytest.raises(UnetlibError, match=r"SUBMISSION_SLICES must be an integer in \[0, 30\], got"):
            check_integer("SUBMISSION_SLICES", value, 0, 30)
    for value in (-1, 2, float("nan"), "1", None, True, [1]):
        with pytest.raises(UnetlibError, match=r"LR must be a finite number in \[0, 1\], got"):
            check_real("LR", value, 0, 1)


def test_contiguous_folds_partition_the_slices():
    folds = protocols.contiguous_folds(30, 5)
    assert all(isinstance(f, Split) for f in folds) and [f.fold for f in folds] == list(range(5))
    assert [f.test for f in folds][:2] == [tuple(range(0, 6)), tuple(range(6, 12))]
    for f in folds:
        assert sorted(f.train + f.test) == list(range(30)) and not set(f.train) & set(f.test)
    assert [len(f.test) for f in protocols.contiguous_folds(30, 4)] == [8, 7, 7, 8]
    assert protocols.select_folds(folds, [1])[0].fold == 1
    assert protocols.select_folds(folds, None) == folds
    assert [f.fold for f in protocols.select_folds(folds, [3, 0])] == [3, 0]
    for bad in ([5], [1, 1], [-1]):
        with pytest.raises(ValueError, match="RUN_FOLDS"):
            protocols.select_folds(folds, bad)
    with pytest.raises(ValueError):
        protocols.contiguous_folds(30, 1)
    with pytest.raises(ValueError):
        protocols.contiguous_folds(30, 31)


def test_cell_instances_components_and_min_size():
    p = np.zeros((8, 8))
    p[0:3, 0:3] = 0.9  # 9 px
    p[5, 5] = 0.8  # 1 px
    p[6, 6] = 0.7  # diagonal neighbour: a separate 4-connected component
    lab = postprocess.cell_instances(p, 0.5)
    assert lab.dtype == np.uint16 and lab.max() == 3
    lab = postprocess.cell_instances(p, 0.5, min_size=2)
    assert lab.max() == 1 and (lab > 0).sum() == 9
    assert postprocess.cell_instances(p, 0.75).max() == 2  # the 0.7 pixel is below the threshold


def _result(**changes) -> ExperimentResult:
    fields = dict(experiment="x", dataset="isbi2012", profile="smoke", recipe={"dataset": "isbi2012"},
                  protocol="k-fold", runs=[{"fold": 0, "value": np.float32(0.5), "arr": np.arange(3),
                                            "nan": float("nan")}],
                  mean={"value": np.float64(0.5)}, data={"train_volume": "abc"}, timings={"wall": 1.0},
                  files={"submission": "sub.tif"}, extra={"note": (1, 2)})
    fields.update(changes)
    return ExperimentResult(**fields)


def test_result_file_roundtrip(tmp_path):
    path = results.write_result(tmp_path / "x.json", _result())
    payload = json.loads(path.read_text())
    assert payload["schema"] == results.SCHEMA == "unetlib-result-v2"
    result = results.read_result(path)
    assert isinstance(result, ExperimentResult)
    run = result.runs[0]
    assert run["value"] == 0.5 and run["arr"] == [0, 1, 2] and run["nan"] is None
    assert result.mean == {"value": 0.5} and result.extra == {"note": [1, 2]}
    assert result.files == {"submission": "sub.tif"} and result.data == {"train_volume": "abc"}
    assert result.run_values("fold") == [0]
    assert result.environment["packages"]["torch"] and "hardware" in result.environment
    assert set(results.read_results(tmp_path)) == {"x"}
    (tmp_path / "timings.json").write_text(json.dumps({"01_isbi2012_em": 3.0}))  # not a result file: skipped
    assert set(results.read_results(tmp_path)) == {"x"}
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(UnetlibError, match="not a unetlib result file"):
        results.read_result(tmp_path / "bad.json")
    with pytest.raises(UnetlibError, match="bad.json"):
        results.read_results(tmp_path)
    assert set(results.read_results(tmp_path, strict=False)) == {"x"}
    (tmp_path / "old.json").write_text(json.dumps({"schema": "unetlib-result-v1", "experiment": "old"}))
    with pytest.raises(UnetlibError, match="unetlib-result-v2"):
        results.read_result(tmp_path / "old.json")
    (tmp_path / "bad.json").write_text(json.dumps({"schema": results.SCHEMA, "experiment": "y", "folds": []}))
    with pytest.raises(UnetlibError, match="malformed"):
        results.read_result(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UnetlibError, match="bad.json"):
        results.read_result(tmp_path / "bad.json")


def test_one_array_digest_for_data_and_results():
    assert not hasattr(results, "array_digest")  # result files record manifest.pixel_digest, the manifest's digest
    a = np.zeros((2, 2), np.uint8)
    assert manifests.pixel_digest(a) != manifests.pixel_digest(a.astype(np.uint16))
    assert manifests.pixel_digest(a) != manifests.pixel_digest(a.reshape(1, 4))
    assert manifests.pixel_digest(np.asfortranarray(np.arange(6).reshape(2, 3))) == manifests.pixel_digest(
        np.arange(6).reshape(2, 3))


def _isbi_result():
    fold = {"fold": 0, "test_slices": [0, 1], "warping_error": 0.001, "rand_error": 0.1, "pixel_error": 0.08}
    return _result(experiment="isbi2012_em", profile="cpu", runs=[fold],
                   mean={"warping_error": 0.001, "rand_error": 0.1, "pixel_error": 0.08})


def test_tables_hold_paper_rows_ours_and_delta(tmp_path):
    t1 = tables.table1(_isbi_result())
    assert len(t1) == len(paper.TABLE1) + 3
    assert t1.iloc[-1]["Pixel error"] == pytest.approx(0.08 - 0.0611)
    assert "u-net, this kit (cpu)" in t1.iloc[len(paper.TABLE1)]["Group"]
    assert len(tables.table1(None)) == len(paper.TABLE1)
    cell = _result(experiment="PhC-C2DH-U373", dataset="PhC-C2DH-U373", profile="cpu", mean={"SEG": 0.8},
                   runs=[{"direction": "01->02", "SEG": 0.7}, {"direction": "02->01", "SEG": 0.9}])
    t2 = tables.table2({"PhC-C2DH-U373": cell})
    assert t2.iloc[-1]["PhC-U373"] == pytest.approx(0.8 - 0.9203)
    assert np.isnan(t2.iloc[-1]["DIC-HeLa"])
    assert list(t2.iloc[-3:-1]["PhC-U373"]) == [0.7, 0.9]  # the two directions
    paths = tables.write_table(t2, tmp_path / "t2", "Table 2")
    md = paths[0].read_text()
    assert "| u-net (2015) | paper (challenge test set) | 0.9203 | 0.7756 |" in md
    assert "held-out training data" in md
    assert "0.9203" in paths[2].read_text() and paths[1].read_text().startswith("Name,")


def test_tables_from_written_result_files(tmp_path):
    results.write_result(tmp_path / "isbi.json", _isbi_result())
    read = results.read_results(tmp_path)
    t1 = tables.table1(read["isbi2012_em"])
    assert t1.iloc[-1]["Pixel error"] == pytest.approx(0.08 - 0.0611)


def test_update_readme_replaces_only_the_results_section(tmp_path):
    from unetlib.reproduce import update_readme

    (tmp_path / "reports" / "cpu").mkdir(parents=True)
    (tmp_path / "reports" / "cpu" / "results.md").write_text("| a |\n|---|\n| 1 |\n")
    (tmp_path / "README.md").write_text("# x\n<!-- results:start -->\nold\n<!-- results:end -->\n## after\n")
    update_readme("cpu", tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "old" not in text and "| 1 |" in text and text.endswith("<!-- results:end -->\n## after\n")
    with pytest.raises(UnetlibError, match="run the smoke profile"):
        update_readme("smoke", tmp_path)
    # the claims page's section is filled when 05_claims wrote its summary, and left alone otherwise
    (tmp_path / "docs").mkdir()
    claims_page = tmp_path / "docs" / "claims.md"
    claims_page.write_text("# claims\n<!-- claims:start -->\nold claims\n<!-- claims:end -->\n")
    update_readme("cpu", tmp_path)
    assert "old claims" in claims_page.read_text()
    (tmp_path / "reports" / "cpu" / "claims.md").write_text("| claim | verdict |\n|---|---|\n| tiles | supported |\n")
    assert claims_page in update_readme("cpu", tmp_path)
    text = claims_page.read_text()
    assert "old claims" not in text and "| tiles | supported |" in text and "| 1 |" in (tmp_path / "README.md").read_text()
    assert text.endswith("| tiles | supported |\n<!-- claims:end -->\n")
    (tmp_path / "README.md").write_text("# x\n<!-- results:start -->\nno end marker\n")
    with pytest.raises(UnetlibError, match="results:start"):
        update_readme("cpu", tmp_path)
    (tmp_path / "README.md").write_text("# no results section\n")
    with pytest.raises(UnetlibError, match="results:start"):
        update_readme("cpu", tmp_path)


def test_reports_map_to_source_notebooks_and_datasets():
    from unetlib.environment import project_root
    from unetlib.reproduce import NOTEBOOKS, REPORTS, plan, reproduce

    assert NOTEBOOKS == ("00_method", "01_isbi2012_em", "02_phc_u373", "02_dic_hela", "03_paper_tables")
    assert REPORTS["02_phc_u373"] == ("02_cell_tracking", ("PhC-C2DH-U373",))
    assert REPORTS["02_dic_hela"] == ("02_cell_tracking", ("DIC-C2DH-HeLa",))
    for source, datasets in REPORTS.values():
        assert (project_root() / "notebooks" / f"{source}.ipynb").is_file(), source
        assert set(datasets) <= set(data.DATASETS)
    with pytest.raises(UnetlibError, match="unknown profile"):
        reproduce("fast", fetch=False)
    with pytest.raises(UnetlibError, match="unknown report"):
        reproduce("smoke", ("04_paper_tables",), fetch=False)
    with pytest.raises(UnetlibError, match="unknown profile"):  # a dry run refuses the same requests
        plan("fast")
    with pytest.raises(UnetlibError, match="unknown report"):
        plan("smoke", ("04_paper_tables",))


def test_without_history_uppercase_globals_are_the_parameters():
    """nbval executes without input history and never injects: the defaults are returned."""
    ns = {"__name__": "x", "WIDTH": 4, "LR": 0.01, "np": object(), "_X": 1}
    assert validate_parameters(["", "", ""], ns) == {"WIDTH": 4, "LR": 0.01}


def test_interpretation_names_the_test_cells_larger_than_any_training_cell():
    from unetlib.text import interpret

    run = {"direction": "01->02", "SEG": 0.5, "objects": 10, "matched_objects": 7, "foreground_iou": 0.6,
           "threshold": 0.5, "min_size": 0, "postprocessing": "tuned on the training sequence",
           "by_size": {"within": {"cells": 8, "matched": 7, "jaccard": 0.6},
                       "larger": {"cells": 2, "matched": 0, "jaccard": 0.0}}}
    result = ExperimentResult(experiment="DIC-C2DH-HeLa", dataset="DIC-C2DH-HeLa", profile="cpu", recipe=None,
                              protocol="p", runs=[run], mean={"SEG": 0.5})
    lines = interpret(result)
    assert any("2 of its 10 test cells are larger than any annotated training cell: 0 of them found" in line
               and "7 of 8" in line for line in lines)
    all_larger = dict(run, by_size={"within": {"cells": 0, "matched": 0, "jaccard": None},
                                    "larger": {"cells": 10, "matched": 7, "jaccard": 0.5}})
    assert any(line.endswith("(mean Jaccard 0.500, unfound cells counting 0)") for line in interpret(
        ExperimentResult(experiment="x", dataset="DIC-C2DH-HeLa", profile="cpu", recipe=None, protocol="p",
                         runs=[all_larger], mean={"SEG": 0.5})))
    older = dict(run)
    del older["by_size"]  # result files written before the size breakdown still read
    assert not any("larger than any" in line for line in interpret(
        ExperimentResult(experiment="x", dataset="DIC-C2DH-HeLa", profile="cpu", recipe=None, protocol="p",
                         runs=[older], mean={"SEG": 0.5})))


def test_git_revision_is_dirty_for_code_changes_but_not_for_rewritten_reports(tmp_path):
    import subprocess

    from unetlib.environment import git_revision

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "table.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = git_revision(tmp_path)
    assert clean is not None and not clean.endswith("+dirty")
    (tmp_path / "reports" / "table.md").write_text("new\n")
    assert git_revision(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_revision(tmp_path) == clean + "+dirty"


@pytest.mark.parametrize("fields, native", [
    ({"flags": "fpu avx2 avx512f avx512bw avx512_vnni"}, False),  # AVX-512 without BF16: oneDNN emulates, slower
    ({"flags": "fpu avx2 avx512f avx512_bf16"}, True),
    ({"flags": "fpu avx2 avx512f amx_bf16 amx_tile"}, True),
    ({"flags": "fpu sse2 avx2"}, False),
    ({"Features": "fp asimd bf16 i8mm"}, True),  # Arm
    ({}, False),  # no /proc/cpuinfo: fp32
])
def test_bf16_autocast_only_on_cpus_with_bf16_instructions(monkeypatch, fields, native):
    from unetlib import environment

    monkeypatch.delenv("UNETLIB_NO_BF16", raising=False)
    monkeypatch.setattr(environment, "_cpuinfo", lambda: fields)
    environment.cpu_has_bf16.cache_clear()
    try:
        assert environment.cpu_has_bf16() is native
        monkeypatch.setenv("UNETLIB_NO_BF16", "1")
        environment.cpu_has_bf16.cache_clear()
        assert environment.cpu_has_bf16() is False
    finally:
        environment.cpu_has_bf16.cache_clear()


def test_seed_table_and_readme_section_give_every_number_over_seeds():
    from unetlib.study import StudyResult

    def row(seed, unit, seg):
        return {"variant": "cpu", "seed": seed, "unit": unit, "SEG": seg, "final_loss": 0.1}

    spec = {"name": "s", "recipe": {"dataset": "DIC-C2DH-HeLa"}, "variants": {"cpu": {}}, "seeds": [0, 1, 2],
            "units": ["01->02", "02->01"]}
    runs = [row(0, "01->02", 0.6), row(0, "02->01", 0.7), row(1, "01->02", 0.62), row(1, "02->01", 0.68),
            row(2, "01->02", 0.64), row(2, "02->01", 0.66)]
    table = tables.seed_table({"DIC-C2DH-HeLa": StudyResult(spec, runs)})
    mean_row = table.iloc[0]
    assert mean_row["Unit"] == "mean of directions 01->02, 02->01" and mean_row["n seeds"] == 3
    assert mean_row["Mean"] == pytest.approx(0.65) and mean_row["Min"] == pytest.approx(0.65)
    assert mean_row["Paper"] == paper.UNET_TABLE2["DIC-C2DH-HeLa"]
    first = table.set_index("Unit").loc["01->02"]
    assert first["Mean"] == pytest.approx(0.62) and first["SD"] == pytest.approx(0.02) and first["Max"] == 0.64
    text = tables.to_markdown(table)
    # 95 % of the mean: 0.62 -+ t(0.975, 2) 0.02 / sqrt(3) = -+ 0.0497; one more seed: -+ 4.3027 0.02 sqrt(4/3)
    assert "| DIC-C2DH-HeLa | SEG | 01->02 | 3 | 0.6200 | 0.5703–0.6697 | 0.0200 | 0.6000 | 0.6400 | 0.5206–0.7194 | – |" in text


def test_goal_table_judges_each_goal_by_the_mean_over_seeds():
    from unetlib import profiles
    from unetlib.errors import UnetlibError
    from unetlib.study import StudyResult

    def row(seed, unit, seg, objects=1):
        return {"variant": "cpu", "seed": seed, "unit": unit, "SEG": seg, "final_loss": 0.1,
                "result": {"objects": objects}}

    cross = StudyResult({"name": "s", "recipe": {"dataset": "DIC-C2DH-HeLa"}, "variants": {"cpu": {}},
                         "seeds": [0, 1, 2], "units": ["01->02", "02->01"]},
                        [row(s, u, v) for s, vals in enumerate([(0.6, 0.7), (0.62, 0.68), (0.64, 0.66)])
                         for u, v in zip(("01->02", "02->01"), vals)])
    # held-out blocks pooled by their cells: seed 0 (0.9 * 3 + 0.5 * 1) / 4 = 0.8, seed 1 (0.7 * 3 + 0.9) / 4 = 0.75
    both = StudyResult({"name": "b", "recipe": {"dataset": "DIC-C2DH-HeLa"}, "variants": {"cpu": {}},
                        "seeds": [0, 1], "units": ["block0", "block1"]},
                       [row(0, "block0", 0.9, 3), row(0, "block1", 0.5, 1), row(1, "block0", 0.7, 3),
                        row(1, "block1", 0.9, 1)])
    goals = {"DIC-C2DH-HeLa": {"SEG": 0.70, "direction_SEG": 0.63, "SEG_both_sequences": 0.78},
             "isbi2012": {"rand_error": 0.06}}  # no ISBI study: that goal is left out
    table = tables.goal_table(goals, {"DIC-C2DH-HeLa": cross}, {"DIC-C2DH-HeLa": both}).set_index("Unit")
    assert list(table.index) == ["mean of directions (trained on one sequence)", "01->02", "02->01",
                                 "held-out blocks (trained on both sequences)"]
    assert table["Mean"].tolist() == pytest.approx([0.65, 0.62, 0.68, 0.775])
    assert table["Met by the mean"].tolist() == [False, False, True, False]
    assert table["Goal"].tolist() == ["≥ 0.7", "≥ 0.63", "≥ 0.63", "≥ 0.78"]
    assert table.loc["01->02", "Min"] == 0.6 and table.loc["01->02", "Max"] == 0.64
    assert table.loc["held-out blocks (trained on both sequences)", "Paper"] == paper.UNET_TABLE2["DIC-C2DH-HeLa"]
    with pytest.raises(UnetlibError, match="unknown goal 'IoU'"):
        tables.goal_table({"DIC-C2DH-HeLa": {"IoU": 0.9}}, {"DIC-C2DH-HeLa": cross})
    for name in profiles.NAMES:  # every profile's goals name numbers the table knows
        tables.goal_table(profiles.load(name).goals, {"DIC-C2DH-HeLa": cross}, {"DIC-C2DH-HeLa": both})


def test_layer_shapes_give_fig1_of_the_paper():
    from unetlib.model import layer_shapes

    shapes = layer_shapes(width=64, size=572)
    assert shapes[0] == ("conv_d0a-b", (64, 570, 570)) and shapes[-1] == ("conv_u0d-score", (2, 388, 388))
    assert max(c for _, (c, _, _) in shapes) == 1024  # the bottom of the U
    assert sum(1 for name, _ in shapes if name.startswith(("conv", "upconv"))) == 23


def test_the_papers_figures_draw_from_arrays_and_results(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from unetlib import augment, figures, geometry
    from unetlib.model import layer_shapes

    rng = np.random.default_rng(0)
    image = rng.random((96, 80)).astype(np.float32)
    fig = figures.architecture(layer_shapes(width=4, size=188), save=tmp_path / "fig1.png")
    assert "188×188 input" in fig.axes[0].get_title() and (tmp_path / "fig1.png").stat().st_size > 0
    layout = geometry.plan_tiles(image.shape, tile=252)
    fig = figures.overlap_tiles(image, layout, input_tile=252, save=tmp_path / "fig2.png")
    assert len(fig.axes[1].patches) == 2 * layout.n_tiles + 1  # each tile's outline and write window, the frame
    instances = np.zeros((96, 80), np.int32)
    instances[10:40, 10:40], instances[10:40, 42:70] = 1, 2
    target, weights = (instances > 0).astype(np.float32), 1 + 9 * (instances == 0)
    fig = figures.weight_map_panel(image, target, weights, "(a) raw image", instances=instances, save=tmp_path / "fig3.png")
    assert [a.get_title()[:3] for a in fig.axes[:4]] == ["(a)", "(b)", "(c)", "(d)"]
    assert len(figures.weight_map_panel(image, target, weights, "section 0").axes) == 3 + 1  # and the colour bar
    assert "row" in figures.border_profile(target, weights).axes[0].get_xlabel()
    field = augment.displacement_field(augment.elastic_grid(rng, points=3, sigma=10.0), image.shape)
    fig = figures.elastic_deformation(image, field, image, step=16, save=tmp_path / "elastic.png")
    assert len(fig.axes) == 3
    example = {"image": image, "gt": instances, "pred": instances, "prob": image}
    np.savez(tmp_path / "example.npz", **example)
    cell = _result(experiment="PhC-C2DH-U373", dataset="PhC-C2DH-U373", profile="cpu", mean={"SEG": 0.8},
                   runs=[{"direction": "01->02", "SEG": 0.7, "example": "example.npz"}])
    fig = figures.segmentation_examples({"PhC-C2DH-U373": cell}, tmp_path, save=tmp_path / "fig4.png")
    assert len(fig.axes) == 2 and "SEG 0.700" in fig.axes[1].get_title()
    assert all((tmp_path / f"{n}.png").stat().st_size > 0 for n in ("fig1", "fig2", "fig3", "elastic", "fig4"))


# --------------------------------------------------------------------------- output folders, one-line errors


def test_output_dir_without_output_dir_is_a_new_runs_folder_never_reports(tmp_path, monkeypatch, capsys):
    import re

    from unetlib import notebook

    monkeypatch.setattr(notebook, "project_root", lambda: tmp_path)
    first = notebook.output_dir("", "01_isbi2012_em")
    second = notebook.output_dir("", "01_isbi2012_em")  # within the same second: a folder of its own
    assert first.parent == second.parent == tmp_path / "runs" and first != second
    assert re.fullmatch(r"01_isbi2012_em-\d{8}-\d{6}Z", first.name) and second.name.startswith(first.name)
    assert first.is_dir() and second.is_dir() and not (tmp_path / "reports").exists()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"OUTPUT_DIR not given: writing to runs/{first.name} ") and len(lines) == 2
    assert notebook.output_dir("reports/smoke", "01_isbi2012_em") == tmp_path / "reports" / "smoke"  # reproduce's
    assert notebook.output_dir(str(tmp_path / "abs"), "x") == tmp_path / "abs"
    assert capsys.readouterr().out == ""  # a folder given: nothing to say


def test_every_notebook_writes_to_its_own_runs_folder_unless_told():
    """Each notebook names itself to output_dir and takes no reports/ default of its own."""
    import re

    from unetlib.environment import project_root

    for path in sorted((project_root() / "notebooks").glob("*.ipynb")):
        code = "".join("".join(c["source"]) + "\n" for c in json.loads(path.read_text())["cells"]
                       if c["cell_type"] == "code")
        calls = re.findall(r"output_dir\(([^)]*)\)", code.replace("import output_dir", ""))
        assert calls == [f'OUTPUT_DIR, "{path.stem}"'], (path.name, calls)


def test_a_unetlib_error_in_ipython_is_one_line_and_other_errors_keep_their_traceback(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from unetlib.notebook import show_errors_in_one_line

    shell = InteractiveShell.instance()
    try:
        assert show_errors_in_one_line()
        result = shell.run_cell("from unetlib.errors import UnetlibError\n"
                                "def deep():\n    raise UnetlibError('SEEDS must list\\n at least 2 seeds')\ndeep()")
        assert not result.success and isinstance(result.error_in_exec, UnetlibError)  # the cell still fails
        assert capsys.readouterr().out.strip() == "UnetlibError: SEEDS must list at least 2 seeds"
        result = shell.run_cell("1 / 0")
        assert not result.success
        assert "Traceback" in capsys.readouterr().out  # not ours: shown in full
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()
    assert not show_errors_in_one_line()  # outside IPython: nothing to install


@pytest.mark.slow
def test_a_notebook_parameter_error_under_papermill_is_one_line(tmp_path):
    """Through a real kernel: papermill stops at the cell, whose error output is the message alone."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("PROFILE = 'smoke'\nWIDTH = 4", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from unetlib.notebook import validate_parameters\n"
                                          "PARAMS = validate_parameters(In, globals())")]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    with pytest.raises(PapermillExecutionError) as err:
        papermill.execute_notebook(str(tmp_path / "nb.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"WITDH": 8}, progress_bar=False, kernel_name="python3")
    expected = "UnetlibError: unknown parameter(s) WITDH; this notebook accepts: PROFILE, WIDTH"
    assert err.value.ename == "UnetlibError" and len(err.value.traceback) == 1
    assert err.value.traceback[0].startswith(expected)
    outputs = [o for c in json.loads((tmp_path / "out.ipynb").read_text())["cells"] for o in c.get("outputs", [])
               if o["output_type"] == "error"]
    assert len(outputs) == 1 and len(outputs[0]["traceback"]) == 1 and outputs[0]["traceback"][0].startswith(expected)


@pytest.mark.slow
def test_reproduces_kernels_start_without_the_unencrypted_transport_warning(tmp_path):
    """ipykernel warns for every kernel over plain TCP; the kernels reproduce starts use CurveZMQ instead."""
    import subprocess
    import sys

    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    script = ("import sys, papermill\nfrom unetlib.reproduce import kernel_options\n"
              "options = kernel_options() if sys.argv[1] == 'ours' else {}\n"
              "papermill.execute_notebook('nb.ipynb', sys.argv[1] + '.ipynb', progress_bar=False, "
              "kernel_name='python3', **options)\n")
    runs = {how: subprocess.run([sys.executable, "-c", script, how], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300) for how in ("plain", "ours")}
    assert all(run.returncode == 0 for run in runs.values()), runs
    assert '"42\\n"' in (tmp_path / "ours.ipynb").read_text()
    if "without encryption" not in runs["plain"].stderr:
        pytest.skip("this ipykernel does not warn about unencrypted transport")
    assert "without encryption" not in runs["ours"].stderr and "Message signing" not in runs["ours"].stderr


def test_counts_in_the_tables_read_as_english():
    from unetlib.values import counted

    def isbi(folds):
        runs = [{"fold": f, "test_slices": [6 * f, 6 * f + 5], "warping_error": 0.001, "rand_error": 0.05,
                 "pixel_error": 0.07} for f in folds]
        return ExperimentResult(experiment="isbi2012_em", dataset="isbi2012", profile="smoke", recipe=None,
                                protocol="p", runs=runs, mean={"warping_error": 0.001, "rand_error": 0.05,
                                                                "pixel_error": 0.07})

    assert "held-out training sections (1 fold)" in set(tables.table1(isbi([0]))["Source"])  # the smoke profile's
    assert "held-out training sections (2 folds)" in set(tables.table1(isbi([0, 1]))["Source"])
    assert [counted(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]


def test_the_recipes_choices_are_a_plain_table_the_notebooks_can_show():
    from unetlib import text
    from unetlib.recipe import preset

    recipe = preset("PhC-C2DH-U373", "cpu")
    table = text.choices_table(recipe, ["class_weights", "train."])
    assert list(table.columns) == ["choice", "value", "why"] and len(table)
    assert all(name.startswith(("class_weights", "train.")) for name in table.choice)
    assert all(isinstance(v, str) for v in table.value)  # None, numbers and flags as written in the recipe
    shown = tables.to_markdown(table)
    assert shown.startswith("| choice | value | why |") and "class_weights" in shown
