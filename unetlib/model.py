"""The U-Net of Ronneberger, Fischer & Brox (MICCAI 2015), Fig. 1.

References
----------
- Paper, Section 2 and Fig. 1: unpadded 3x3 convolutions + ReLU, 2x2 max-pool,
  2x2 up-convolution, centre crop + concatenation, final 1x1 convolution;
  23 convolution layers in all.
- Original Caffe release (``phseg_v5``): layer names ``conv_d0a-b`` ...
  ``conv_u0d-score``, dropout in place on the last level-3 map and on the
  bottom map, a ReLU after every up-convolution, and 128 outputs for the last
  up-convolution.

Layer names here are the release's with ``-`` written as ``_`` (PyTorch module
names cannot use ``-`` as attributes); :func:`caffe_name` maps them back, so
released weights map one to one.

Size arithmetic (per spatial axis): an input of ``16 k + 60`` pixels gives an
output of ``16 k - 124`` pixels; ``k >= 8`` keeps every max-pool on an even
size. 572 -> 388 is ``k = 32``. The network loses 92 pixels per side.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from unetlib.errors import UnetlibError

__all__ = [
    "UNet",
    "layer_shapes",
    "output_size",
    "input_size_for_output",
    "valid_input_size",
    "check_input_size",
    "nearest_valid_sizes",
    "caffe_name",
    "count_parameters",
    "count_flops",
    "BORDER",
    "MIN_INPUT",
    "VARIANTS",
]

BORDER = 92  #: pixels lost per side by the valid convolutions
MIN_INPUT = 188  #: smallest valid input edge (k = 8)
VARIANTS = ("paper", "phseg_v5")


# --------------------------------------------------------------------------- #
# Size arithmetic
# --------------------------------------------------------------------------- #
def valid_input_size(size: int) -> bool:
    """True if ``size`` is ``16 k + 60`` with ``k >= 8``."""
    return size >= MIN_INPUT and (size - 60) % 16 == 0


def nearest_valid_sizes(size: int) -> tuple[int, int]:
    """The valid input sizes just below and just above ``size``.

    Below ``MIN_INPUT`` both values are ``MIN_INPUT``.
    """
    if size <= MIN_INPUT:
        return MIN_INPUT, MIN_INPUT
    below = 60 + 16 * ((size - 60) // 16)
    above = below if below == size else below + 16
    return max(below, MIN_INPUT), above


def check_input_size(size: int, what: str = "input size") -> int:
    """Return ``size`` if valid, else raise a UnetlibError naming the nearest valid sizes."""
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
        raise UnetlibError(f"{what} must be an integer 16k + 60 (e.g. 188, 508, 572), got {size!r}")
    size = int(size)
    if not valid_input_size(size):
        lo, hi = nearest_valid_sizes(size)
        near = f"{lo}" if lo == hi else f"{lo} or {hi}"
        raise UnetlibError(
            f"{what} {size} is not valid for the U-Net: valid sizes are 16k + 60 "
            f"with k >= 8 (188, 204, ..., 572, ...); nearest: {near}"
        )
    return size


def output_size(input_size: int) -> int:
    """Output edge for a valid input edge: ``output_size(572) == 388``."""
    return check_input_size(input_size) - 2 * BORDER


def input_size_for_output(min_output: int) -> int:
    """Smallest valid input edge whose output edge is at least ``min_output``."""
    need = max(int(min_output) + 2 * BORDER, MIN_INPUT)
    return nearest_valid_sizes(need)[1]


def caffe_name(name: str) -> str:
    """Map a module name of :class:`UNet` to the original Caffe layer name."""
    head, _, tail = name.rpartition("_")
    if head.startswith("conv_") and len(tail) == 1 and head[-1] in "abcd" and "-" not in head:
        return f"{head}-{tail}"
    if name == "conv_u0d_score":
        return "conv_u0d-score"
    return name


# --------------------------------------------------------------------------- #
# Building blocks
# --------------------------------------------------------------------------- #
def _he_normal_(layer: nn.Module, fan_in: int) -> None:
    """Gaussian with std sqrt(2 / N), N = inputs of one neuron; zero bias (paper Sec. 3)."""
    nn.init.normal_(layer.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
    nn.init.zeros_(layer.bias)


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel_size=3, padding=0)
    _he_normal_(conv, fan_in=9 * cin)
    return conv


def _upconv2x2(cin: int, cout: int) -> nn.ConvTranspose2d:
    # each output pixel of a stride-2, 2x2 transposed conv receives exactly one
    # tap from every input channel: its fan-in is cin.
    up = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2)
    _he_normal_(up, fan_in=cin)
    return up


def _center_crop(skip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    dy = (skip.shape[-2] - height) // 2
    dx = (skip.shape[-1] - width) // 2
    return skip[..., dy : dy + height, dx : dx + width]


# --------------------------------------------------------------------------- #
# The network
# --------------------------------------------------------------------------- #
class UNet(nn.Module):
    """The paper's U-Net (Fig. 1) with valid convolutions.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for the paper's grey-value images).
    num_classes : int
        Output channels of the final 1x1 convolution (2 in the paper).
    width : int
        Channels of the first level; level ``l`` has ``width * 2**l``.
        64 is the paper (31,030,658 parameters for ``variant="paper"``).
    variant : {"paper", "phseg_v5"}
        ``"paper"`` follows Fig. 1; ``"phseg_v5"`` follows the released Caffe
        network (ReLU after every up-convolution, 2*width outputs for the last
        up-convolution; 31,100,354 parameters at width 64).
    dropout : float
        Dropout probability on the last level-3 map (``d3c``, also seen by the
        level-3 skip, as in the release) and on the bottom map (``d4c``).
        Active in training mode only. 0 disables it.

    The input must be ``(N, in_channels, H, W)`` with H and W each of the form
    ``16 k + 60`` (k >= 8); the output is ``(N, num_classes, H - 184, W - 184)``
    logits.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        width: int = 64,
        variant: str = "paper",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise UnetlibError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if width < 1 or in_channels < 1 or num_classes < 1:
            raise UnetlibError("width, in_channels and num_classes must be positive")
        if not 0.0 <= dropout < 1.0:
            raise UnetlibError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = width
        self.variant = variant
        self.dropout_p = dropout
        c = [width * 2**level for level in range(5)]  # 64, 128, 256, 512, 1024
        last_up = 2 * width if variant == "phseg_v5" else width

        # contracting path: level l has two 3x3 convs, then a 2x2 max-pool
        self.conv_d0a_b = _conv3x3(in_channels, c[0])
        self.conv_d0b_c = _conv3x3(c[0], c[0])
        self.conv_d1a_b = _conv3x3(c[0], c[1])
        self.conv_d1b_c = _conv3x3(c[1], c[1])
        self.conv_d2a_b = _conv3x3(c[1], c[2])
        self.conv_d2b_c = _conv3x3(c[2], c[2])
        self.conv_d3a_b = _conv3x3(c[2], c[3])
        self.conv_d3b_c = _conv3x3(c[3], c[3])
        self.conv_d4a_b = _conv3x3(c[3], c[4])
        self.conv_d4b_c = _conv3x3(c[4], c[4])
        # expanding path: 2x2 up-conv, concat [up, cropped skip], two 3x3 convs
        self.upconv_d4c_u3a = _upconv2x2(c[4], c[3])
        self.conv_u3b_c = _conv3x3(c[3] + c[3], c[3])
        self.conv_u3c_d = _conv3x3(c[3], c[3])
        self.upconv_u3d_u2a = _upconv2x2(c[3], c[2])
        self.conv_u2b_c = _conv3x3(c[2] + c[2], c[2])
        self.conv_u2c_d = _conv3x3(c[2], c[2])
        self.upconv_u2d_u1a = _upconv2x2(c[2], c[1])
        self.conv_u1b_c = _conv3x3(c[1] + c[1], c[1])
        self.conv_u1c_d = _conv3x3(c[1], c[1])
        self.upconv_u1d_u0a = _upconv2x2(c[1], last_up)
        self.conv_u0b_c = _conv3x3(last_up + c[0], c[0])
        self.conv_u0c_d = _conv3x3(c[0], c[0])
        self.conv_u0d_score = nn.Conv2d(c[0], num_classes, kernel_size=1)
        _he_normal_(self.conv_u0d_score, fan_in=c[0])

        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(p=dropout)  # identity in eval mode
        self.relu_after_upconv = variant == "phseg_v5"

    # ------------------------------------------------------------------ #
    def config(self) -> dict:
        """Constructor arguments, for checkpoints and result files."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "width": self.width,
            "variant": self.variant,
            "dropout": self.dropout_p,
        }

    def _two_convs(self, x: torch.Tensor, a: nn.Conv2d, b: nn.Conv2d) -> torch.Tensor:
        return self.relu(b(self.relu(a(x))))

    def _up(self, x: torch.Tensor, upconv: nn.ConvTranspose2d, skip: torch.Tensor) -> torch.Tensor:
        x = upconv(x)
        if self.relu_after_upconv:
            x = self.relu(x)
        skip = _center_crop(skip, x.shape[-2], x.shape[-1])
        return torch.cat([x, skip], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UnetlibError(
                f"UNet expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        check_input_size(x.shape[-2], "input height")
        check_input_size(x.shape[-1], "input width")
        # Shapes for a 572 x 572 input at width 64 (Fig. 1), as (channels, edge).
        d0 = self._two_convs(x, self.conv_d0a_b, self.conv_d0b_c)  # (64, 572->570->568)
        d1 = self._two_convs(self.pool(d0), self.conv_d1a_b, self.conv_d1b_c)  # (128, 284->282->280)
        d2 = self._two_convs(self.pool(d1), self.conv_d2a_b, self.conv_d2b_c)  # (256, 140->138->136)
        d3 = self._two_convs(self.pool(d2), self.conv_d3a_b, self.conv_d3b_c)  # (512, 68->66->64)
        d3 = self.drop(d3)  # in place in the release: the level-3 skip sees it too
        d4 = self._two_convs(self.pool(d3), self.conv_d4a_b, self.conv_d4b_c)  # (1024, 32->30->28)
        d4 = self.drop(d4)
        u3 = self._up(d4, self.upconv_d4c_u3a, d3)  # (512+512, 56), skip crop 4
        u3 = self._two_convs(u3, self.conv_u3b_c, self.conv_u3c_d)  # (512, 54->52)
        u2 = self._up(u3, self.upconv_u3d_u2a, d2)  # (256+256, 104), skip crop 16
        u2 = self._two_convs(u2, self.conv_u2b_c, self.conv_u2c_d)  # (256, 102->100)
        u1 = self._up(u2, self.upconv_u2d_u1a, d1)  # (128+128, 200), skip crop 40
        u1 = self._two_convs(u1, self.conv_u1b_c, self.conv_u1c_d)  # (128, 198->196)
        u0 = self._up(u1, self.upconv_u1d_u0a, d0)  # (64+64, 392), skip crop 88
        u0 = self._two_convs(u0, self.conv_u0b_c, self.conv_u0c_d)  # (64, 390->388)
        return self.conv_u0d_score(u0)  # (2, 388) logits


def layer_shapes(width: int = 64, size: int = 572) -> list[tuple[str, tuple[int, int, int]]]:
    """(Caffe layer name, (channels, height, width)) of every layer's output for a ``size``² input, in order:
    Fig. 1 recomputed from the network itself (on the meta device: no memory, no arithmetic)."""
    shapes = []
    with torch.device("meta"):
        net = UNet(width=width)
        hooks = [m.register_forward_hook(lambda m, i, o, n=name: shapes.append((caffe_name(n), tuple(o.shape[1:]))))
                 for name, m in net.named_children() if name not in ("relu", "drop", "pool")]
        try:
            net(torch.empty(1, 1, size, size))
        finally:
            for hook in hooks:
                hook.remove()
    return shapes


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, height: int, width: int, *, batch: int = 1, training: bool = False) -> int:
    """FLOPs (a multiply-add counts 2) of one forward pass of ``model`` on a batch of ``batch`` grey
    ``height x width`` inputs; with ``training``, of one training step (forward and backward; the loss and
    the optimiser's update add well under 1 %). Counted by PyTorch's FLOP counter on the meta device (no
    memory, no arithmetic); ``model`` itself is left as it is."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta").train(training)
    inputs = torch.empty(batch, 1, height, width, device="meta")
    with FlopCounterMode(display=False) as counter:
        if training:
            meta(inputs).sum().backward()
        else:
            with torch.no_grad():
                meta(inputs)
    return int(counter.get_total_flops())
