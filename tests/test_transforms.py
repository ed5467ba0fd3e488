"""Training augmentation keeps image and label aligned; inference inputs match IRNet's multi-scale + flip."""
import random

import numpy as np
import pytest
import torch

from wsss.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TrainAugment,
    fuse_flips,
    multiscale_inputs,
    normalize,
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
