"""Overlap-tile inference: seamless stitching, mirroring, TTA, bounded memory, errors, CLI.

(unetlib.geometry: layouts and mirroring; unetlib.preprocess: input scaling;
unetlib.inference: predict; unetlib.predict_cli: ``unetlib predict``.)
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from unetlib import geometry, inference, runtime
from unetlib.checkpoint import save_checkpoint
from unetlib.cli import main as cli_main
from unetlib.errors import UnetlibError
from unetlib.geometry import _BYTES_PER_PIXEL_PER_WIDTH, mirror_index, plan_tiles, tta_transforms
from unetlib.inference import Tiling, predict
from unetlib.model import BORDER, UNet, input_size_for_output, valid_input_size
from unetlib.preprocess import NORMALIZATIONS, normalize_image


# --------------------------------------------------------------------------- #
# Slow, obvious references
# --------------------------------------------------------------------------- #
def reference_logits(model: nn.Module, image: np.ndarray) -> np.ndarray:
    """The network once over the whole image, mirror-padded with numpy (92 px top/left).

    ``image`` is ``(C, H, W)`` float; the bottom/right padding makes the padded
    image a valid size; the output is cropped back to ``(K, H, W)``.
    """
    _, height, width = image.shape
    pad_h = input_size_for_output(height) - height - BORDER
    pad_w = input_size_for_output(width) - width - BORDER
    padded = np.pad(image, ((0, 0), (BORDER, pad_h), (BORDER, pad_w)), mode="reflect")
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))[None])[0].numpy()
    return out[:, :height, :width]


def fewest_pixels_tile(length: int, cap: int) -> int:
    """Brute force: the valid tile <= cap whose grid-aligned tiles cover ``length`` with the fewest input pixels."""
    best = None
    for tile in range(188, cap + 1):
        if not valid_input_size(tile):
            continue
        out = tile - 2 * BORDER
        stride = 16 * (out // 16)
        covered, count = out, 1
        while covered < length:
            if stride == 0:
                count = None
                break
            covered += stride
            count += 1
        if count is None or (count == 1 and tile > input_size_for_output(length)):
            continue
        if best is None or count * tile <= best[0]:
            best = (count * tile, tile)
    return best[1]


def close(actual, expected, scale=None):
    scale = np.abs(expected).max() if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-5 * max(scale, 1.0))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(1)
    return UNet(in_channels=1, num_classes=2, width=2).eval()


_TILING_FIELDS = {f.name for f in dataclasses.fields(Tiling)}


def run(model, image, **kw):
    """``predict`` on the CPU in fp32; tile/batch_size/memory_budget/progress go into its Tiling."""
    options = {k: kw.pop(k) for k in list(kw) if k in _TILING_FIELDS}
    options.setdefault("device", "cpu")
    options.setdefault("amp", False)
    return predict(model, image, tiling=Tiling(**options), **kw)


# --------------------------------------------------------------------------- #
# Mirroring and layout
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_mirror_index_is_numpy_reflect_even_far_outside(size):
    values = np.arange(size) * 10 + 3
    index = np.arange(-BORDER - 40, size + BORDER + 40)
    expected = np.pad(values, (BORDER + 40, BORDER + 40), mode="reflect")
    np.testing.assert_array_equal(values[mirror_index(index, size)], expected)


@pytest.mark.parametrize("shape,tile", [((100, 150), 204), ((388, 388), 572), ((1000, 37), (236, 444)), ((4, 3), 188)])
def test_layout_windows_are_disjoint_grid_aligned_and_cover_the_image(shape, tile):
    layout = plan_tiles(shape, tile)
    hits = np.zeros(shape, dtype=int)
    for y, x in layout.origins():
        assert y % 16 == 0 and x % 16 == 0
        rows, cols = layout.write_window(y, x)
        assert rows.stop - y <= layout.out[0] and cols.stop - x <= layout.out[1]  # inside the tile's output
        hits[rows, cols] += 1
    assert (hits == 1).all()
    assert all((p - 60) % 16 == 0 for p in layout.padded_shape)  # the equivalent whole pass is valid


@pytest.mark.parametrize("length", [1, 50, 388, 389, 700, 2048, 5000])
@pytest.mark.parametrize("cap", [204, 572, 1084])
def test_auto_tile_feeds_fewest_input_pixels(length, cap):
    assert geometry._best_tile(length, cap) == fewest_pixels_tile(length, cap)


def test_auto_tile_is_one_pass_when_it_fits_and_bounded_by_the_budget():
    assert plan_tiles((512, 512)).tile == (700, 700)  # 512 + 184 -> 700 (one pass)
    assert plan_tiles((520, 696)).tile == (716, 892)
    budget, bpp = 50e6, 64.0
    layout = plan_tiles((4000, 3000), bytes_per_pixel=bpp, memory_budget=budget)
    assert layout.tile[0] * layout.tile[1] * bpp <= budget
    assert layout.n_tiles > 1


@pytest.mark.parametrize("shape,first_touch", [((2048, 2048), 0.625), ((520, 696), 0.625), ((512, 512), 0.3125),
                                               ((1000, 300), 2.0), ((2048, 2048), 0.15625), ((3000, 1100), 0.7)])
def test_auto_tile_with_first_touch_has_the_least_cost_of_every_valid_pair(shape, first_touch):
    bpp, budget = 512.0, 4 * 2**30
    chosen = plan_tiles(shape, bytes_per_pixel=bpp, memory_budget=budget, first_touch=first_touch)

    def cost(layout):
        area = layout.tile[0] * layout.tile[1]
        mapped = bpp / 8 * area >= 32 * 2**20  # one feature map beyond glibc's heap: fresh pages
        return (layout.n_tiles + (first_touch if mapped else 0.0)) * area

    pairs = [(h, w) for h in range(204, shape[0] + 2 * BORDER + 16, 16) for w in range(204, shape[1] + 2 * BORDER + 16, 16)
             if valid_input_size(h) and valid_input_size(w) and h * w * bpp <= budget]
    assert cost(chosen) == pytest.approx(min(cost(plan_tiles(shape, pair)) for pair in pairs))
    assert chosen.tile[0] * chosen.tile[1] * bpp <= budget


def test_first_touch_splits_a_large_image_into_reusable_tiles():
    # only tiles whose maps are mapped afresh pay: at width 4 a 700² tile's maps (8 MB) stay in the heap
    assert plan_tiles((512, 512), bytes_per_pixel=128.0, memory_budget=4 * 2**30, first_touch=2.5).tile == (700, 700)
    assert plan_tiles((20, 20), bytes_per_pixel=512.0, memory_budget=1.0, first_touch=0.625).tile == (204, 204)
    # width 16 on 2048²: one 2236² tile touches ~2.3 GB afresh; four 1212² tiles compute 18 % more but
    # touch a quarter of it (their buffers are reused from the second tile on): (4 + 0.625) * 1212² beats
    # (1 + 0.625) * 2236²
    assert plan_tiles((2048, 2048), bytes_per_pixel=512.0, memory_budget=4 * 2**30).tile == (2236, 2236)
    assert plan_tiles((2048, 2048), bytes_per_pixel=512.0, memory_budget=4 * 2**30, first_touch=0.625).tile == (
        1212, 1212)


def test_invalid_tile_names_the_nearest_valid_sizes(net):
    with pytest.raises(ValueError, match="492 or 508"):
        run(net, np.zeros((50, 50)), tile=500)
    with pytest.raises(ValueError, match="at least 204"):
        run(net, np.zeros((50, 50)), tile=188)  # a 4-px output cannot be tiled on a 16-px grid
    assert run(net, np.zeros((4, 3)), tile=188).shape == (2, 4, 3)  # ... but covers a tiny image


# --------------------------------------------------------------------------- #
# Seamless by construction
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "shape,tile",
    [
        ((1, 1), None),
        ((5, 3), 204),
        ((37, 120), 204),
        ((37, 120), (252, 220)),
        ((130, 90), 236),
        ((300, 260), 316),
        ((300, 260), None),
    ],
)
def test_stitched_tiles_equal_one_pass_over_the_mirrored_image(net, shape, tile):
    image = np.random.default_rng(3).random(shape, dtype=np.float32)
    expected = reference_logits(net, image[None])
    actual = run(net, image, tile=tile, output="logits", batch_size=3)
    assert actual.shape == (2, *shape) and actual.dtype == np.float32
    close(actual, expected)


def test_abutting_tiles_off_the_16_grid_are_not_seamless(net):
    """The reference above can fail: tiles shifted by 20 px (not 16 m) disagree with it."""
    image = np.random.default_rng(4).random((40, 20), dtype=np.float32)
    expected = reference_logits(net, image[None])
    padded = np.pad(image, ((BORDER, BORDER + 20), (BORDER, BORDER + 20)), mode="reflect")
    with torch.no_grad():
        second = net(torch.from_numpy(padded[None, None, 20:224, 0:204]))[0].numpy()[:, :20, :20]
    assert np.abs(second - expected[:, 20:40, :20]).max() > 1e-3


def test_phseg_variant_three_channels_and_stacks(net):
    torch.manual_seed(2)
    model = UNet(in_channels=3, num_classes=3, width=2, variant="phseg_v5").eval()
    stack = np.random.default_rng(5).random((2, 3, 45, 70), dtype=np.float32)
    actual = run(model, stack, tile=220, output="logits")
    assert actual.shape == (2, 3, 45, 70)
    for s in range(2):
        close(actual[s], reference_logits(model, stack[s]))


def test_stack_is_slice_by_slice(net):
    stack = np.random.default_rng(6).integers(0, 256, (3, 30, 40), dtype=np.uint8)
    labels = run(net, stack, output="labels", progress=False)
    assert labels.shape == (3, 30, 40) and labels.dtype == np.uint8
    for s in range(3):
        np.testing.assert_array_equal(labels[s], run(net, stack[s], output="labels"))


def test_outputs_are_softmax_and_argmax_of_the_logits():
    torch.manual_seed(4)
    net = UNet(width=2).eval()
    image = np.random.default_rng(7).random((60, 50), dtype=np.float32)
    margin = run(net, image, output="logits")
    with torch.no_grad():  # balance the classes so that the labels are not all one value
        net.conv_u0d_score.bias[1] += float(np.median(margin[0] - margin[1]))
    logits = run(net, image, output="logits")
    probabilities = run(net, image)
    labels = run(net, image, output="labels")
    e = np.exp(logits - logits.max(0))
    close(probabilities, e / e.sum(0), scale=1.0)
    np.testing.assert_array_equal(labels, logits.argmax(0))
    assert not np.all(labels == labels.flat[0])  # a random net still separates some pixels


# --------------------------------------------------------------------------- #
# Normalisation
# --------------------------------------------------------------------------- #
def test_integer_images_are_scaled_by_their_dtype_maximum(net):
    rng = np.random.default_rng(8)
    image8 = rng.integers(0, 256, (40, 30), dtype=np.uint8)
    close(run(net, image8, output="logits"), reference_logits(net, image8[None] / np.float32(255)))
    image16 = rng.integers(0, 65536, (40, 30), dtype=np.uint16)
    close(run(net, image16, output="logits"), reference_logits(net, image16[None] / np.float32(65535)))
    as_given = run(net, image8, output="logits", normalize="none")
    close(as_given, reference_logits(net, image8[None].astype(np.float32)))


def test_zscore_and_minmax(net):
    image = np.random.default_rng(9).normal(50.0, 7.0, (40, 30)).astype(np.float32)
    z = (image - image.mean()) / image.std()
    close(run(net, image, output="logits", normalize="zscore"), reference_logits(net, z[None]))
    m = (image - image.min()) / (image.max() - image.min())
    close(run(net, image, output="logits", normalize="minmax"), reference_logits(net, m[None]))


# --------------------------------------------------------------------------- #
# Test-time averaging
# --------------------------------------------------------------------------- #
def test_flips_average_the_four_flipped_logits(net):
    image = np.random.default_rng(10).random((50, 70), dtype=np.float32)
    flips = [lambda a: a, lambda a: a[..., ::-1], lambda a: a[..., ::-1, :], lambda a: a[..., ::-1, ::-1]]
    expected = np.mean([f(reference_logits(net, np.ascontiguousarray(f(image))[None])) for f in flips], axis=0)
    close(run(net, image, tta="flips", output="logits"), expected)
    e = np.exp(expected - expected.max(0))
    close(run(net, image, tta="flips"), e / e.sum(0), scale=1.0)
    np.testing.assert_array_equal(run(net, image, tta="flips", output="labels"), expected.argmax(0))


def test_d4_average_is_rotation_equivariant(net):
    tile = (220, 252)  # non-square: transposed with the image for the odd rotations
    image = np.random.default_rng(11).random((40, 65), dtype=np.float32)
    rotated = np.rot90(image)
    plain = run(net, image, output="logits", tile=tile)
    plain_rot = run(net, rotated, output="logits", tile=tile)
    assert np.abs(np.rot90(plain_rot, -1, axes=(1, 2)) - plain).max() > 1e-3  # the net alone is not
    d4 = run(net, image, output="logits", tta="d4", tile=tile)
    d4_rot = run(net, rotated, output="logits", tta="d4", tile=tile)
    close(np.rot90(d4_rot, -1, axes=(1, 2)), d4)
    close(d4[:, :, ::-1], run(net, image[:, ::-1], output="logits", tta="d4", tile=tile))


def test_tta_modes_are_none_flips_d4_and_rotations_is_gone():
    """"d4" is the paper's identity + 7 rotated versions; the old alias "rotations" was removed on purpose."""
    assert geometry.TTA_MODES == ("none", "flips", "d4")
    a = np.arange(12).reshape(3, 4)
    assert len(tta_transforms(None)) == len(tta_transforms("none")) == 1
    flips = [np.ascontiguousarray(t(a)) for t in tta_transforms("flips")]
    d4 = [np.ascontiguousarray(t(a)) for t in tta_transforms("d4")]
    assert len({f.tobytes() for f in flips}) == 4
    assert len({(x.shape, x.tobytes()) for x in d4}) == 8  # the eight distinct symmetries of the square
    with pytest.raises(UnetlibError, match="tta must be one of"):
        tta_transforms("rotations")


# --------------------------------------------------------------------------- #
# Bounded memory, batching, model state
# --------------------------------------------------------------------------- #
class Recorder(nn.Module):
    """Wraps a model and records the shape of every batch it sees."""

    def __init__(self, model):
        super().__init__()
        self.model, self.shapes = model, []
        self.in_channels, self.num_classes, self.width = model.in_channels, model.num_classes, model.width

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.model(x)


class CropNet(nn.Module):
    """A nearly free stand-in with the U-Net's geometry: crop 92 px, then a 1x1 convolution."""

    in_channels, num_classes, width = 1, 2, 1

    def __init__(self):
        super().__init__()
        self.score = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        return self.score(x[..., BORDER:-BORDER, BORDER:-BORDER])


def test_tiles_stream_in_batches_of_the_requested_size(net):
    recorder = Recorder(net)
    image = np.random.default_rng(12).random((100, 150), dtype=np.float32)
    run(recorder, image, tile=236, batch_size=3)
    layout = plan_tiles(image.shape, 236)
    assert sum(s[0] for s in recorder.shapes) == layout.n_tiles == 8
    assert [s[0] for s in recorder.shapes] == [3, 3, 2]
    assert all(s[1:] == (1, 236, 236) for s in recorder.shapes)


def test_auto_batch_is_one_tile_on_the_cpu_and_follows_the_memory_budget_elsewhere(net):
    recorder = Recorder(net)
    image = np.zeros((100, 150), dtype=np.float32)
    per_tile = _BYTES_PER_PIXEL_PER_WIDTH * net.width * 236 * 236
    run(recorder, image, tile=236, memory_budget=2.5 * per_tile)
    assert len(recorder.shapes) == 8 and max(s[0] for s in recorder.shapes) == 1  # CPU: one at a time
    layouts = [plan_tiles(image.shape, 236)]
    assert inference._auto_batch(layouts, _BYTES_PER_PIXEL_PER_WIDTH * net.width, 2.5 * per_tile) == 2  # a GPU's


def test_large_image_needs_no_full_size_buffer_besides_the_output():
    model = CropNet()
    image = np.random.default_rng(13).integers(0, 256, (2048, 2048), dtype=np.uint8)
    batch_bytes = 2 * 572 * 572 * 4
    output_bytes = 2 * 2048 * 2048 * 4
    tracemalloc.start()
    try:
        out = run(model, image, tile=572, batch_size=2, output="logits")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # all 36 tiles at once would add ~47 MB, one padded float image ~20 MB
    assert peak < output_bytes + 4 * batch_bytes + 2e6
    with torch.no_grad():
        w, b = model.score.weight[:, 0, 0, 0].numpy(), model.score.bias.numpy()
    close(out, w[:, None, None] * (image / np.float32(255)) + b[:, None, None])


def test_eval_mode_inside_and_training_flag_restored():
    torch.manual_seed(3)
    model = UNet(width=2, dropout=0.5).train()
    image = np.random.default_rng(14).random((30, 30), dtype=np.float32)
    first, second = run(model, image, output="logits"), run(model, image, output="logits")
    assert model.training
    np.testing.assert_array_equal(first, second)  # dropout would make these differ


# --------------------------------------------------------------------------- #
# Bad input
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "image,match",
    [
        (np.zeros((0, 10)), "empty"),
        (np.zeros((3, 10, 0)), "empty"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "NaN or infinite"),
        (np.zeros((2, 3, 10, 10)), "1 channel"),
        (np.zeros((10,)), "1 channel"),
        (np.array([["a"]]), "not numeric"),
    ],
)
def test_bad_images_for_a_single_channel_model(net, image, match):
    with pytest.raises(UnetlibError, match=match):
        run(net, image)


def test_channel_axis_mismatch_for_a_three_channel_model():
    model = UNet(in_channels=3, width=2)
    with pytest.raises(UnetlibError, match=r"3 channels: give \(3, H, W\)"):
        run(model, np.zeros((20, 20)))
    with pytest.raises(UnetlibError, match="channels last"):
        run(model, np.zeros((20, 20, 3)))


def test_model_that_does_not_fit_is_refused(net):
    class Liar(Recorder):
        pass

    liar = Liar(net)
    liar.num_classes = 3  # claims 3 classes, returns 2
    with pytest.raises(UnetlibError, match="expected"):
        run(liar, np.zeros((20, 20)))
    # any callable is accepted, but one without the U-Net's 92-pixel border is refused by its output shape
    with pytest.raises(UnetlibError, match="valid-convolution"):
        run(nn.Conv2d(1, 2, 3), np.zeros((20, 20)))
    with pytest.raises(UnetlibError, match="not callable"):
        run(object(), np.zeros((20, 20)))


def test_any_callable_network_is_accepted():
    """A plain function: one input channel assumed, the class count read off one forward pass."""
    scale = torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1)  # three classes
    seen = []

    def crop_net(x):
        seen.append(tuple(x.shape))
        return x[..., BORDER:-BORDER, BORDER:-BORDER] * scale

    image = np.random.default_rng(16).integers(0, 256, (45, 70), dtype=np.uint8)
    logits = run(crop_net, image, output="logits", tile=204)
    assert logits.shape == (3, 45, 70) and logits.dtype == np.float32
    close(logits, scale.view(3, 1, 1).numpy() * (image / np.float32(255)))
    assert seen[0] == (1, 1, 188, 188)  # the probe: one single-channel tile of the smallest size
    labels = run(crop_net, image, output="labels")
    assert labels.dtype == np.uint8 and labels.shape == (45, 70)
    np.testing.assert_array_equal(labels, logits.argmax(0))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_logits_are_an_error(value):
    def broken(x):
        return torch.full((x.shape[0], 2, x.shape[2] - 2 * BORDER, x.shape[3] - 2 * BORDER), value)

    with pytest.raises(UnetlibError, match="NaN or infinite logits"):
        run(broken, np.zeros((20, 20), np.uint8))


@pytest.mark.parametrize(
    "kw",
    [{"output": "mask"}, {"tta": "rot"}, {"tta": "rotations"}, {"normalize": "std"}, {"normalize": "auto"},
     {"batch_size": 0}],
)
def test_bad_options(net, kw):
    with pytest.raises(UnetlibError):
        run(net, np.zeros((20, 20)), **kw)


# --------------------------------------------------------------------------- #
# Command line and real data
# --------------------------------------------------------------------------- #
def test_cli_writes_probabilities_of_one_class_and_labels(tmp_path, net):
    checkpoint = save_checkpoint(tmp_path / "net.pt", net)
    stack = np.random.default_rng(15).integers(0, 256, (2, 30, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", stack)
    args = ["predict", str(checkpoint), str(tmp_path / "in.tif"), "--probabilities", str(tmp_path / "p.tif"),
            "--labels", str(tmp_path / "l.tif"), "--class", "1", "--tile", "204", "--device", "cpu", "--no-amp"]
    assert cli_main(args) == 0
    probabilities, labels = tifffile.imread(tmp_path / "p.tif"), tifffile.imread(tmp_path / "l.tif")
    assert probabilities.dtype == np.float32 and probabilities.shape == (2, 30, 50)
    assert labels.dtype == np.uint8 and labels.shape == (2, 30, 50)
    expected = run(net, stack)
    close(probabilities, expected[:, 1], scale=1.0)
    np.testing.assert_array_equal(labels, expected.argmax(1))


def test_readme_chain_predict_then_evaluate_against_the_ground_truth(tmp_path, net, capsys):
    """The README's command-line chain as a newcomer types it: predict writes both classes, evaluate scores
    P(cell) of that file against the ground truth, and says which class it scored."""
    checkpoint = save_checkpoint(tmp_path / "net.pt", net)
    stack = np.random.default_rng(16).integers(0, 256, (2, 30, 50), dtype=np.uint8)
    truth = np.full((2, 30, 50), 255, np.uint8)
    truth[:, ::7, :] = 0  # membrane lines
    tifffile.imwrite(tmp_path / "image.tif", stack)
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    prob, labels = tmp_path / "prob.tif", tmp_path / "labels.tif"
    assert cli_main(["predict", str(checkpoint), str(tmp_path / "image.tif"), "--probabilities", str(prob),
                     "--labels", str(labels), "--device", "cpu", "--no-amp"]) == 0
    assert tifffile.imread(prob).shape == (2, 2, 30, 50)
    capsys.readouterr()
    assert cli_main(["evaluate", "isbi2012", str(prob), str(tmp_path / "truth.tif")]) == 0
    out = capsys.readouterr().out
    assert "scoring class 1, P(cell)" in out and "warping error" in out
    from unetlib.metrics.isbi2012 import isbi2012_errors

    expected = isbi2012_errors(tifffile.imread(prob)[:, 1], truth)
    assert f"pixel error    {expected.pixel_error:.7f}" in out


def test_cli_errors_exit_2(tmp_path, net, capsys):
    checkpoint = save_checkpoint(tmp_path / "net.pt", net)
    tifffile.imwrite(tmp_path / "in.tif", np.zeros((20, 20), np.uint8))
    base = ["predict", str(checkpoint), str(tmp_path / "in.tif")]
    assert cli_main(base) == 2
    assert "nothing to write" in capsys.readouterr().err
    assert cli_main(base + ["--probabilities", str(tmp_path / "p.tif"), "--class", "2"]) == 2
    assert "classes 0..1" in capsys.readouterr().err
    assert cli_main(base + ["--labels", str(tmp_path / "l.tif"), "--tile", "500"]) == 2
    assert "492 or 508" in capsys.readouterr().err
    assert cli_main(["predict", str(checkpoint), str(tmp_path / "missing.tif"), "--labels", "x.tif"]) == 2


def test_cli_uses_the_checkpoint_recipe_unless_overridden(tmp_path, net, capsys):
    from unetlib.recipe import Recipe

    recipe = Recipe(dataset="PhC-C2DH-U373", normalize="zscore", tta="flips")
    checkpoint = save_checkpoint(tmp_path / "net.pt", net, metadata={"recipe": recipe.to_dict()})
    image = np.random.default_rng(17).normal(100.0, 5.0, (30, 50)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", image)
    base = ["predict", str(checkpoint), str(tmp_path / "in.tif"), "--device", "cpu", "--no-amp"]
    assert cli_main(base + ["--probabilities", str(tmp_path / "recipe.tif")]) == 0
    assert "'zscore'" in capsys.readouterr().out
    close(tifffile.imread(tmp_path / "recipe.tif"), run(net, image, normalize="zscore", tta="flips"), scale=1.0)
    overrides = ["--normalize", "none", "--tta", "none"]
    assert cli_main(base + ["--probabilities", str(tmp_path / "given.tif")] + overrides) == 0
    close(tifffile.imread(tmp_path / "given.tif"), run(net, image, normalize="none"), scale=1.0)
    assert np.abs(tifffile.imread(tmp_path / "given.tif") - tifffile.imread(tmp_path / "recipe.tif")).max() > 1e-3


def test_cli_refuses_outputs_over_inputs_each_other_or_folders(tmp_path, net, capsys):
    checkpoint = save_checkpoint(tmp_path / "net.pt", net)
    image_path = tmp_path / "in.tif"
    tifffile.imwrite(image_path, np.arange(400, dtype=np.uint8).reshape(20, 20))
    before, checkpoint_bytes = image_path.read_bytes(), checkpoint.read_bytes()
    base = ["predict", str(checkpoint), str(image_path)]
    cases = [
        (["--labels", str(image_path)], "refusing to overwrite an input"),
        (["--probabilities", str(checkpoint)], "refusing to overwrite an input"),
        (["--probabilities", str(tmp_path / "o.tif"), "--labels", str(tmp_path / "o.tif")], "same file"),
        (["--labels", str(tmp_path)], "is a folder"),
    ]
    for extra, message in cases:
        assert cli_main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert image_path.read_bytes() == before and checkpoint.read_bytes() == checkpoint_bytes
    assert not (tmp_path / "o.tif").exists()


def test_real_isbi_slice_is_tile_size_independent(data_root, net):
    image = tifffile.imread(data_root / "isbi2012" / "train-volume.tif", key=0)
    assert image.shape == (512, 512) and image.dtype == np.uint8
    one_pass = run(net, image)  # automatic: one 700 x 700 tile
    paper_tiles = run(net, image, tile=572)  # 2 x 2 tiles of 572 -> 388, stride 384
    close(paper_tiles, one_pass, scale=1.0)


def test_normalize_image_matches_what_predict_sees():
    """Training images normalised with normalize_image give the same prediction as predict's own option."""
    torch.manual_seed(0)
    model = UNet(width=2).eval()
    image = (np.random.default_rng(1).random((60, 70)) * 200 + 20).astype(np.uint8)
    z = normalize_image(image, "zscore")
    assert z.dtype == np.float32 and abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-4
    a = predict(model, image, normalize="zscore", tiling=Tiling(device="cpu"))
    b = predict(model, z, normalize="none", tiling=Tiling(device="cpu"))
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(normalize_image(image), image.astype(np.float32) / 255, rtol=1e-6)
    # the default mode is called "unit" now; the old name "auto" is refused
    assert NORMALIZATIONS == ("unit", "zscore", "minmax", "none")
    np.testing.assert_array_equal(normalize_image(image, "unit"), normalize_image(image))
    with pytest.raises(ValueError, match="normalize"):
        normalize_image(image, "auto")


# --------------------------------------------------------------------------- #
# Freed activation buffers reused while tiles are predicted
# --------------------------------------------------------------------------- #
#: Measured in a fresh interpreter: how many freed pages a process already holds (heap holes left by earlier
#: tests) changes how many of the smaller maps fault, so only a fresh process gives a fixed count.
_FAULTS_SCRIPT = """
import resource, torch
from unetlib import runtime
from unetlib.model import UNet

def faulted_pages(make):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    make()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

model = UNet(width=8).eval()  # at 1212² every level-0 map (47 MB and more) is beyond glibc's heap limit
tile = torch.rand(1, 1, 1212, 1212)
with torch.inference_mode():
    model(tile)
    runtime._glibc().malloc_trim(0)  # what the first pass kept goes back: every large map is fresh
    outside = faulted_pages(lambda: model(tile))  # every large map a fresh mapping: ~230,000 pages
    with runtime.reuse_freed_memory("cpu"):
        with runtime.reuse_freed_memory("cpu"):  # nested: acts once
            model(tile)  # the heap grows to the peak once
        inside = faulted_pages(lambda: model(tile)) + faulted_pages(lambda: model(tile))
print(outside, inside)
"""


@pytest.mark.skipif(runtime._glibc() is None, reason="mallopt is glibc's")
def test_a_large_tiles_activations_are_reused_inside_the_block_and_kept_after_it():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    outside, inside = (int(v) for v in done.stdout.split()[-2:])
    assert outside > 100_000
    assert inside < outside / 4  # two passes together fault in a fraction of one pass outside


def test_reusing_freed_memory_leaves_the_prediction_unchanged(monkeypatch):
    torch.manual_seed(0)
    model = UNet(width=4).eval()
    image = np.random.default_rng(0).random((300, 260), dtype=np.float32)
    inside = predict(model, image, tiling=Tiling(tile=252, progress=False))
    monkeypatch.setattr(runtime, "_glibc", lambda: None)  # glibc's own handling throughout
    outside = predict(model, image, tiling=Tiling(tile=252, progress=False))
    np.testing.assert_array_equal(inside, outside)
