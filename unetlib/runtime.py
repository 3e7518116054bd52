"""Device and precision choices shared by training and inference.

- CUDA when available (``device=None``), with autocast in bf16 where the GPU
  supports it, else fp16;
- on the CPU, bf16 autocast when the processor has native bf16 instructions
  (AVX-512 BF16 or AMX), which runs the U-Net about 2x faster than fp32;
- channels_last memory format in every case (the fast layout for convolutions).
"""

from __future__ import annotations

import contextlib

import torch

from unetlib.environment import cpu_has_bf16
from unetlib.errors import UnetlibError

__all__ = ["pick_device", "cpu_has_bf16", "autocast", "amp_dtype", "to_channels_last"]


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch.device; ``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnetlibError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU; use device='cpu'")
    return device


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype used on ``device``, or None for plain fp32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool = True):
    """Autocast context for ``device`` (a no-op when disabled or unsupported)."""
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_channels_last(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device`` in channels_last layout."""
    return model.to(device=device, memory_format=torch.channels_last)
