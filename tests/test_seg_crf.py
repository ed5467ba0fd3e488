"""wsss.crf: the shared dense CRF against hand-computed cases and pydensecrf's own unary helpers."""
import numpy as np
import pytest
from pydensecrf.utils import unary_from_labels

from wsss.crf import dense_crf, label_probs

NO_PAIRWISE = dict(gauss_compat=0, bilateral_compat=0)


def _random_probs(rng, c, h, w):
    p = rng.random((c, h, w)) + 0.05
    return p / p.sum(0)


def test_without_pairwise_terms_q_is_the_input():
    rng = np.random.default_rng(0)
    probs = _random_probs(rng, 4, 5, 7)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    q = dense_crf(image, probs.astype(np.float32), **NO_PAIRWISE)
    # mean field with unary only: Q = softmax(log p) = p
    np.testing.assert_allclose(q, probs, atol=1e-6)


def test_probability_unary_is_softmax_of_p():
    probs = np.array([[0.9, 0.2]], np.float64).T[:, :, None] * np.ones((1, 1, 2))  # [2, 1, 2]
    q = dense_crf(np.zeros((1, 2, 3), np.uint8), probs.astype(np.float32), log_unary=False, **NO_PAIRWISE)
    expected = np.exp(0.9) / (np.exp(0.9) + np.exp(0.2))  # energy -p, as SEC's / DSRG's training layers
    np.testing.assert_allclose(q[0], expected, rtol=1e-6)


def test_label_probs_is_pydensecrf_unary_from_labels():
    labels = np.array([[0, 2, 1], [2, 2, 0]])
    energy = -np.log(label_probs(labels, 3, gt_prob=0.7)).reshape(3, -1)
    np.testing.assert_allclose(energy, unary_from_labels(labels, 3, 0.7, zero_unsure=False), rtol=1e-6)
    with pytest.raises(ValueError, match="0..2"):
        label_probs(np.array([[3]]), 3)


def test_pairwise_terms_smooth_an_outlier_in_a_flat_region():
    probs = np.zeros((2, 9, 9), np.float32)
    probs[0], probs[1] = 0.6, 0.4
    probs[:, 4, 4] = 0.4, 0.6  # one pixel leans the other way in a uniform grey image
    image = np.full((9, 9, 3), 128, np.uint8)
    assert dense_crf(image, probs, **NO_PAIRWISE).argmax(0)[4, 4] == 1
    assert (dense_crf(image, probs).argmax(0) == 0).all()


def test_colour_edges_stop_the_smoothing():
    probs = np.zeros((2, 8, 8), np.float32)
    probs[0], probs[1] = 0.45, 0.55
    probs[0, :, :4], probs[1, :, :4] = 0.55, 0.45  # left half leans to class 0, right half to class 1
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, 4:] = 255  # and the image has an edge right there
    labels = dense_crf(image, probs, gauss_compat=0, bilateral_sxy=80, bilateral_srgb=13).argmax(0)
    assert (labels[:, :4] == 0).all() and (labels[:, 4:] == 1).all()


def test_scale_divides_the_spatial_deviations():
    rng = np.random.default_rng(1)
    probs = _random_probs(rng, 3, 6, 6).astype(np.float32)
    image = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(dense_crf(image, probs, scale=4),
                                  dense_crf(image, probs, gauss_sxy=0.75, bilateral_sxy=20))


def test_image_must_match_probs():
    with pytest.raises(ValueError, match="uint8 4x4x3"):
        dense_crf(np.zeros((4, 5, 3), np.uint8), np.full((2, 4, 4), 0.5, np.float32))
