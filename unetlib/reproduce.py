"""Reproduce the paper: run every notebook under one profile with papermill.

``python -m unetlib.reproduce [--profile cpu] [--only 01_isbi2012_em ...]``

The default profile is ``paper`` when a CUDA GPU is present, else ``cpu``.
Each notebook ``notebooks/NAME.ipynb`` runs with the parameter file
``notebooks/profiles/PROFILE/NAME.yaml`` and is written, executed, to
``reports/PROFILE/NAME.ipynb``; its result JSON lands beside it. Wall times
are collected in ``reports/PROFILE/timings.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from unetlib.notebook import PROFILES, project_root

NOTEBOOKS = ("00_method", "01_isbi2012_em", "02_phc_u373", "03_dic_hela", "04_paper_tables")


def default_profile() -> str:
    import torch

    return "paper" if torch.cuda.is_available() else "cpu"


def profile_parameters(profile: str, notebook: str, root: Path | None = None) -> dict:
    """The parameters of ``notebook`` under ``profile`` (from its YAML file)."""
    root = root or project_root()
    path = root / "notebooks" / "profiles" / profile / f"{notebook}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no parameter file {path} for profile {profile!r}")
    return yaml.safe_load(path.read_text()) or {}


def run_notebook(notebook: str, profile: str, output_dir: Path, root: Path | None = None, **overrides) -> float:
    """Execute one notebook with papermill; return its wall time in seconds."""
    import papermill

    root = root or project_root()
    params = {**profile_parameters(profile, notebook, root), **overrides}
    params["OUTPUT_DIR"] = str(output_dir)
    start = time.perf_counter()
    papermill.execute_notebook(
        str(root / "notebooks" / f"{notebook}.ipynb"),
        str(output_dir / f"{notebook}.ipynb"),
        parameters=params,
        cwd=str(root / "notebooks"),
        progress_bar=False,
        log_output=False,
        kernel_name="python3",
    )
    return time.perf_counter() - start


def reproduce(profile: str, notebooks=NOTEBOOKS, output_dir: Path | None = None) -> dict[str, float]:
    """Run ``notebooks`` in order under ``profile``; return and save their wall times."""
    root = project_root()
    output_dir = Path(output_dir or root / "reports" / profile)
    output_dir.mkdir(parents=True, exist_ok=True)
    timings_path = output_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    for name in notebooks:
        print(f"[{profile}] running {name} ...", flush=True)
        seconds = run_notebook(name, profile, output_dir, root)
        timings[name] = round(seconds, 1)
        timings_path.write_text(json.dumps(timings, indent=1) + "\n")
        print(f"[{profile}] {name}: {seconds / 60:.1f} min -> {output_dir / (name + '.ipynb')}", flush=True)
    print(f"[{profile}] total {sum(timings.values()) / 60:.1f} min; tables in {output_dir}")
    return timings


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(profile: str, root: Path | None = None) -> Path:
    """Put ``reports/PROFILE/results.md`` (written by 04_paper_tables) into the README's results section."""
    root = root or project_root()
    results_md = root / "reports" / profile / "results.md"
    if not results_md.is_file():
        raise FileNotFoundError(f"{results_md} does not exist: run the {profile} profile first")
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition(README_START)
    _, _, tail = rest.partition(README_END)
    if not rest:
        raise ValueError(f"README.md has no {README_START} ... {README_END} section")
    body = results_md.read_text(encoding="utf-8").strip()
    note = (f"Generated from `reports/{profile}/` by `python -m unetlib.reproduce --profile {profile} "
            "--update-readme`; the executed notebooks, tables and figures are there.")
    readme.write_text(f"{head}{README_START}\n{note}\n\n{body}\n{README_END}{tail}", encoding="utf-8")
    return readme


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unetlib.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default=None, help="default: paper on a CUDA GPU, else cpu")
    parser.add_argument("--only", nargs="+", choices=NOTEBOOKS, help="run only these notebooks")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: reports/PROFILE")
    parser.add_argument("--update-readme", action="store_true",
                        help="only copy reports/PROFILE/results.md into the README's results section")
    args = parser.parse_args(argv)
    profile = args.profile or default_profile()
    if args.update_readme:
        print("updated", update_readme(profile))
        return 0
    reproduce(profile, tuple(args.only or NOTEBOOKS), args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
