"""Checkpoints: data, never code. The model's configuration and weights, its recipe, optional training state.

A checkpoint file is read with ``torch.load(weights_only=True)``, PyTorch's
restricted unpickler that only rebuilds tensors and plain containers, so a
crafted file cannot run code. Everything else in it is plain data (numbers,
strings, lists, dicts). A sha256 digest of the weights is stored beside them
and checked on every load: a flipped byte in a tensor is reported, not used.

Writes are atomic (:mod:`unetlib.atomic`), so an interruption or a full disk
never leaves a half-written checkpoint, and a good checkpoint is only ever
replaced by a complete one.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch

from unetlib.atomic import atomic_open
from unetlib.errors import UnetlibError, short_repr
from unetlib.model import UNet

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "load_model", "update_metadata", "weights_digest"]

FORMAT = "unetlib-checkpoint-v2"
_MODEL_KEYS = {"in_channels", "num_classes", "width", "variant", "dropout"}


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = _plain(state[name])
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy in the standard (row-major) layout, whatever the model's memory format."""
    return tensor.detach().cpu().clone(memory_format=torch.contiguous_format)


def save_checkpoint(path: str | Path, model: UNet, **state: Any) -> Path:
    """Atomically write ``model`` (config, weights and their digest) and extra plain ``state`` to ``path``.

    Extra keys (e.g. ``optimizer``, ``iteration``, ``metadata``) must hold
    tensors or plain data only, since loading refuses anything else.
    """
    path = Path(path)
    weights = {k: _plain(v) for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "model_config": model.config(),
        "model_state": weights,
        "weights_sha256": weights_digest(weights),
        **state,
    }
    with atomic_open(path) as f:
        torch.save(payload, f)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`: no code is run, the weights' digest is checked.

    Raises
    ------
    UnetlibError
        Missing, unreadable, not a unetlib checkpoint, holding objects other
        than tensors and plain data, malformed, or with weights that do not
        match their digest (corrupt).
    """
    path = Path(path)
    if path.is_dir():
        raise UnetlibError(f"checkpoint {path} is a folder, not a file; give its last.pt (e.g. {path / 'last.pt'})")
    if not path.is_file():
        raise UnetlibError(f"checkpoint {path} does not exist; train one with `unetlib train`")
    try:
        with warnings.catch_warnings():  # the safe unpickler warns about files it then refuses anyway
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or objects the safe loader refuses
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, OSError) and not isinstance(exc, PermissionError) or "zip archive" in str(exc):
            reason = f"truncated or not a PyTorch file: {reason}"
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it holds objects other than tensors and plain data, which are never unpickled"
        raise UnetlibError(
            f"checkpoint {path} cannot be read safely ({reason[:200]}); "
            "it is corrupt or not a unetlib checkpoint: delete it and train again"
        ) from None
    _check_payload(path, payload)
    return payload


def _check_payload(path: Path, payload: Any) -> None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise UnetlibError(f"{path} is not a unetlib checkpoint (format {found!r}, expected {FORMAT!r})")
    config, state = payload.get("model_config"), payload.get("model_state")
    if not isinstance(config, dict) or set(config) != _MODEL_KEYS:
        known = ", ".join(sorted(_MODEL_KEYS))
        raise UnetlibError(f"checkpoint {path} has a malformed model_config {short_repr(config)} (expected the keys "
                           f"{known}): it is not from this version of unetlib or was altered; train again")
    bad = [k for k in ("in_channels", "num_classes", "width")
           if isinstance(config[k], bool) or not isinstance(config[k], int) or not 1 <= config[k] <= 1 << 16]
    if not isinstance(config["dropout"], (int, float)) or isinstance(config["dropout"], bool):
        bad.append("dropout")
    if not isinstance(config["variant"], str):
        bad.append("variant")
    if bad:
        raise UnetlibError(f"checkpoint {path} has a malformed model_config ({', '.join(bad)} "
                           f"{short_repr({k: config[k] for k in bad})}): train again")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnetlibError(f"checkpoint {path} has no valid model_state (a dict of tensors): train again")
    if payload.get("weights_sha256") != weights_digest(state):
        raise UnetlibError(
            f"checkpoint {path} is corrupt: its weights do not match their stored sha256 digest; "
            "restore it from a backup or train again"
        )


def load_model(path: str | Path, device: str | torch.device = "cpu", payload: dict | None = None) -> UNet:
    """Rebuild the :class:`UNet` saved in ``path``, in eval mode on ``device``.

    ``payload`` is the already loaded :func:`load_checkpoint` of ``path`` (read again when None).
    The configuration is first checked against the stored tensors' shapes (first and last layer:
    width, input channels, classes), so a crafted configuration (e.g. an enormous width) is
    refused before the network is allocated: the network built is then the size of the stored one.
    """
    payload = load_checkpoint(path) if payload is None else payload
    config, state = payload["model_config"], payload["model_state"]
    try:
        for name, shape in (("conv_d0a_b.weight", (config["width"], config["in_channels"], 3, 3)),
                            ("conv_u0d_score.weight", (config["num_classes"], config["width"], 1, 1))):
            if name not in state or tuple(state[name].shape) != shape:
                found = tuple(state[name].shape) if name in state else "missing"
                raise UnetlibError(f"{name} is {found}, the configuration implies {shape}")
        model = UNet(**payload["model_config"])
        model.load_state_dict(payload["model_state"])
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise UnetlibError(f"checkpoint {path} does not match its own model configuration ({first}): train again") from None
    return model.to(device).eval()


def update_metadata(path: str | Path, **entries: Any) -> Path:
    """Set ``entries`` in the checkpoint's ``metadata`` (plain data), rewriting it atomically; weights unchanged."""
    path = Path(path)
    payload = load_checkpoint(path)
    payload["metadata"] = {**(payload.get("metadata") or {}), **entries}
    with atomic_open(path) as f:
        torch.save(payload, f)
    return path
