"""What every benchmark shares: where reports go, the machine description, writing them."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[1] / "reports" / "benchmarks"


def machine_info() -> dict:
    """CPU model, cores, torch threads and versions, and whether bf16 is native."""
    import torch

    from unetlib.runtime import cpu_has_bf16

    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "cpu_bf16": cpu_has_bf16(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def write_report(out_dir: str | Path, name: str, report: dict, markdown: str) -> None:
    """Write ``name``.json (with the machine description) and ``name``.md; print the Markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps({"machine_info": machine_info(), **report}, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown)
    print(markdown)
    print(f"wrote {out_dir / (name + '.json')} and {out_dir / (name + '.md')}")
