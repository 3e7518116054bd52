"""Each profile is declared once, in its own file (unetlib/profiles/<name>.yaml), and nothing restates it."""

import subprocess

import pytest

from unetlib import profiles
from unetlib.data import DATASETS
from unetlib.environment import project_root
from unetlib.errors import UnetlibError
from unetlib.recipe import Recipe, preset
from unetlib.reproduce import ALL_REPORTS, profile_parameters


@pytest.mark.parametrize("name", profiles.NAMES)
def test_every_profile_builds_a_recipe_of_every_dataset(name):
    for dataset in DATASETS:
        recipe = preset(dataset, name)
        assert isinstance(recipe, Recipe) and recipe.profile == name and recipe.dataset == dataset


def test_the_profile_files_are_the_only_yaml_that_states_a_profile():
    tracked = subprocess.run(["git", "-C", str(project_root()), "ls-files", "--cached", "--others",
                              "--exclude-standard", "*.yaml", "*.yml"],
                             capture_output=True, text=True, check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    assert sorted(p for p in tracked if p != "environment.yml") == sorted(
        f"unetlib/profiles/{n}.yaml" for n in (*profiles.NAMES, "datasets"))


def _flat(data, prefix=""):
    out = {}
    for key, value in (data or {}).items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", profiles.NAMES)
def test_no_layer_of_a_profile_restates_the_value_of_the_layer_below(name):
    profile = profiles.load(name)
    for dataset in DATASETS:
        own, shared, base = (_flat(layer) for layer in reversed(profile.recipe_layers(dataset)))
        assert not {k for k, v in own.items() if k in shared and shared[k] == v}, (name, dataset)
        assert not {k for k, v in {**shared, **own}.items() if k in base and base[k] == v}, (name, dataset)
    wide = {k: v for k, v in profile.notebook_parameters("").items()}
    for report, entries in profile.notebooks.items():
        assert report in ALL_REPORTS, (name, report)
        assert "PROFILE" not in entries
        assert not {k for k, v in entries.items() if wide.get(k) == v}, (name, report)


def test_the_notebook_parameters_come_from_the_profile_file():
    assert profile_parameters("cpu", "01_isbi2012_em")["RUN_FOLDS"] == [0, 2]
    assert profile_parameters("gpu", "01_isbi2012_em")["WORKERS"] == 5  # a report's entry beats the profile's
    assert profile_parameters("gpu", "02_phc_u373") == {"PROFILE": "gpu", "WORKERS": 2, "DATASET": "PhC-C2DH-U373"}
    assert "SEEDS" not in profile_parameters("cpu", "00_method")  # only the names a notebook declares


def test_an_unknown_profile_or_field_is_one_line(monkeypatch, tmp_path):
    with pytest.raises(UnetlibError, match="unknown profile 'laptop'; choose one of"):
        profiles.load("laptop")
    (tmp_path / "datasets.yaml").write_text((profiles.FOLDER / "datasets.yaml").read_text())
    (tmp_path / "odd.yaml").write_text("about: x\nrecipes: {}\n")
    monkeypatch.setattr(profiles, "FOLDER", tmp_path)
    monkeypatch.setattr(profiles, "NAMES", ("odd",))
    profiles.load.cache_clear()
    try:
        with pytest.raises(UnetlibError, match=r"odd.yaml: unknown field\(s\) recipes"):
            profiles.load("odd")
    finally:
        profiles.load.cache_clear()


def _parameters_and_fallback(source: str):
    """A notebook's declared parameters (name -> default) and the fallback its validate_parameters call names."""
    import ast
    import json

    nb = json.loads((project_root() / "notebooks" / f"{source}.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    declared = {}
    exec("".join(cells[0]["source"]), {}, declared)  # noqa: S102 - the notebook's own parameters cell
    fallback = {}
    for node in ast.walk(ast.parse("".join(cells[1]["source"]))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "validate_parameters":
            for kw in node.keywords:
                if kw.arg == "fallback":
                    fallback = {ast.literal_eval(k): ast.unparse(v) for k, v in zip(kw.value.keys, kw.value.values)}
    return declared, fallback


@pytest.mark.parametrize("report", sorted(ALL_REPORTS))
def test_a_notebook_states_no_value_a_profile_gives(report):
    """What a profile gives a notebook is None there (filled from the profile), and no profile restates the
    notebook's own fallback: each value is stated once."""
    source = ALL_REPORTS[report][0]
    declared, fallback = _parameters_and_fallback(source)
    for name in profiles.NAMES:
        given = {k: v for k, v in profile_parameters(name, report).items() if k not in ("PROFILE", "DATASET")}
        assert all(declared[k] is None for k in given), (name, report, [k for k in given if declared[k] is not None])
        restated = [k for k, v in profiles.load(name).notebooks.get(report, {}).items() if repr(v) == fallback.get(k)]
        assert not restated, (name, report, restated)
