"""Parameter validation, protocols, result files and tables (the notebooks' support code)."""

import json

import numpy as np
import pytest

from unetlib import experiment, paper, results, tables
from unetlib.errors import UnetlibError
from unetlib.notebook import validate_parameters

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
    for injected, match in (('# Parameters\nWIDTH = "16"\n', "WIDTH"), ('# Parameters\nPROFILE = "gpu"\n', "PROFILE")):
        ns = {}
        exec(PARAMS_CELL + injected, ns)
        with pytest.raises(UnetlibError, match=match):
            validate_parameters(_history(PARAMS_CELL, injected), ns)


def test_contiguous_folds_partition_the_slices():
    folds = experiment.contiguous_folds(30, 5)
    assert [f["test"] for f in folds][:2] == [list(range(0, 6)), list(range(6, 12))]
    for f in folds:
        assert sorted(f["train"] + f["test"]) == list(range(30)) and not set(f["train"]) & set(f["test"])
    assert [len(f["test"]) for f in experiment.contiguous_folds(30, 4)] == [8, 7, 7, 8]
    assert experiment.select_folds(folds, [1])[0]["fold"] == 1
    with pytest.raises(ValueError, match="RUN_FOLDS"):
        experiment.select_folds(folds, [5])
    with pytest.raises(ValueError):
        experiment.contiguous_folds(30, 1)


def test_cell_labels_components_and_min_size():
    p = np.zeros((8, 8))
    p[0:3, 0:3] = 0.9  # 9 px
    p[5, 5] = 0.8  # 1 px
    p[6, 6] = 0.7  # diagonal neighbour: a separate 4-connected component
    lab = experiment.cell_labels(p, 0.5)
    assert lab.dtype == np.uint16 and lab.max() == 3
    lab = experiment.cell_labels(p, 0.5, min_size=2)
    assert lab.max() == 1 and (lab > 0).sum() == 9


def test_result_file_roundtrip(tmp_path):
    path = results.write_result(tmp_path / "x.json", {"experiment": "x", "value": np.float32(0.5),
                                                       "arr": np.arange(3), "nan": float("nan")})
    payload = results.read_result(path)
    assert payload["value"] == 0.5 and payload["arr"] == [0, 1, 2] and payload["nan"] is None
    assert payload["environment"]["packages"]["torch"]
    assert "x" in results.read_results(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(UnetlibError, match="not a unetlib result file"):
        results.read_result(tmp_path / "bad.json")
    a = np.zeros((2, 2), np.uint8)
    assert results.array_digest(a) != results.array_digest(a.astype(np.uint16))


def _isbi_result():
    fold = {"fold": 0, "test_slices": [0, 1], "warping_error": 0.001, "rand_error": 0.1, "pixel_error": 0.08}
    return {"profile": "cpu", "protocol": "k-fold", "folds": [fold],
            "mean": {"warping_error": 0.001, "rand_error": 0.1, "pixel_error": 0.08}}


def test_tables_hold_paper_rows_ours_and_delta(tmp_path):
    t1 = tables.table1(_isbi_result())
    assert len(t1) == len(paper.TABLE1) + 3
    assert t1.iloc[-1]["Pixel error"] == pytest.approx(0.08 - 0.0611)
    cell = {"profile": "cpu", "mean": {"SEG": 0.8},
            "directions": [{"direction": "01->02", "SEG": 0.7}, {"direction": "02->01", "SEG": 0.9}]}
    t2 = tables.table2({"PhC-C2DH-U373": cell})
    assert t2.iloc[-1]["PhC-U373"] == pytest.approx(0.8 - 0.9203)
    assert np.isnan(t2.iloc[-1]["DIC-HeLa"])
    paths = tables.write_table(t2, tmp_path / "t2", "Table 2")
    md = paths[0].read_text()
    assert "| u-net (2015) | paper (challenge test set) | 0.9203 | 0.7756 |" in md
    assert "held-out training data" in md
    assert "0.9203" in paths[2].read_text() and paths[1].read_text().startswith("Name,")


def test_update_readme_replaces_only_the_results_section(tmp_path):
    from unetlib.reproduce import update_readme

    (tmp_path / "reports" / "cpu").mkdir(parents=True)
    (tmp_path / "reports" / "cpu" / "results.md").write_text("| a |\n|---|\n| 1 |\n")
    (tmp_path / "README.md").write_text("# x\n<!-- results:start -->\nold\n<!-- results:end -->\n## after\n")
    update_readme("cpu", tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "old" not in text and "| 1 |" in text and text.endswith("<!-- results:end -->\n## after\n")
    with pytest.raises(FileNotFoundError, match="run the smoke profile"):
        update_readme("smoke", tmp_path)


def test_without_history_uppercase_globals_are_the_parameters():
    """nbval executes without input history and never injects: the defaults are returned."""
    ns = {"__name__": "x", "WIDTH": 4, "LR": 0.01, "np": object(), "_X": 1}
    assert validate_parameters(["", "", ""], ns) == {"WIDTH": 4, "LR": 0.01}
