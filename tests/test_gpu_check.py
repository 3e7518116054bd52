"""The GPU check's dry run on the CPU: every stage runs within its budget and the archive has its layout."""

import json
import tarfile

import pytest

from benchmarks import gpu_check

pytestmark = pytest.mark.slow


def test_dry_run_runs_every_stage_and_packs_one_archive(tmp_path, data_root):
    out = tmp_path / "check"
    code = gpu_check.main([str(out), "--dry-run", "--budget", "150"])
    status = json.loads((out / "status.json").read_text())
    assert status["dry_run"] and list(status["stages"]) == list(gpu_check.BUDGETS)
    assert status["stages"]["imports"]["status"] == "passed"
    assert status["stages"]["benchmarks"]["status"] == "passed"
    assert code == (0 if all(s["status"] == "passed" for s in status["stages"].values()) else 1)
    assert status["total_s"] <= 150 + 10  # every stage within its share of the budget
    archive = out / "gpu_check.tar.gz"
    assert archive.stat().st_size <= gpu_check.ARCHIVE_LIMIT
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"status.json", "benchmarks/gpu.json", "benchmarks/gpu.md"} <= names
    assert {f"{stage}.log" for stage in gpu_check.BUDGETS} <= names
    assert not any(n.endswith((".pt", ".npz", ".tif")) or "/checkpoints/" in n for n in names)


def test_a_failing_stage_does_not_stop_the_others(tmp_path, monkeypatch):
    commands = {name: ["python3", "-c", f"import sys; sys.exit({1 if name == 'imports' else 0})"]
                for name in gpu_check.BUDGETS}
    monkeypatch.setattr(gpu_check, "stage_commands", lambda out, dry, python: commands)
    status = gpu_check.run_stages(tmp_path, dry=True, budget=60)
    assert status["imports"]["status"] == "failed (exit 1)"
    assert all(status[name]["status"] == "passed" for name in list(gpu_check.BUDGETS)[1:])


def test_a_stage_past_its_budget_is_stopped_and_recorded(tmp_path, monkeypatch):
    commands = {name: ["python3", "-c", "import time; time.sleep(30)" if name == "benchmarks" else "pass"]
                for name in gpu_check.BUDGETS}
    monkeypatch.setattr(gpu_check, "stage_commands", lambda out, dry, python: commands)
    monkeypatch.setitem(gpu_check.BUDGETS, "benchmarks", 1)
    status = gpu_check.run_stages(tmp_path, dry=True, budget=60)
    assert status["benchmarks"]["status"].startswith("timed out") and status["benchmarks"]["seconds"] < 10
    assert status["gpu_profile"]["status"] == "passed"
