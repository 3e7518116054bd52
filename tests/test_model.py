import math

import pytest
import torch

from unetlib.model import (
    UNet,
    caffe_name,
    check_input_size,
    count_parameters,
    input_size_for_output,
    nearest_valid_sizes,
    output_size,
    valid_input_size,
)


@pytest.mark.parametrize("variant, expected", [("paper", 31_030_658), ("phseg_v5", 31_100_354)])
def test_parameter_counts_at_width_64(variant, expected):
    with torch.device("meta"):
        assert count_parameters(UNet(width=64, variant=variant)) == expected


def test_572_gives_388_and_fig1_shapes():
    with torch.device("meta"):
        net = UNet(width=64)
        shapes = {}

        def record(name):
            def hook(module, inputs, output):
                shapes.setdefault(name, tuple(output.shape[1:]))

            return hook

        for name, module in net.named_children():
            module.register_forward_hook(record(name))
        out = net(torch.empty(1, 1, 572, 572))
    assert tuple(out.shape) == (1, 2, 388, 388)
    assert output_size(572) == 388
    # Fig. 1: (channels, edge) at the end of each level
    assert shapes["conv_d0b_c"] == (64, 568, 568)
    assert shapes["conv_d1b_c"] == (128, 280, 280)
    assert shapes["conv_d2b_c"] == (256, 136, 136)
    assert shapes["conv_d3b_c"] == (512, 64, 64)
    assert shapes["conv_d4b_c"] == (1024, 28, 28)
    assert shapes["upconv_d4c_u3a"] == (512, 56, 56)
    assert shapes["conv_u3c_d"] == (512, 52, 52)
    assert shapes["conv_u2c_d"] == (256, 100, 100)
    assert shapes["conv_u1c_d"] == (128, 196, 196)
    assert shapes["conv_u0c_d"] == (64, 388, 388)


def test_23_conv_layers_named_as_the_release():
    net = UNet(width=2)
    convs = [n for n, m in net.named_children() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(convs) == 23
    names = [caffe_name(n) for n in convs]
    assert names[0] == "conv_d0a-b" and names[9] == "conv_d4b-c"
    assert "upconv_d4c_u3a" in names and names[-1] == "conv_u0d-score"


def test_phseg_v5_last_upconv_has_twice_the_width():
    net = UNet(width=4, variant="phseg_v5")
    assert net.upconv_u1d_u0a.out_channels == 8
    assert net.conv_u0b_c.in_channels == 8 + 4
    assert UNet(width=4).upconv_u1d_u0a.out_channels == 4


def test_valid_sizes():
    valid = [s for s in range(100, 700) if valid_input_size(s)]
    assert valid[:3] == [188, 204, 220] and 572 in valid
    assert all((s - 60) % 16 == 0 for s in valid)
    for s in valid:  # every pooling sees an even size
        e = s - 4
        for _ in range(4):
            assert e % 2 == 0
            e = e // 2 - 4
    assert nearest_valid_sizes(570) == (556, 572)
    assert nearest_valid_sizes(100) == (188, 188)
    assert input_size_for_output(388) == 572 and input_size_for_output(389) == 588


def test_invalid_size_names_nearest_valid_sizes():
    with pytest.raises(ValueError, match="556 or 572"):
        check_input_size(570)
    with pytest.raises(ValueError, match="188"):
        UNet(width=2)(torch.zeros(1, 1, 100, 100))


def test_output_of_rectangular_input():
    net = UNet(width=2).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 1, 188, 252)).shape == (2, 2, 4, 68)


def test_dropout_only_in_training():
    net = UNet(width=4, dropout=0.5)
    x = torch.rand(1, 1, 188, 188)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        net.train()
        assert not torch.equal(net(x), net(x))
    net0 = UNet(width=4, dropout=0.0).train()
    with torch.no_grad():
        assert torch.equal(net0(x), net0(x))


def test_he_normal_initialisation_and_zero_bias():
    torch.manual_seed(0)
    net = UNet(width=64)
    w = net.conv_d1b_c.weight  # 3x3 conv on 128 channels: N = 9 * 128
    assert abs(w.std().item() - math.sqrt(2 / (9 * 128))) < 0.002
    assert abs(net.conv_d4b_c.weight.std().item() - math.sqrt(2 / (9 * 1024))) < 0.0005
    assert all(torch.count_nonzero(m.bias) == 0 for m in net.children() if hasattr(m, "bias") and m.bias is not None)


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        UNet(variant="resnet")
    with pytest.raises(ValueError, match="dropout"):
        UNet(dropout=1.0)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        UNet(width=2)(torch.zeros(1, 3, 188, 188))
