"""Every notebook under the smoke profile through papermill, then assertions on its result files.

(`make test` also runs the notebooks as stored with `pytest --nbval-lax notebooks`.)
"""

import json

import pytest

from unetlib.reproduce import NOTEBOOKS, profile_parameters, reproduce
from unetlib.results import read_results
from unetlib.notebook import project_root

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("reports_smoke")
    timings = reproduce("smoke", NOTEBOOKS, out)
    return out, timings, read_results(out)


def test_every_notebook_ran(smoke_run):
    out, timings, _ = smoke_run
    assert set(timings) == set(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = json.loads((out / f"{name}.ipynb").read_text())
        assert nb["metadata"]["papermill"]["parameters"]["PROFILE"] == "smoke"
        assert not nb["metadata"]["papermill"].get("exception")


def test_isbi_result_is_held_out_and_in_range(smoke_run):
    _, _, res = smoke_run
    r = res["isbi2012_em"]
    for key in ("parameters", "choices", "data", "environment", "folds", "mean", "timings_s", "protocol"):
        assert key in r
    assert r["profile"] == "smoke" and r["environment"]["git_revision"] is not None
    for fold in r["folds"]:
        assert not set(fold["train_slices"]) & set(fold["test_slices"])
        assert sorted(fold["train_slices"] + fold["test_slices"]) == list(range(30))
        assert 0 <= fold["warping_error"] <= 1 and 0 <= fold["rand_error"] <= 1 and 0 <= fold["pixel_error"] <= 1
        assert fold["metrics"]["pixel_error"] == pytest.approx(fold["pixel_error"])
    assert r["mean"]["pixel_error"] == pytest.approx(sum(f["pixel_error"] for f in r["folds"]) / len(r["folds"]))


@pytest.mark.parametrize("name", ["PhC-C2DH-U373", "DIC-C2DH-HeLa"])
def test_cell_results_are_held_out_and_in_range(smoke_run, name):
    out, _, res = smoke_run
    r = res[name]
    assert {d["direction"] for d in r["directions"]} == {"01->02", "02->01"}
    for d in r["directions"]:
        assert d["train_sequence"] != d["test_sequence"]
        assert 0 <= d["SEG"] <= 1 and d["objects"] > 0
        res_dir = out / d["res_dir"]
        assert sorted(p.name for p in res_dir.glob("mask*.tif")) == [f"mask{t:03d}.tif" for t in d["test_frames"]]
    assert r["mean"]["SEG"] == pytest.approx(sum(d["SEG"] for d in r["directions"]) / 2)


def test_tables_and_figures_written(smoke_run):
    out, _, res = smoke_run
    for stem in ("table1", "table2"):
        for ext in (".md", ".csv", ".tex"):
            assert (out / f"{stem}{ext}").stat().st_size > 0
    assert "u-net, this kit (smoke)" in (out / "table1.md").read_text()
    assert "held-out training data" in (out / "table2.md").read_text()
    for fig in ("fig1_architecture.png", "fig2_overlap_tile.png", "fig3_weight_map.png",
                "elastic_deformation.png", "fig4_segmentations.png"):
        assert (out / fig).stat().st_size > 1000
    assert 8 < res["method"]["displacement"]["grid_std_px"] < 12


def test_every_profile_file_matches_its_notebook():
    """Each profile's parameter file sets only names the notebook declares (else papermill would fail)."""
    import ast

    for name in NOTEBOOKS:
        nb = json.loads((project_root() / "notebooks" / f"{name}.ipynb").read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
        declared = {t.id for node in ast.parse("".join(cell["source"])).body for t in node.targets}
        for profile in ("smoke", "cpu", "paper"):
            params = profile_parameters(profile, name)
            assert set(params) <= declared, (profile, name, set(params) - declared)
            assert params["PROFILE"] == profile
