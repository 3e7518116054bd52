"""Elastic deformation and training tiles, against slow obvious references."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from unetlib.augment import AugmentParams, augmented_tile, deform, displacement_field, elastic_grid, random_tile
from unetlib.errors import UnetlibError

OFF = AugmentParams(enabled=False)
GEOMETRY_ONLY = AugmentParams(brightness=0.0, contrast=0.0, gamma=0.0)


# --------------------------------------------------------------------------- #
# Slow references
# --------------------------------------------------------------------------- #
def reflect_index(index, size):
    """numpy 'reflect' (no repeated edge pixel) by unfolding one step at a time."""
    index = np.array(index)
    while np.any((index < 0) | (index > size - 1)):
        index = np.where(index < 0, -index, index)
        index = np.where(index > size - 1, 2 * (size - 1) - index, index)
    return index


def keys_cubic(x, a=-0.75):
    x = np.abs(x)
    return np.where(
        x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1, np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0)
    )


def reference_bicubic(image, rows, cols):
    """Sum over the 4x4 neighbours of Keys' cubic convolution, mirrored indices."""
    base_r, base_c = np.floor(rows).astype(int), np.floor(cols).astype(int)
    out = np.zeros(rows.shape)
    for i in range(-1, 3):
        for j in range(-1, 3):
            r, c = base_r + i, base_c + j
            weight = keys_cubic(rows - r) * keys_cubic(cols - c)
            out += weight * image[reflect_index(r, image.shape[0]), reflect_index(c, image.shape[1])]
    return out


def mirrored_crop(plane, top, left, size):
    pad = 3 * max(plane.shape) + size
    padded = np.pad(plane, pad, mode="reflect")
    return padded[pad + top : pad + top + size, pad + left : pad + left + size]


def smooth_field(shape, seed=0, sigma=10.0):
    return displacement_field(elastic_grid(np.random.default_rng(seed), sigma=sigma), shape)


@pytest.fixture
def planes():
    rng = np.random.default_rng(1)
    image = rng.random((70, 90)).astype(np.float32)
    target = rng.integers(0, 3, (70, 90)).astype(np.uint8) * 5
    weights = (1.0 + rng.random((70, 90))).astype(np.float32)
    return image, target, weights


# --------------------------------------------------------------------------- #
# Elastic grid and displacement field
# --------------------------------------------------------------------------- #
def test_grid_has_the_papers_statistics():
    rng = np.random.default_rng(0)
    grids = np.stack([elastic_grid(rng) for _ in range(2000)])
    assert grids.shape == (2000, 2, 3, 3)
    assert grids.std() == pytest.approx(10.0, rel=0.03)
    assert abs(grids.mean()) < 0.2


def test_field_is_torch_bicubic_with_corners_on_corners():
    grid = elastic_grid(np.random.default_rng(2))
    field = displacement_field(grid, (57, 83))
    expected = F.interpolate(torch.from_numpy(grid)[None], size=(57, 83), mode="bicubic", align_corners=True)[0]
    np.testing.assert_allclose(field, expected.numpy(), atol=1e-10)
    np.testing.assert_allclose(field[:, [0, 0, -1, -1], [0, -1, 0, -1]], grid[:, [0, 0, -1, -1], [0, -1, 0, -1]])


def test_field_from_tensor_matches_numpy():
    grid = elastic_grid(np.random.default_rng(3), points=4)
    dense = displacement_field(torch.from_numpy(grid).float(), (40, 50))
    assert isinstance(dense, torch.Tensor) and dense.dtype == torch.float32
    np.testing.assert_allclose(dense.numpy(), displacement_field(grid, (40, 50)), atol=1e-4)


def test_field_rms_matches_module_docstring():
    rng = np.random.default_rng(4)
    fields = np.stack([displacement_field(elastic_grid(rng), (41, 41)) for _ in range(1500)])
    length_sq = (fields**2).sum(axis=1)
    assert np.sqrt(length_sq.mean()) == pytest.approx(11.0, abs=0.4)
    assert np.sqrt(length_sq[:, 0, 0].mean()) == pytest.approx(14.1, abs=0.6)


# --------------------------------------------------------------------------- #
# deform
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("order", [0, 1, 3])
def test_zero_displacement_is_the_identity(order, planes):
    image = planes[0]
    out = deform(image, np.zeros((2, *image.shape)), order=order)
    assert out.dtype == image.dtype
    np.testing.assert_array_equal(out, image)
    out_t = deform(torch.from_numpy(image), torch.zeros(2, *image.shape), order=order)
    assert torch.equal(out_t, torch.from_numpy(image))


def test_bilinear_matches_scipy_map_coordinates(planes):
    image = planes[0].astype(np.float64)
    field = smooth_field(image.shape)
    rows = np.arange(image.shape[0])[:, None] + field[0]
    cols = np.arange(image.shape[1])[None, :] + field[1]
    expected = ndimage.map_coordinates(image, [rows, cols], order=1, mode="mirror")
    inside = (rows >= 0) & (rows <= image.shape[0] - 1) & (cols >= 0) & (cols <= image.shape[1] - 1)
    out = deform(image, field, order=1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-10)
    np.testing.assert_allclose(out, expected, atol=1e-10)  # scipy's 'mirror' is numpy's 'reflect'


def test_bicubic_matches_cubic_convolution_reference(planes):
    image = planes[0].astype(np.float64)
    field = smooth_field(image.shape, seed=5, sigma=25.0)  # large: many positions outside the image
    rows = np.arange(image.shape[0])[:, None] + field[0]
    cols = np.arange(image.shape[1])[None, :] + field[1]
    np.testing.assert_allclose(deform(image, field, order=3), reference_bicubic(image, rows, cols), atol=1e-10)


def test_float32_deform_is_close_to_float64(planes):
    image = planes[0]
    field = smooth_field(image.shape, seed=6)
    out32 = deform(image, field.astype(np.float32))
    out64 = deform(image.astype(np.float64), field)
    np.testing.assert_allclose(out32, out64, atol=1e-4)


def test_deformed_labels_contain_only_input_labels(planes):
    target = planes[1]
    out = deform(target, smooth_field(target.shape, seed=7, sigma=20.0), order=0)
    assert out.dtype == target.dtype
    assert set(np.unique(out)) <= set(np.unique(target))
    assert not np.array_equal(out, target)


def test_deform_multichannel_equals_per_channel(planes):
    stack = np.stack([planes[0], planes[2]])
    field = smooth_field(stack.shape[1:], seed=8)
    out = deform(stack, field)
    np.testing.assert_array_equal(out[1], deform(planes[2], field))


def test_deform_refuses_bad_input(planes):
    image = planes[0]
    with pytest.raises(ValueError, match="order"):
        deform(image, np.zeros((2, *image.shape)), order=2)
    with pytest.raises(ValueError, match="floating"):
        deform(planes[1], np.zeros((2, *image.shape)), order=1)
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        deform(image, np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match="reflect"):
        deform(image, np.zeros((2, *image.shape)), mode="constant")


# --------------------------------------------------------------------------- #
# random_tile
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("center", [(35, 45), (0, 0), (69, 3)])
def test_unaugmented_tile_is_the_mirrored_crop(planes, center):
    image, target, weights = planes
    in_size, out_size = 188, 4  # larger than the image: mirrored more than once
    rng = np.random.default_rng(0)
    x, y, w = random_tile(image, target, weights, in_size=in_size, out_size=out_size, rng=rng, params=OFF,
                          center=center)
    top, left = center[0] - in_size // 2, center[1] - in_size // 2
    inner = (in_size - out_size) // 2
    assert x.shape == (1, in_size, in_size) and x.dtype == torch.float32
    assert y.shape == (out_size, out_size) and y.dtype == torch.int64
    assert w.shape == (out_size, out_size) and w.dtype == torch.float32
    np.testing.assert_array_equal(x[0].numpy(), mirrored_crop(image, top, left, in_size))
    np.testing.assert_array_equal(y.numpy(), mirrored_crop(target, top + inner, left + inner, out_size))
    np.testing.assert_array_equal(w.numpy(), mirrored_crop(weights, top + inner, left + inner, out_size))


def test_unet_sized_tile_is_the_mirrored_crop(planes):
    image, target, weights = planes
    x, y, w = random_tile(
        image, target, weights, in_size=572, out_size=388, rng=np.random.default_rng(0), params=OFF, center=(10, 80)
    )
    np.testing.assert_array_equal(x[0].numpy(), mirrored_crop(image, 10 - 286, 80 - 286, 572))
    np.testing.assert_array_equal(y.numpy(), mirrored_crop(target, 10 - 194, 80 - 194, 388))


def test_same_seed_same_tile_other_seed_other_tile(planes):
    def tile(seed):
        return random_tile(*planes, in_size=188, out_size=4, rng=np.random.default_rng([seed, 3]))

    first, again, other = tile(1), tile(1), tile(2)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])


def test_augmented_tile_holds_only_input_labels_and_weights(planes):
    image, target, weights = planes
    rng = np.random.default_rng(9)
    for _ in range(3):
        x, y, w = random_tile(image, target, weights, in_size=124, out_size=60, rng=rng)
        assert set(np.unique(y.numpy())) <= set(np.unique(target))
        assert np.isin(w.numpy(), weights).all()
        assert torch.isfinite(x).all()


def test_image_target_and_weights_stay_aligned_under_full_augmentation():
    rows, cols = np.mgrid[:120, :150]
    target = ((rows // 15 + cols // 15) % 2).astype(np.uint8)  # a checkerboard: every misalignment shows
    image, weights = target.astype(np.float32), (1.0 + 2.0 * target).astype(np.float32)
    rng = np.random.default_rng(14)
    for _ in range(4):
        x, y, w = random_tile(image, target, weights, in_size=124, out_size=60, rng=rng, params=GEOMETRY_ONLY)
        assert torch.equal(w, 1.0 + 2.0 * y.float())
        agreement = ((x[0, 32:92, 32:92] > 0.5).long() == y).float().mean()
        assert agreement > 0.95  # they differ only along the squares' edges (bicubic vs nearest)


def test_tile_centre_stays_put_under_rotation_and_flip(planes):
    image, target, weights = planes
    params = AugmentParams(elastic_sigma=0.0, max_shift=0.0, brightness=0.0, contrast=0.0, gamma=0.0)
    rng = np.random.default_rng(10)
    for _ in range(5):
        x, y, w = random_tile(image, target, weights, in_size=65, out_size=1, rng=rng, params=params, center=(30, 40))
        assert x[0, 32, 32] == pytest.approx(image[30, 40], abs=1e-5)
        assert y[0, 0] == target[30, 40] and w[0, 0] == weights[30, 40]


def test_geometry_changes_the_tile_and_gray_values_change_only_the_image(planes):
    image, target, weights = planes
    plain = random_tile(*planes, in_size=124, out_size=60, rng=np.random.default_rng(11), params=OFF, center=(35, 45))
    geometric = random_tile(
        *planes, in_size=124, out_size=60, rng=np.random.default_rng(11), params=GEOMETRY_ONLY, center=(35, 45)
    )
    full = random_tile(*planes, in_size=124, out_size=60, rng=np.random.default_rng(11), center=(35, 45))
    assert not torch.equal(plain[1], geometric[1])
    assert torch.equal(geometric[1], full[1]) and torch.equal(geometric[2], full[2])
    assert not torch.allclose(geometric[0], full[0])


def test_tile_accepts_tensors(planes):
    tensors = [torch.from_numpy(p) for p in planes]
    a = random_tile(*tensors, in_size=124, out_size=60, rng=np.random.default_rng(12))
    b = random_tile(*planes, in_size=124, out_size=60, rng=np.random.default_rng(12))
    for u, v in zip(a, b):
        assert torch.equal(u, v)


def test_tile_of_checked_planes_is_the_checked_tile(planes):
    image, target, weights = planes  # training's planes: float32 image and weights, uint8 target
    checked = (torch.from_numpy(image.astype(np.float32)), torch.from_numpy(target.astype(np.uint8)),
               torch.from_numpy(weights.astype(np.float32)))
    for params in (AugmentParams(), AugmentParams(scale=0.3, image_order=1), AugmentParams(enabled=False)):
        a = augmented_tile(*checked, in_size=124, out_size=60, rng=np.random.default_rng(14), params=params)
        b = random_tile(*planes, in_size=124, out_size=60, rng=np.random.default_rng(14), params=params)
        assert a[1].dtype == torch.int64
        for u, v in zip(a, b):
            assert torch.equal(u, v)


def test_tile_refuses_bad_input(planes):
    image, target, weights = planes
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="even"):
        random_tile(image, target, weights, in_size=124, out_size=61, rng=rng)
    with pytest.raises(UnetlibError, match="integer"):
        random_tile(image, target.astype(np.float32), weights, in_size=124, out_size=60, rng=rng)
    with pytest.raises(UnetlibError, match="same shape"):
        random_tile(image, target[:-1], weights, in_size=124, out_size=60, rng=rng)
    with pytest.raises(TypeError, match="Generator"):
        random_tile(image, target, weights, in_size=124, out_size=60, rng=0)
    with pytest.raises(ValueError, match="outside"):
        random_tile(image, target, weights, in_size=124, out_size=60, rng=rng, center=(70, 0))
    with pytest.raises(ValueError, match="gamma"):
        AugmentParams(gamma=1.5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tile_on_cuda_matches_cpu(planes):
    cpu = random_tile(*planes, in_size=188, out_size=4, rng=np.random.default_rng(13))
    gpu = random_tile(*planes, in_size=188, out_size=4, rng=np.random.default_rng(13), device="cuda")
    assert all(t.device.type == "cuda" for t in gpu)
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-4, rtol=0)
    assert (gpu[1].cpu() == cpu[1]).float().mean() > 0.99


def test_gray_values_keep_standardised_images_intact():
    """Gray-value variation works in the tile's own range: negative (standardised) values survive."""
    rng = np.random.default_rng(3)
    image = rng.standard_normal((200, 200)).astype(np.float32)
    target = np.zeros((200, 200), np.int64)
    weights = np.ones((200, 200), np.float32)
    x, _, _ = random_tile(image, target, weights, in_size=188, out_size=4, rng=np.random.default_rng(0),
                          params=AugmentParams(elastic_sigma=0.0, rotation=False, flip=False, max_shift=0.0))
    x = x.numpy()
    assert x.min() < -1.5 and x.max() > 1.5  # no clipping to [0, 1]
    plain, _, _ = random_tile(image, target, weights, in_size=188, out_size=4, rng=np.random.default_rng(0),
                              params=AugmentParams(elastic_sigma=0.0, rotation=False, flip=False, max_shift=0.0,
                                                   brightness=0.0, contrast=0.0, gamma=0.0))
    # a monotone transform of the same crop: the ranking of pixel values is unchanged
    order_aug, order_plain = np.argsort(x.ravel()), np.argsort(plain.numpy().ravel())
    assert np.mean(order_aug == order_plain) > 0.95


def _disc(size: int = 201, radius: float = 30.0):
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius ** 2
    return inside.astype(np.float32), inside.astype(np.int64), np.ones((size, size), np.float32)


def test_zoom_magnifies_by_the_drawn_factor():
    """A disc of radius 30 px, zoomed by z about its centre, has area pi (30 z)^2 in the tile."""
    image, target, weights = _disc()
    params = AugmentParams(elastic_sigma=0.0, rotation=False, flip=False, max_shift=0.0, brightness=0.0,
                           contrast=0.0, gamma=0.0, scale=0.5)
    zooms = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        x, y, _ = random_tile(image, target, weights, in_size=200, out_size=160, rng=rng, params=params,
                              center=(100, 100))
        zoom = float(np.sqrt(y.sum().item() / (np.pi * 30.0 ** 2)))
        assert abs(float((x[0] > 0.5).sum()) - np.pi * (30.0 * zoom) ** 2) < 0.05 * np.pi * (30.0 * zoom) ** 2
        zooms.append(zoom)
    zooms = np.array(zooms)
    assert zooms.min() > 1 / 1.5 - 0.02 and zooms.max() < 1.5 + 0.02  # within [1 / (1 + scale), 1 + scale]
    assert zooms.min() < 0.9 and zooms.max() > 1.1  # and it does vary


def test_zoom_off_draws_exactly_as_without_it(planes):
    """scale = 0 leaves every tile bit-identical, and a zoom changes geometry, not the other draws."""
    base = AugmentParams(brightness=0.0, contrast=0.0, gamma=0.0)
    a = random_tile(*planes, in_size=124, out_size=60, rng=np.random.default_rng(5), params=base)
    b = random_tile(*planes, in_size=124, out_size=60, rng=np.random.default_rng(5),
                    params=AugmentParams(brightness=0.0, contrast=0.0, gamma=0.0, scale=0.0))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    # the documented draws, in order; the zoom comes last and only when scale > 0
    for scale, extra in ((0.0, 0), (0.3, 1)):
        used = np.random.default_rng(5)
        random_tile(*planes, in_size=124, out_size=60, rng=used, params=AugmentParams(scale=scale))
        expected = np.random.default_rng(5)
        expected.integers(planes[0].shape[0]), expected.integers(planes[0].shape[1])
        expected.normal(size=(2, 3, 3)), expected.uniform(), expected.random(), expected.uniform(size=2)
        expected.uniform(), expected.uniform(), expected.uniform(), expected.uniform(size=extra)
        assert used.random() == expected.random()
    zoomed = random_tile(*planes, in_size=124, out_size=60, rng=np.random.default_rng(5),
                         params=AugmentParams(brightness=0.0, contrast=0.0, gamma=0.0, scale=0.3))
    assert not torch.equal(a[0], zoomed[0])


def test_zoom_range_is_checked():
    with pytest.raises(UnetlibError, match="scale"):
        AugmentParams(scale=-0.1)
    with pytest.raises(UnetlibError, match="scale"):
        AugmentParams(scale=float("nan"))


# --------------------------------------------------------------------------- #
# Touching cells: cells pasted beside others
# --------------------------------------------------------------------------- #
def _sparse_frame(seed=0):
    """Three cells far apart (no two within 20 px) on noise: no near-touching pair."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 200, (160, 200)).astype(np.uint8)
    mask = np.zeros(image.shape, np.int32)
    mask[20:40, 20:45], mask[90:120, 30:50], mask[60:85, 130:160] = 1, 2, 3
    mask[25:30, 45:48] = 1  # not a rectangle
    image[mask > 0] += 50
    return image, mask


def _taxicab_steps(a, b):
    """Fewest 4-neighbour steps from a pixel of ``a`` to one of ``b`` (slow: every pair of pixels)."""
    ay, ax = np.nonzero(a)
    by, bx = np.nonzero(b)
    return int((np.abs(ay[:, None] - by[None]) + np.abs(ax[:, None] - bx[None])).min())


def test_paste_touching_puts_copies_of_cells_a_few_steps_from_a_neighbour():
    from unetlib.augment import paste_touching
    from unetlib.data import touching_pairs

    image, mask = _sparse_frame()
    before = (image.copy(), mask.copy())
    out_image, out_mask, made = paste_touching(image, mask, np.random.default_rng(3), pastes=3, halo=2)
    assert np.array_equal(image, before[0]) and np.array_equal(mask, before[1])  # inputs unchanged
    assert made == 3 and touching_pairs([mask]) == 0 and touching_pairs([out_mask]) >= 3
    assert set(np.unique(out_mask)) == {0, 1, 2, 3, 4, 5, 6}
    cells = mask > 0
    assert np.array_equal(out_mask[cells], mask[cells]) and np.array_equal(out_image[cells], image[cells])
    for new in (4, 5, 6):
        pasted = out_mask == new
        others = (out_mask > 0) & ~pasted
        assert 1 <= _taxicab_steps(pasted, others) <= 3  # the gap asked for (4-neighbour steps)
        assert _moved_copy(pasted, out_image, mask, image)  # an original cell moved: same shape, same pixels


def _moved_copy(pasted, out_image, mask, image) -> bool:
    """Whether ``pasted`` is one of the cells of ``mask`` translated, with the same pixel values."""
    ys, xs = np.nonzero(pasted)
    for label in np.unique(mask)[1:]:
        sy, sx = np.nonzero(mask == label)
        if len(sy) == len(ys):
            dy, dx = ys.min() - sy.min(), xs.min() - sx.min()
            if np.array_equal(sy + dy, ys) and np.array_equal(sx + dx, xs) and \
                    np.array_equal(out_image[ys, xs], image[sy, sx]):
                return True
    return False


def test_paste_touching_is_seeded_and_keeps_off_avoided_pixels():
    from unetlib.augment import paste_touching

    image, mask = _sparse_frame(1)
    avoid = np.zeros(mask.shape, bool)
    avoid[:, 100:] = True  # the right half holds an unannotated cell
    first = paste_touching(image, mask, np.random.default_rng(5), pastes=4, halo=2, avoid=avoid)
    again = paste_touching(image, mask, np.random.default_rng(5), pastes=4, halo=2, avoid=avoid)
    assert all(np.array_equal(a, b) for a, b in zip(first[:2], again[:2])) and first[2] == again[2] > 0
    assert np.array_equal(first[0][avoid], image[avoid]) and np.array_equal(first[1][avoid], mask[avoid])


def test_paste_touching_without_room_returns_the_frame():
    from unetlib.augment import paste_touching

    mask = np.zeros((40, 40), np.int32)
    mask[:, :19], mask[:, 21:] = 1, 2  # two cells fill the frame
    image = np.arange(1600, dtype=np.float32).reshape(40, 40)
    out_image, out_mask, made = paste_touching(image, mask, np.random.default_rng(0), tries=20)
    assert made == 0 and np.array_equal(out_image, image) and np.array_equal(out_mask, mask)


@pytest.mark.parametrize("seed", range(6))
def test_paste_touching_keeps_clear_of_other_cells_and_copies_only_background_around_the_cell(seed):
    from unetlib.augment import paste_touching

    image, mask = _sparse_frame(2)
    mask[48:60, 20:40] = 4  # close below cell 1 (8 px): a copy beside either must keep clear of the other
    avoid = np.zeros(mask.shape, bool)
    avoid[20:40, 47:60] = True  # an unannotated cell right of cell 1: its pixels are never copied
    image[avoid] = 255
    halo = 3
    out_image, out_mask, made = paste_touching(image, mask, np.random.default_rng(seed), pastes=4, halo=halo,
                                               avoid=avoid)
    assert made >= 1
    for new in range(5, 5 + made):
        pasted = out_mask == new
        distances = sorted(_taxicab_steps(pasted, out_mask == other) for other in range(1, new))  # cells before it
        assert distances[0] <= 3 and distances[1] >= 2 * halo  # one neighbour close, the others clear
    changed = (out_image != image) & (out_mask == 0)
    assert not (out_image[changed] == 255).any()  # the ring carried no pixel of the avoided cell


def test_paste_touching_labels_past_the_mask_dtype():
    from unetlib.augment import paste_touching

    image, mask = _sparse_frame()
    mask = np.where(mask == 3, 255, mask).astype(np.uint8)  # the largest label fills uint8
    _, out_mask, made = paste_touching(image, mask, np.random.default_rng(3), pastes=1, halo=2)
    assert made == 1 and out_mask.dtype == np.int32 and out_mask.max() == 256


@pytest.mark.parametrize("kwargs, match", [
    (dict(gap=(3, 1)), "gap"), (dict(gap=(0, 2)), "gap"), (dict(gap=3), "gap"), (dict(gap=(1, 2, 3)), "gap"),
    (dict(halo=-1), "halo"), (dict(pastes=1.5), "pastes"), (dict(tries=0), "tries"),
    (dict(avoid=np.zeros((3, 3), bool)), "avoid"), (dict(mask=np.ones((160, 200), bool)), "bool"),
])
def test_paste_touching_refuses_bad_settings(kwargs, match):
    from unetlib.augment import paste_touching

    image, mask = _sparse_frame()
    mask = kwargs.pop("mask", mask)
    with pytest.raises(UnetlibError, match=match):
        paste_touching(image, mask, np.random.default_rng(0), **kwargs)


def test_zero_padding_fills_the_tile_beyond_the_image_with_zeros_and_learns_nothing_there():
    from unetlib.augment import AugmentParams, random_tile

    rng_image = np.random.default_rng(3)
    image = rng_image.random((120, 140)).astype(np.float32) + 0.5  # no zero inside the image
    target, weights = np.ones((120, 140), np.int64), np.ones((120, 140), np.float32)
    plain = AugmentParams(enabled=False)
    zero = AugmentParams(enabled=False, padding="zero")
    kwargs = dict(in_size=188, out_size=100, center=(10, 70))
    x_m, _, w_m = random_tile(image, target, weights, rng=np.random.default_rng(0), params=plain, **kwargs)
    x_z, _, w_z = random_tile(image, target, weights, rng=np.random.default_rng(0), params=zero, **kwargs)
    # the unaugmented tile: tile pixel (r, c) is image pixel (10 - 94 + r, 70 - 94 + c)
    rows, cols = np.arange(188) + 10 - 94, np.arange(188) + 70 - 94
    inside = torch.from_numpy(((rows >= 0) & (rows < 120))[:, None] & ((cols >= 0) & (cols < 140))[None, :])
    assert (x_z[0][~inside] == 0).all() and (x_z[0][inside] == x_m[0][inside]).all()
    assert (x_m[0] > 0).all()  # mirror padding: the image's own values
    out = inside[44:144, 44:144]
    assert (w_z[~out] == 0).all() and (w_z[out] == 1).all() and (w_m == 1).all()
    with pytest.raises(UnetlibError, match="padding"):
        AugmentParams(padding="reflect")


def test_inference_pads_as_the_network_was_trained():
    from unetlib.recipe import preset
    from unetlib.segment import Segmenter

    recipe = preset("isbi2012", "smoke")
    assert Segmenter(None, recipe).default_tiling().padding == "mirror"
    zero = recipe.replace(**{"train.augment.padding": "zero"})
    assert Segmenter(None, zero).default_tiling().padding == "zero"
