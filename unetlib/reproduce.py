"""Reproduce the paper: fetch missing data, then run every report notebook under one profile with papermill.

``python -m unetlib.reproduce [--profile cpu] [--only 01_isbi2012_em ...] [--workers N | --scheduler ADDR] [--dry-run]``

The default profile is ``gpu`` when a CUDA GPU is present, else ``cpu``.
Each report ``reports/PROFILE/NAME.ipynb`` is the executed copy of a source
notebook (see :data:`REPORTS`; the two cell-tracking reports come from one
notebook with a ``DATASET`` parameter) run with the parameters the profile's
file gives it (``unetlib/profiles/PROFILE.yaml``, :func:`profile_parameters`). Executed copies hold paths relative
to the project only. Wall times are collected in ``reports/PROFILE/timings.json``.

Missing datasets are downloaded first (non-interactively, from the sources
printed with their terms of use, checked against the shipped checksums;
``UNETLIB_DATA_URL`` points to a mirror).
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml

from unetlib import data, fanout, profiles, protocols, recipe, results, tables
from unetlib.atomic import folder_lock, write_text
from unetlib.cli import OneLineParser
from unetlib.data import data_root
from unetlib.environment import project_root
from unetlib.errors import UnetlibError
from unetlib.fetch import fetch, source_urls
from unetlib.recipe import PROFILES

#: report name -> (source notebook, datasets it reads): what a plain ``reproduce`` runs, in order
REPORTS = {
    "00_method": ("00_method", ("isbi2012", "DIC-C2DH-HeLa")),
    "01_isbi2012_em": ("01_isbi2012_em", ("isbi2012",)),
    "02_phc_u373": ("02_cell_tracking", ("PhC-C2DH-U373",)),
    "02_dic_hela": ("02_cell_tracking", ("DIC-C2DH-HeLa",)),
    "03_paper_tables": ("03_paper_tables", ()),
}
#: the appendix: run only when asked for (``--only 04_training_diagnosis``)
APPENDIX = {
    "04_training_diagnosis": ("04_training_diagnosis", ("PhC-C2DH-U373", "DIC-C2DH-HeLa")),
    "05_claims": ("05_claims", ("isbi2012", "DIC-C2DH-HeLa")),
    "06_seeds": ("06_seeds", ("isbi2012", "PhC-C2DH-U373", "DIC-C2DH-HeLa")),
    "07_budget": ("07_budget", ("isbi2012",)),
    "08_both_sequences": ("08_both_sequences", ("PhC-C2DH-U373", "DIC-C2DH-HeLa")),
}
ALL_REPORTS = {**REPORTS, **APPENDIX}
#: reports with a folder of their own (default ``reports/PROFILE``): the seed studies
FOLDERS = {"06_seeds": "{profile}-seeds", "07_budget": "{profile}-budget", "08_both_sequences": "{profile}-seeds"}
NOTEBOOKS = tuple(REPORTS)
TERMS = (
    "Terms of use: ISBI 2012 (Cardona et al. 2010; Arganda-Carreras et al. 2015): non-commercial research "
    "with citation. Cell Tracking Challenge (Maska et al. 2014, 2023; Ulman et al. 2017): cite the challenge; "
    "public use outside the challenge needs the data providers' permission. See data/README.md."
)


def profile_reports(profile: str) -> tuple[str, ...]:
    """The reports a plain reproduction of ``profile`` runs: :data:`REPORTS`, with the profile's appendices
    (``appendices`` in its file) before the tables, which read them."""
    extra = tuple(profiles.load(profile).appendices)
    unknown = [r for r in extra if r not in APPENDIX]
    if unknown:
        raise UnetlibError(f"profile {profile}: unknown appendices {unknown}; choose from {', '.join(APPENDIX)}")
    main = [r for r in NOTEBOOKS if r != "03_paper_tables"]
    return (*main, *extra, "03_paper_tables")


def default_profile() -> str:
    return "gpu" if torch.cuda.is_available() else "cpu"


def profile_parameters(profile: str, report: str, root: Path | None = None) -> dict:
    """The papermill parameters of ``report`` under ``profile``: what the profile's file gives the parameters the
    notebook declares (:meth:`unetlib.profiles.Profile.notebook_parameters`), and a cell-tracking report's
    ``DATASET``."""
    declared = _accepted(report, root or project_root())
    params = {k: v for k, v in profiles.load(profile).notebook_parameters(report).items() if k in declared}
    if "DATASET" in declared:
        params["DATASET"] = ALL_REPORTS[report][1][0]
    return params


def fetch_missing(reports, root=None) -> list[str]:
    """Download every dataset the reports read that is not in the data root yet; return their names."""
    needed = sorted({d for name in reports for d in ALL_REPORTS[name][1]})
    missing = [d for d in needed if not (data_root(root) / d).exists()]
    if missing:
        print(TERMS, flush=True)
    for name in missing:
        print(f"fetching {name} from {', '.join(source_urls(name))} into {data_root(root)} ...", flush=True)
        fetch(name, root, progress=sys.stderr.isatty())
    return missing


def run_notebook(report: str, profile: str, output_dir: Path, root: Path | None = None, **overrides) -> float:
    """Execute one report with papermill; return its wall time in seconds."""
    import papermill  # here: about 5 s to import, and --headless and --update-readme do without it

    root = root or project_root()
    source, _ = ALL_REPORTS[report]
    params = {**profile_parameters(profile, report, root), **overrides}
    params["OUTPUT_DIR"] = _display_path(output_dir, root)
    out = output_dir / f"{report}.ipynb"
    running = output_dir / f".{report}.running.ipynb"  # the previous good report stays until this one succeeds
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(root / "notebooks" / f"{source}.ipynb"), str(running), parameters=params,
            cwd=str(root / "notebooks"), progress_bar=False, log_output=False, kernel_name="python3",
            **kernel_options(),
        )
    except BaseException:
        if running.is_file():
            failed = output_dir / f"{report}.failed.ipynb"
            scrub_paths(running, root)
            os.replace(running, failed)
            print(f"[{profile}] {report} failed; the executed notebook is {_display_path(failed, root)}",
                  file=sys.stderr)
        raise
    scrub_paths(running, root)
    os.replace(running, out)
    (output_dir / f"{report}.failed.ipynb").unlink(missing_ok=True)
    return time.perf_counter() - start


def kernel_options() -> dict:
    """papermill's options for the notebooks' kernel: CurveZMQ transport encryption where it is available.

    Started over TCP without it (jupyter_client's default), ipykernel 7 prints
    "Kernel is running over TCP without encryption" for every notebook. The
    kernelspec that ``ipykernel install`` writes declares Curve support, and
    jupyter_client provisions the keys when its manager is asked to ("auto");
    where pyzmq lacks Curve or jupyter_client predates the setting, nothing changes.
    """
    import zmq
    from jupyter_client.manager import KernelManager

    if not zmq.has("curve") or "transport_encryption" not in KernelManager.class_trait_names():
        return {}
    from traitlets.config import Config

    return {"config": Config({"KernelManager": {"transport_encryption": "auto"}})}


def scrub_paths(notebook: Path, root: Path) -> None:
    """Make an executed notebook hold paths relative to the project only (papermill writes absolute ones)."""
    text = notebook.read_text(encoding="utf-8")
    home = str(Path.home())
    for absolute, relative in ((str(root.resolve()) + "/", ""), (str(root.resolve()), "."), (home, "~")):
        text = text.replace(json.dumps(absolute)[1:-1], relative)
    write_text(notebook, text)


def _display_path(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _read_timings(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        timings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"note: {path} is unreadable ({exc}); starting a new one", file=sys.stderr)
        return {}
    if not isinstance(timings, dict) or not all(isinstance(v, (int, float)) for v in timings.values()):
        print(f"note: {path} is malformed; starting a new one", file=sys.stderr)
        return {}
    return timings


def reproduce(profile: str, reports=NOTEBOOKS, output_dir: Path | None = None, *, fetch: bool = True,
              **overrides) -> dict[str, float]:
    """Run ``reports`` in order under ``profile``; return and save their wall times."""
    _check_request(profile, reports)
    root = project_root()
    main_dir = Path(output_dir or root / "reports" / profile)
    main_dir.mkdir(parents=True, exist_ok=True)
    if fetch:
        fetch_missing(reports)
    for name in reports:
        print(f"[{profile}] running {name} ...", flush=True)
        extra = {k: v for k, v in overrides.items() if k in _accepted(name, root)}
        folder = report_folder(name, profile, output_dir, root)
        with folder_lock(folder, "reproduction"):  # two reproductions into one folder would mix their reports
            seconds = run_notebook(name, profile, folder, root, **extra)
            # the reproduction's wall times in timings.json (the README's total), the appendix's apart
            timings_path = folder / ("timings.json" if name in REPORTS else "timings_appendix.json")
            timings = {**_read_timings(timings_path), name: round(seconds, 1)}
            write_text(timings_path, json.dumps(timings, indent=1) + "\n")
        print(f"[{profile}] {name}: {seconds / 60:.1f} min -> {_display_path(folder / (name + '.ipynb'), root)}",
              flush=True)
    timings = _read_timings(main_dir / "timings.json")
    print(f"[{profile}] reports total {sum(timings.values()) / 60:.1f} min; tables in {_display_path(main_dir, root)}")
    return timings


def plan(profile: str, reports=NOTEBOOKS, output_dir: Path | None = None, **overrides) -> list[str]:
    """What :func:`reproduce` would run, one line per report (its folder and parameters), printed; nothing runs.
    The same checks as a real run: the profile, the reports, and every parameter against its notebook."""
    _check_request(profile, reports)
    root, lines = project_root(), []
    for name in reports:
        params = {**profile_parameters(profile, name, root),
                  **{k: v for k, v in overrides.items() if k in _accepted(name, root)}}
        if "OVERRIDES" in params:  # the recipe fields are checked as the notebook will check them
            if not isinstance(params["OVERRIDES"], dict):
                raise UnetlibError(f"OVERRIDES must be a mapping of recipe fields, got {params['OVERRIDES']!r}")
            for dataset in ([params["DATASET"]] if "DATASET" in params else ALL_REPORTS[name][1]):
                recipe.preset(dataset, profile).replace(**params["OVERRIDES"])
        folder = _display_path(report_folder(name, profile, output_dir, root), root)
        lines.append(f"[{profile}] would run {name} into {folder} with {params}")
        print(lines[-1])
    return lines


def _check_request(profile: str, reports) -> None:
    """Refuse an unknown profile or report in one line naming the known ones (a real run and a plan alike)."""
    if profile not in PROFILES:
        raise UnetlibError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    unknown = [r for r in reports if r not in ALL_REPORTS]
    if unknown:
        raise UnetlibError(f"unknown report(s) {unknown}; choose from {', '.join(ALL_REPORTS)}")


def report_folder(report: str, profile: str, output_dir: Path | None = None, root: Path | None = None) -> Path:
    """Where ``report`` is written: ``output_dir`` when given, else ``reports/PROFILE`` (or its own folder)."""
    if output_dir is not None:
        return Path(output_dir)
    name = FOLDERS.get(report, "{profile}").format(profile=profile)
    return (root or project_root()) / "reports" / name


def _accepted(report: str, root: Path) -> set[str]:
    """Parameter names the report's notebook declares (fan-out options go only where they exist)."""
    source, _ = ALL_REPORTS[report]
    nb = json.loads((root / "notebooks" / f"{source}.ipynb").read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    return {t.id for node in ast.parse("".join(cell["source"])).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def reproduce_headless(profile: str, output_dir: Path | None = None, *, runner=None, fetch: bool = True,
                       root=None) -> dict[str, float]:
    """The experiments and tables of ``profile`` without notebooks (the same library calls the notebooks make).

    For machines without Jupyter (clusters, offline GPU boxes): writes the
    result files, Table 1 and Table 2 and ``results.md`` into ``output_dir``,
    with each experiment's parameters taken from the profile's files
    (including its ``WORKERS``, unless a ``runner`` is given).
    """
    project = project_root()
    output_dir = Path(output_dir or project / "reports" / profile)
    output_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(output_dir, "reproduction"):
        if fetch:
            fetch_missing(NOTEBOOKS, root)
        timings = {}
        start = time.perf_counter()
        isbi = profile_parameters(profile, "01_isbi2012_em", project)
        found = {"isbi2012_em": protocols.run_isbi2012(
            recipe.preset("isbi2012", profile), output_dir, folds=isbi.get("FOLDS", 5), run_folds=isbi.get("RUN_FOLDS"),
            submission_slices=isbi.get("SUBMISSION_SLICES", 0), root=root,
        runner=runner or fanout.runner(isbi.get("WORKERS", 0)))}
        timings["01_isbi2012_em"] = round(time.perf_counter() - start, 1)
        for report in ("02_phc_u373", "02_dic_hela"):
            start = time.perf_counter()
            params = profile_parameters(profile, report, project)
            found[params["DATASET"]] = protocols.run_ctc(recipe.preset(params["DATASET"], profile), output_dir,
                                                         directions=params.get("DIRECTIONS", data.DIRECTIONS),
                                                         root=root,
                                                         runner=runner or fanout.runner(params.get("WORKERS", 0)))
            timings[report] = round(time.perf_counter() - start, 1)
        for name, result in found.items():
            results.write_result(output_dir / f"{name}.json", result)
        t1, t2 = tables.table1(found["isbi2012_em"]), tables.table2(found)
        tables.write_table(t1, output_dir / "table1", f"Table 1 (ISBI 2012), profile {profile}.")
        tables.write_table(t2, output_dir / "table2", f"Table 2 (SEG), profile {profile}.")
        timings_path = output_dir / "timings.json"
        timings = {**_read_timings(timings_path), **timings}
        write_text(timings_path, json.dumps(timings, indent=1) + "\n")
        write_text(output_dir / "results.md", tables.results_markdown(found, timings, profile))
        print(f"[{profile}] headless: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()))
        return timings


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
#: The generated sections of the documentation beside the README's results: (page, section name, the report file
#: that fills it, the report that writes it). A section is filled when its page has its markers
#: (``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``) and the report file exists.
SECTIONS = (
    ("docs/claims.md", "claims", "{profile}/claims.md", "05_claims"),
    ("docs/budget.md", "budget", "{profile}-budget/budget.md", "07_budget"),
    ("docs/budget.md", "budget-reading", "{profile}-budget/reading.md", "07_budget"),
    ("docs/budget.md", "gpu-prediction", "{profile}-budget/gpu_prediction.md", "07_budget"),
    ("docs/both-sequences.md", "both-sequences", "{profile}-seeds/both_sequences.md", "08_both_sequences"),
)


def update_readme(profile: str, root: Path | None = None, dry_run: bool = False) -> list[Path]:
    """Put ``reports/PROFILE/results.md`` (written by 03_paper_tables) into the README's results section, and
    each report file of :data:`SECTIONS` that exists into its page's section; return the pages written (with
    ``dry_run``: the pages that would be, nothing written)."""
    root = root or project_root()
    results_md = root / "reports" / profile / "results.md"
    if not results_md.is_file():
        raise UnetlibError(f"{results_md.relative_to(root)} does not exist: run the {profile} profile first")
    readme = root / "README.md"
    text = _replace_section(readme.read_text(encoding="utf-8"), README_START, README_END, results_md.read_text(
        encoding="utf-8"), f"Generated from `reports/{profile}/` by `python -m unetlib.reproduce --profile {profile} "
        "--update-readme`; the executed notebooks, tables and figures are there.")
    written = [readme if dry_run else write_text(readme, text)]
    for page, name, source, report in SECTIONS:
        path, found = root / page, root / "reports" / source.format(profile=profile)
        start = f"<!-- {name}:start -->"
        if not (path.is_file() and found.is_file() and start in path.read_text(encoding="utf-8")):
            continue
        text = _replace_section(path.read_text(encoding="utf-8"), start, f"<!-- {name}:end -->",
                                found.read_text(encoding="utf-8"),
                                f"Generated from `reports/{source.format(profile=profile)}`, written by `python -m "
                                f"unetlib.reproduce --profile {profile} --only {report}` (the executed notebook is "
                                "beside it).")
        written.append(path if dry_run else write_text(path, text))
    return list(dict.fromkeys(written))


def _replace_section(text: str, start: str, end: str, body: str, note: str) -> str:
    head, _, rest = text.partition(start)
    _, found, tail = rest.partition(end)
    if not rest or not found:
        raise UnetlibError(f"README.md has no {start} ... {end} section")
    return f"{head}{start}\n{note}\n\n{body.strip()}\n{end}{tail}"


#: notebook parameters that reproduce sets from its own flags, never from -y
_FLAG_PARAMETERS = {"OUTPUT_DIR": "--output-dir", "PROFILE": "--profile", "WORKERS": "--workers",
                    "SCHEDULER": "--scheduler"}


def notebook_parameters(text: str, reports, root: Path | None = None) -> dict:
    """The parameters a ``-y`` YAML mapping gives; each must be a parameter of one of ``reports``."""
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UnetlibError(f"-y is not valid YAML ({str(exc).splitlines()[0]}); give a mapping such as "
                           "-y 'VARIANTS: [w_c-1]'") from None
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise UnetlibError(f"-y must be a mapping of parameter names to values, such as -y 'VARIANTS: [w_c-1]'; "
                           f"got {text!r}")
    for name, flag in _FLAG_PARAMETERS.items():
        if name in params:
            raise UnetlibError(f"give {name} with {flag}, not -y '{name}: ...'")
    root = root or project_root()
    known = set().union(*(_accepted(r, root) for r in reports)) - set(_FLAG_PARAMETERS)
    unknown = sorted(set(params) - known)
    if unknown:
        raise UnetlibError(f"-y: {', '.join(unknown)} is not a parameter of {', '.join(reports)}; "
                           f"choose from {', '.join(sorted(known))}")
    return params


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m unetlib.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=PROFILES, default=None, help="default: gpu on a CUDA GPU, else cpu")
    parser.add_argument("--only", nargs="+", choices=tuple(ALL_REPORTS), help="run only these reports")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: reports/PROFILE")
    parser.add_argument("--workers", type=int, default=None, help="run folds/directions on a local Dask cluster")
    parser.add_argument("--scheduler", default=None, help="run folds/directions on this Dask scheduler")
    parser.add_argument("-y", "--yaml", default=None, metavar="YAML",
                        help="notebook parameters as a YAML mapping, as papermill's -y: -y 'VARIANTS: [w_c-1]'")
    parser.add_argument("--no-fetch", action="store_true", help="do not download missing datasets")
    parser.add_argument("--headless", action="store_true",
                        help="run the experiments and tables without notebooks (no Jupyter needed)")
    parser.add_argument("--update-readme", action="store_true",
                        help="only copy reports/PROFILE/results.md into the README's results section (and the "
                             "appendices' tables into their docs pages)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check every option and parameter and say what would run; run nothing")
    args = parser.parse_args(argv)
    try:
        profile = args.profile or default_profile()
        if args.update_readme:
            pages = update_readme(profile, dry_run=args.dry_run)
            print("would update" if args.dry_run else "updated", ", ".join(_display_path(p, project_root()) for p in pages))
            return 0
        if args.workers is not None and args.workers < 0:
            raise UnetlibError(f"--workers must be >= 0, got {args.workers}")
        if args.output_dir is not None and args.output_dir.exists() and not args.output_dir.is_dir():
            raise UnetlibError(f"--output-dir {args.output_dir} is a file; give a folder (created if missing)")
        if args.scheduler:
            fanout.runner(0, args.scheduler)  # the address is checked now, before any report runs
        overrides = {k: v for k, v in (("WORKERS", args.workers), ("SCHEDULER", args.scheduler)) if v is not None}
        reports = tuple(args.only or profile_reports(profile))
        if args.yaml is not None:
            if args.headless:
                raise UnetlibError("-y sets notebook parameters; drop --headless (or -y)")
            overrides.update(notebook_parameters(args.yaml, reports))
        if args.headless:
            if args.only:
                raise UnetlibError("--headless runs the experiments and tables together; drop --only "
                                   "(or run the notebooks without --headless)")
            given = args.workers is not None or args.scheduler  # else each experiment's profile says
            if args.dry_run:
                print(f"[{profile}] would run the experiments and tables headless into "
                      f"{_display_path(Path(args.output_dir or project_root() / 'reports' / profile), project_root())}")
                return 0
            reproduce_headless(profile, args.output_dir, fetch=not args.no_fetch,
                               runner=fanout.runner(args.workers or 0, args.scheduler) if given else None)
            return 0
        if args.dry_run:
            plan(profile, reports, args.output_dir, **overrides)
            return 0
        reproduce(profile, reports, args.output_dir, fetch=not args.no_fetch, **overrides)
    except UnetlibError as exc:
        print(f"reproduce: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a notebook cell failed: papermill's error carries the cell's exception
        if type(exc).__name__ != "PapermillExecutionError":
            raise
        print(f"reproduce: error: a notebook failed at cell {exc.exec_count}: {exc.ename}: "
              f"{str(exc.evalue).splitlines()[0] if exc.evalue else ''} (the executed copy is saved as "
              "NAME.failed.ipynb beside the reports)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("reproduce: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
