"""Training augmentation keeps image and label aligned; CDSP's rotation and blur are OpenCV's (float64
references of cv2.getRotationMatrix2D + warpAffine and of GaussianBlur(5, 5, 0)); inference inputs match IRNet's
multi-scale + flip."""
import random

import numpy as np
import pytest
import torch

from wsss.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainAugment,
    blur,
    fuse_flips,
    multiscale_inputs,
    normalize,
    rotate,
    top_left_crop,
    warp,
)

COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)


def _labelled_image(h, w, seed=0):
    """A label map of random blocks and the image that paints each label in its own colour."""
    label = np.random.default_rng(seed).integers(0, 4, (h // 4, w // 4)).repeat(4, 0).repeat(4, 1).astype(np.uint8)
    return COLOURS[label], label


def _decode(image: torch.Tensor) -> np.ndarray:
    """Normalised CHW back to uint8 HWC."""
    rgb = image.numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.round(rgb * 255).astype(np.uint8)


def test_crop_and_flip_move_label_with_image_and_pad_with_ignore():
    image, label = _labelled_image(24, 40)
    augment = TrainAugment(crop=32)
    rng = random.Random(0)
    for _ in range(10):
        x, y = augment(image, label, rng)
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        y = y.numpy()
        assert (y == 255).sum() == 32 * 32 - 24 * 32  # 8 rows of padding: 24 of 32 rows are image
        valid = y != 255
        assert np.array_equal(_decode(x)[valid], COLOURS[y[valid]])
        assert np.allclose(x.numpy()[:, ~valid], 0)  # padding is the mean colour


def test_flip_happens_about_half_the_time():
    image, label = _labelled_image(32, 32)
    rng = random.Random(1)
    flips = sum(np.array_equal(TrainAugment(crop=32)(image, label, rng)[1].numpy(), label[:, ::-1])
                for _ in range(200))
    assert 70 < flips < 130


def test_resize_long_draws_the_long_side():
    image, label = _labelled_image(40, 80)
    augment = TrainAugment(crop=100, resize_long=(50, 50), flip=False)
    _, y = augment(image, label, random.Random(0))
    assert (y != 255).sum() == 50 * 25  # long side 80 -> 50, short side 40 -> 25
    assert set(np.unique(y.numpy())) <= {0, 1, 2, 3, 255}  # nearest neighbour: no mixed labels


def test_multiscale_inputs_and_fused_flips():
    image, _ = _labelled_image(20, 32)
    batches = multiscale_inputs(image, scales=(1.0, 0.5, 2.0))
    assert [tuple(b.shape) for b in batches] == [(2, 3, 20, 32), (2, 3, 10, 16), (2, 3, 40, 64)]
    assert torch.equal(batches[0][1], batches[0][0].flip(-1))
    assert torch.allclose(batches[0][0], torch.from_numpy(normalize(image).transpose(2, 0, 1)))
    out = torch.arange(12.0).reshape(2, 1, 2, 3)
    assert torch.equal(fuse_flips(out), out[0] + out[1].flip(-1))


def test_warp_resizes_the_whole_image_to_a_square():
    image, label = _labelled_image(20, 32)
    x, y = TrainAugment(crop=16, warp=True, flip=False)(image, label)
    assert x.shape == (3, 16, 16) and y.shape == (16, 16)
    warped, warped_label = warp(image, 16, label)
    assert torch.allclose(x, torch.from_numpy(normalize(warped).transpose(2, 0, 1)))
    assert np.array_equal(y.numpy(), warped_label) and (y != 255).all()  # nothing cropped away, no padding
    batches = multiscale_inputs(image, flip=False, sizes=[8, 24])
    assert [tuple(b.shape) for b in batches] == [(1, 3, 8, 8), (1, 3, 24, 24)]
    with pytest.raises(ValueError):
        TrainAugment(crop=16, scale=(0.5, 1.0), warp=True)


def test_top_left_crop_pads_right_and_bottom():
    image = np.arange(2 * 3 * 1, dtype=np.float32).reshape(2, 3, 1) + 1
    out = top_left_crop(image, 4)
    assert out.shape == (4, 4, 1) and (out[:2, :3] == image).all() and out[2:].sum() == 0 == out[:, 3:].sum()
    assert (top_left_crop(image, 1) == image[:1, :1]).all()


def cv2_rotation(h: int, w: int, angle: float) -> np.ndarray:
    """cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1) as its documentation defines it: 2 x 3, (x, y)."""
    a, b = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    cx, cy = w / 2, h / 2
    return np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy]])


def warp_affine_reference(source: np.ndarray, matrix: np.ndarray, order: int, fill: float) -> np.ndarray:
    """cv2.warpAffine(source, matrix, (w, h)) in float64: every output pixel (x, y) samples the source at
    matrix^-1 (x, y), bilinear (order 1, the fill value beyond the border) or nearest (order 0)."""
    h, w = source.shape[:2]
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    out = np.empty(source.shape, np.float64)
    padded = np.pad(source.astype(np.float64), [(1, 1), (1, 1)] + [(0, 0)] * (source.ndim - 2), constant_values=fill)
    for y in range(h):
        for x in range(w):
            sx, sy, _ = inverse @ [x, y, 1]
            if order == 0:
                iy, ix = int(np.floor(sy + 0.5)), int(np.floor(sx + 0.5))
                out[y, x] = source[iy, ix] if 0 <= iy < h and 0 <= ix < w else fill
                continue
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            fy, fx = sy - y0, sx - x0
            value = 0.0
            for dy, wy in ((0, 1 - fy), (1, fy)):
                for dx, wx in ((0, 1 - fx), (1, fx)):
                    yy, xx = y0 + dy + 1, x0 + dx + 1
                    inside = 0 <= yy < h + 2 and 0 <= xx < w + 2
                    value = value + wy * wx * (padded[yy, xx] if inside else fill)
            out[y, x] = value
    return out


@pytest.mark.parametrize("angle", [7.3, -9.1, 90.0])
def test_rotation_is_cv2s_rotation_matrix_and_warp(angle):
    rng = np.random.default_rng(0)
    h, w = 11, 14
    image = rng.normal(size=(h, w, 3)).astype(np.float32)
    label = rng.integers(0, 5, (h, w, 2)).astype(np.uint8)
    got_image, got_label = rotate(image, angle, label)
    matrix = cv2_rotation(h, w, angle)
    np.testing.assert_allclose(got_image, warp_affine_reference(image, matrix, 1, 0.0), atol=1e-5)
    expected = warp_affine_reference(label, matrix, 0, 255)
    assert got_label.dtype == np.uint8 and np.mean(got_label == expected) > 0.97  # ties of nearest aside
    assert (got_label == 255).any() and set(np.unique(got_label)) <= set(range(5)) | {255}


def test_blur_is_cv2s_5x5_gaussian_of_sigma_0():
    """cv2.GaussianBlur(image, (5, 5), 0): the binomial kernel [1 4 6 4 1] / 16 in both directions, borders
    reflected without repeating the edge (BORDER_REFLECT_101)."""
    rng = np.random.default_rng(1)
    image = rng.normal(size=(9, 12, 3))
    kernel = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256
    padded = np.pad(image, [(2, 2), (2, 2), (0, 0)], mode="reflect")  # numpy's reflect = OpenCV's REFLECT_101
    expected = np.zeros_like(image)
    for dy in range(5):
        for dx in range(5):
            expected += kernel[dy, dx] * padded[dy:dy + 9, dx:dx + 12]
    np.testing.assert_allclose(blur(image), expected, rtol=1e-12)


def test_rotation_and_blur_happen_about_half_the_time_and_keep_label_with_image(monkeypatch):
    import wsss.transforms as transforms
    calls = {"rotate": 0, "blur": 0}
    for name in calls:
        def counted(*args, _name=name, _fn=getattr(transforms, name)):
            calls[_name] += 1
            return _fn(*args)
        monkeypatch.setattr(transforms, name, counted)
    image, label = _labelled_image(64, 64)
    for seed in range(200):
        before = calls["blur"]
        x, y = TrainAugment(64, rotate=10.0, blur=True)(image, label, random.Random(seed))
        if calls["blur"] > before:
            continue
        # no blur: away from block edges the rotated image shows the colour of the rotated label
        y = y.numpy()
        inner = np.ones_like(y, bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                inner &= np.roll(y, (dy, dx), (0, 1)) == y
        inner &= y != 255
        inner[[0, -1]] = inner[:, [0, -1]] = False
        assert inner.sum() > 1000
        np.testing.assert_allclose(_decode(x)[inner], COLOURS[y[inner]], atol=2)
    assert 70 < calls["rotate"] < 130 and 70 < calls["blur"] < 130
