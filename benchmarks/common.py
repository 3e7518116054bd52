"""What every benchmark shares: where reports go, the machine description, writing them."""

from __future__ import annotations

import json
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[1] / "reports" / "benchmarks"


def machine_info() -> dict:
    """CPU model, cores, torch threads, native bf16 and the GPU (:func:`unetlib.environment.hardware`), torch version."""
    import torch

    from unetlib.environment import hardware

    info = hardware()
    info.setdefault("gpu", None)
    info["torch"] = torch.__version__
    return info


def cpu_name() -> str:
    """The CPU's model name for a report's header (:func:`unetlib.environment.cpu_model`)."""
    import platform

    from unetlib.environment import cpu_model

    return cpu_model() or platform.machine()


def write_report(out_dir: str | Path, name: str, report: dict, markdown: str) -> None:
    """Write ``name``.json (with the machine description) and ``name``.md; print the Markdown."""
    from unetlib.atomic import write_text

    out_dir = Path(out_dir)
    write_text(out_dir / f"{name}.json", json.dumps({"machine_info": machine_info(), **report}, indent=2) + "\n")
    write_text(out_dir / f"{name}.md", markdown)
    print(markdown)
    print(f"wrote {out_dir / (name + '.json')} and {out_dir / (name + '.md')}")
