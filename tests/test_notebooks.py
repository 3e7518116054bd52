"""Every report under the smoke profile through papermill, then assertions on its result files.

(`make test` also runs the notebooks as stored with `pytest --nbval-lax notebooks`.)
"""

import ast
import json

import pytest

from unetlib.environment import project_root
from unetlib.recipe import PROFILES
from unetlib.reproduce import NOTEBOOKS, REPORTS, profile_parameters, reproduce
from unetlib.results import read_results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("reports_smoke")
    timings = reproduce("smoke", NOTEBOOKS, out, fetch=False)
    return out, timings, read_results(out)


def assert_tables_read_like_the_papers(nb: dict, name: str) -> None:
    """No pandas frame with its index, no NaN and no six-decimal number outside a warping-error column."""
    import re

    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            assert 'class="dataframe"' not in "".join(data.get("text/html", "")), f"{name}: a raw pandas table"
            text = "".join(data.get("text/markdown", ""))
            if "|---" not in text:
                continue
            assert "NaN" not in text and "nan |" not in text, f"{name}: NaN in a table"
            for table in re.findall(r"(?:^\|.*\n?)+", text, flags=re.MULTILINE):  # each table of the output
                header, *rows = table.splitlines()
                for row in rows if "arping" not in header else []:
                    six = re.search(r"\b\d\.\d{6}\b", row)
                    assert not six or "arping" in row, f"{name}: six decimals outside a warping error: {row}"


def test_every_report_ran_and_holds_no_machine_paths(smoke_run):
    out, timings, _ = smoke_run
    assert set(timings) == set(NOTEBOOKS)
    root = str(project_root().resolve())
    for name in NOTEBOOKS:
        text = (out / f"{name}.ipynb").read_text()
        nb = json.loads(text)
        assert nb["metadata"]["papermill"]["parameters"]["PROFILE"] == "smoke"
        assert not nb["metadata"]["papermill"].get("exception")
        assert root not in text, f"{name} holds the checkout's absolute path"
        assert "site-packages" not in text, f"{name} holds a warning with a local path"
        streams = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "stream"]
        assert sum(len(o["text"]) for o in streams) < 20_000, f"{name}: progress output floods the report"
        assert_tables_read_like_the_papers(nb, name)


def test_isbi_result_is_held_out_seeded_per_fold_and_in_range(smoke_run):
    _, _, res = smoke_run
    r = res["isbi2012_em"]
    assert r.profile == "smoke" and r.environment["git_revision"] is not None
    assert r.recipe["dataset"] == "isbi2012" and r.recipe["profile"] == "smoke"
    for fold in r.runs:
        assert not set(fold["train_slices"]) & set(fold["test_slices"])
        assert sorted(fold["train_slices"] + fold["test_slices"]) == list(range(30))
        assert 0 <= fold["warping_error"] <= 1 and 0 <= fold["rand_error"] <= 1 and 0 <= fold["pixel_error"] <= 1
        assert fold["metrics"]["pixel_error"] == pytest.approx(fold["pixel_error"])
        assert fold["seed"] == fold["recipe"]["train"]["seed"] == r.recipe["train"]["seed"] + fold["fold"]
    assert r.mean["pixel_error"] == pytest.approx(sum(r.run_values("pixel_error")) / len(r.runs))


@pytest.mark.parametrize("name", ["PhC-C2DH-U373", "DIC-C2DH-HeLa"])
def test_cell_results_are_held_out_and_in_range(smoke_run, name):
    out, _, res = smoke_run
    r = res[name]
    assert {d["direction"] for d in r.runs} == {"01->02", "02->01"}
    assert len({d["seed"] for d in r.runs}) == 2, "each direction trains with its own seed"
    for d in r.runs:
        assert d["train_sequence"] != d["test_sequence"]
        assert 0 <= d["SEG"] <= 1 and d["objects"] > 0
        assert d["recipe"]["dataset"] == name and d["recipe"]["train"]["seed"] == d["seed"]
        res_dir = out / d["res_dir"]
        assert sorted(p.name for p in res_dir.glob("mask*.tif")) == [f"mask{t:03d}.tif" for t in d["test_frames"]]
    assert r.mean["SEG"] == pytest.approx(sum(d["SEG"] for d in r.runs) / 2)


def test_tables_and_figures_written(smoke_run):
    out, _, res = smoke_run
    for stem in ("table1", "table2"):
        for ext in (".md", ".csv", ".tex"):
            assert (out / f"{stem}{ext}").stat().st_size > 0
    assert "u-net, this kit (smoke)" in (out / "table1.md").read_text()
    assert "held-out training data" in (out / "table2.md").read_text()
    for fig in ("fig1_architecture.png", "fig2_overlap_tile.png", "fig3_weight_map.png", "augmented_sample.png",
                "elastic_deformation.png", "fig4_segmentations.png", "isbi2012_example.png"):
        assert (out / fig).stat().st_size > 1000
    assert 8 < res["method"].extra["displacement"]["grid_std_px"] < 12
    assert res["method"].extra["seam_max_abs_logit_difference"] < 1e-3


def test_every_profile_file_matches_its_notebook():
    """Each profile's parameter file sets only names the notebook declares (else papermill would fail)."""
    for report, (source, _) in REPORTS.items():
        nb = json.loads((project_root() / "notebooks" / f"{source}.ipynb").read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
        declared = {t.id for node in ast.parse("".join(cell["source"])).body for t in node.targets}
        for profile in PROFILES:
            params = profile_parameters(profile, report)
            assert set(params) <= declared, (profile, report, set(params) - declared)
            assert params["PROFILE"] == profile


def test_committed_notebooks_are_clean():
    """Sources carry no outputs or execution counts, and keep their parameters tag."""
    for path in sorted((project_root() / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path.name
        assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1, path.name


def test_seed_study_appendix_runs_resumes_and_writes_its_table(tmp_path, data_root):
    from unetlib.study import read_study

    reproduce("smoke", ("06_seeds",), tmp_path, fetch=False)
    result = read_study(tmp_path / "PhC-C2DH-U373" / "study.json")
    assert [(r["seed"], r["unit"]) for r in result.runs] == [(0, "01->02"), (1, "01->02")]
    assert "PhC-C2DH-U373" in (tmp_path / "seeds.md").read_text()
    held = read_study(tmp_path / "holdout" / "PhC-C2DH-U373" / "study.json")  # trained in the same round
    assert [(r["seed"], r["unit"]) for r in held.runs] == [(7, "01->02")]
    assert "| PhC-C2DH-U373 | 01->02 | SEG | 2 |" in (tmp_path / "holdout.md").read_text()
    assert (tmp_path / "PhC-C2DH-U373_SEG.png").stat().st_size > 1000
    nb = json.loads((tmp_path / "06_seeds.ipynb").read_text())
    assert not nb["metadata"]["papermill"].get("exception")
    assert_tables_read_like_the_papers(nb, "06_seeds")


def test_budget_appendix_draws_the_curve_of_its_points(tmp_path, data_root):
    reproduce("smoke", ("07_budget",), tmp_path, fetch=False)
    nb = json.loads((tmp_path / "07_budget.ipynb").read_text())
    assert not nb["metadata"]["papermill"].get("exception")
    assert_tables_read_like_the_papers(nb, "07_budget")
    curve = (tmp_path / "budget.csv").read_text().splitlines()
    assert len(curve) == 1 + 3 * 2  # three points of the smoke profile, one fold and its mean
    assert (tmp_path / "budget.png").stat().st_size > 1000
    assert "width-4 points" in (tmp_path / "reading.md").read_text()


def test_both_sequence_appendix_holds_every_frame_out_once(tmp_path, data_root):
    from unetlib.study import read_study

    reproduce("smoke", ("08_both_sequences",), tmp_path, fetch=False)
    nb = json.loads((tmp_path / "08_both_sequences.ipynb").read_text())
    assert not nb["metadata"]["papermill"].get("exception")
    assert_tables_read_like_the_papers(nb, "08_both_sequences")
    result = read_study(tmp_path / "PhC-C2DH-U373-both" / "study.json")
    held = [run["result"]["test_frames"] for run in result.runs]
    assert sorted(t for h in held for t in h["02"]) == sorted(
        [10, 17, 19, 20, 22, 26, 35, 36, 41, 49, 51, 52, 59, 74, 77, 85, 92, 106, 112])
    assert "PhC-C2DH-U373" in (tmp_path / "both_sequences.md").read_text()


def test_claims_notebook_shows_every_section_and_decides_every_claim(tmp_path, data_root):
    reproduce("smoke", ("05_claims",), tmp_path, fetch=False)
    nb = json.loads((tmp_path / "05_claims.ipynb").read_text())
    assert not nb["metadata"]["papermill"].get("exception")
    assert_tables_read_like_the_papers(nb, "05_claims")
    section, shown = None, {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and "".join(cell["source"]).startswith("## "):
            section = "".join(cell["source"]).splitlines()[0]
            shown[section] = False
        elif cell["cell_type"] == "code" and section is not None:
            shown[section] |= any(o.get("output_type") in ("display_data", "execute_result", "stream")
                                  for o in cell["outputs"])
    assert shown and all(shown.values()), [s for s, ok in shown.items() if not ok]  # no claim section left empty
    lines = (tmp_path / "claims.csv").read_text().splitlines()
    assert lines[0].startswith("claim,section,metric,comparison")
    words = ("supported", "contradicted", "no effect larger than", "undecided", "not testable at this budget")
    assert len(lines) - 1 >= 9 and all(any(w in line for w in words) for line in lines[1:])
