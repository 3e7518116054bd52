"""CUDA paths: seamless tiling on the GPU, an AMP training step, a GPU checkpoint read on the CPU.

Skipped without a CUDA GPU; ``benchmarks/gpu_check.sh`` runs them on a GPU machine.
"""

import numpy as np
import pytest
import torch

from unetlib.checkpoint import load_model
from unetlib.inference import Tiling, predict
from unetlib.model import UNet
from unetlib.runtime import amp_dtype
from unetlib.train import TrainConfig, train

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"), pytest.mark.cuda]


def _image(shape=(700, 900), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 255).astype(np.uint8)


def test_tiled_cuda_prediction_equals_cpu_within_bf16():
    torch.manual_seed(0)
    model = UNet(width=16).eval()
    image = _image()
    cpu = predict(model, image, output="logits", tiling=Tiling(tile=380, device="cpu", amp=False))
    gpu = predict(model, image, output="logits", tiling=Tiling(tile=380, device="cuda", amp=True))
    whole = predict(model, image, output="logits", tiling=Tiling(tile=1084, device="cuda", amp=True))
    scale = np.abs(cpu).max()
    assert np.abs(gpu - cpu).max() <= 0.05 * scale  # bf16 autocast against fp32
    assert np.abs(gpu - whole).max() <= 0.05 * scale  # seamless on the GPU too
    # fp32 on the GPU: PyTorch lets cuDNN use TF32 (10-bit mantissa) for fp32 convolutions on Ampere and
    # later by default; over the 23 layers that moves logits by up to ~2 % of the largest (emulated: 0.3-1.6 %).
    tf32 = predict(model, image, output="logits", tiling=Tiling(tile=380, device="cuda", amp=False))
    assert np.abs(tf32 - cpu).max() <= 3e-2 * scale
    allowed = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:  # true fp32: the same as the CPU to accumulation-order rounding
        fp32 = predict(model, image, output="logits", tiling=Tiling(tile=380, device="cuda", amp=False))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = allowed
    assert np.abs(fp32 - cpu).max() <= 1e-3 * scale


def test_amp_training_step_learns_and_checkpoint_loads_on_cpu(tmp_path):
    rng = np.random.default_rng(1)
    target = (rng.random((300, 300)) > 0.5).astype(np.uint8)
    image = (60 + 120 * target + rng.integers(0, 30, target.shape)).astype(np.uint8)
    weight = np.ones(target.shape, np.float32)
    config = TrainConfig(width=8, tile=252, iterations=30, optimizer="adam", lr=1e-3, device="cuda",
                         checkpoint_every=30, seed=0)
    assert amp_dtype(torch.device("cuda")) in (torch.bfloat16, torch.float16)
    result = train([image], [target], [weight], config, checkpoint_dir=tmp_path, progress=False)
    losses = [h[1] for h in result.history]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
    on_cpu = load_model(result.checkpoint, device="cpu")
    gpu_state = {k: v.float().cpu() for k, v in result.model.state_dict().items()}
    for name, value in on_cpu.state_dict().items():
        assert torch.equal(value.float(), gpu_state[name]), name
