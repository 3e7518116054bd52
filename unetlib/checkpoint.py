"""Checkpoints: the model's configuration and weights, plus optional training state.

Writes are atomic (a temporary file in the same folder, then ``os.replace``),
so an interruption never leaves a half-written checkpoint, and an existing
checkpoint is only ever replaced by a complete one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unetlib.atomic import atomic_open
from unetlib.errors import UnetlibError
from unetlib.model import UNet

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "load_model"]

FORMAT = "unetlib-checkpoint-v1"


def save_checkpoint(path: str | Path, model: UNet, **state: Any) -> Path:
    """Atomically write ``model`` (config + weights) and any extra ``state`` to ``path``.

    Extra keys (e.g. ``optimizer``, ``iteration``, ``rng``) are stored as given.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "model_config": model.config(),
        "model_state": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        **state,
    }
    with atomic_open(path) as f:
        torch.save(payload, f)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise UnetlibError(f"checkpoint {path} does not exist; train one with `unetlib train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or not a torch file
        raise UnetlibError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
            "it is corrupt or not a unetlib checkpoint: delete it and train again"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UnetlibError(f"{path} is not a unetlib checkpoint (expected format {FORMAT!r})")
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu") -> UNet:
    """Rebuild the :class:`UNet` saved in ``path``, in eval mode on ``device``."""
    payload = load_checkpoint(path)
    model = UNet(**payload["model_config"])
    try:
        model.load_state_dict(payload["model_state"])
    except RuntimeError as exc:
        raise UnetlibError(f"checkpoint {path} does not match its own model configuration: {exc}") from exc
    return model.to(device).eval()
