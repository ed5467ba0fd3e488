"""The data-driven choices of issue 13: the CAMs' Otsu threshold and the random walk with a walked background."""
from functools import partial

import numpy as np
import pytest
import torch

from wsss.cam import calibration
from wsss.irnet import net as irn_net
from wsss.irnet.make_sem_seg_labels import semantic_label, walked_background_label


@pytest.mark.parametrize("t", [0.15, 0.38, 0.5, 0.7])
def test_background_power_crosses_the_cams_at_the_threshold(t):
    g = calibration.background_power(t)
    assert (1 - t) ** g == pytest.approx(t)
    assert (1 - (t + 0.05)) ** g < t + 0.05 and (1 - (t - 0.05)) ** g > t - 0.05


def _bimodal_cams(folder, n=6):
    """CAM files whose pixels are ~0.1 (background) or ~0.7 (object); their ids."""
    rng = np.random.default_rng(0)
    for i in range(n):
        high_res = np.where(rng.random((2, 20, 24)) < 0.3, rng.normal(0.7, 0.05, (2, 20, 24)),
                            rng.normal(0.1, 0.05, (2, 20, 24))).clip(0, 1).astype(np.float32)
        np.savez(folder / f"im{i}.npz", keys=np.array([1, 3]), cam=high_res[:, ::4, ::4], high_res=high_res)
    return [f"im{i}" for i in range(n)]


def test_otsu_threshold_splits_object_and_background_cams(tmp_path):
    assert 0.25 < calibration.otsu_threshold(tmp_path, _bimodal_cams(tmp_path)) < 0.55


def test_fill_auto_replaces_only_auto_values(tmp_path):
    ids = _bimodal_cams(tmp_path)
    t = calibration.otsu_threshold(tmp_path, ids)
    filled = calibration.fill_auto({"conf_fg_thres": "auto", "conf_bg_thres": 0.05, "split": "train"}, tmp_path, ids)
    assert filled == {"conf_fg_thres": pytest.approx(t + 0.2 * (1 - t)), "conf_bg_thres": 0.05, "split": "train"}
    assert calibration.fill_auto({"bg_cam": 0.1}, tmp_path / "missing", ids) == {"bg_cam": 0.1}  # no CAMs read


def test_walked_background_stops_spill_that_floods_the_plane():
    """An object (a 6x6 CAM block of 1.0 inside a closed boundary ring) plus a weak spill of 0.3 over the
    background outside the ring: with the paper's plane the walk spreads the spill over the whole
    background region, which then beats the 0.25 plane; a walked background keeps it background."""
    h = w = 16
    cam = torch.full((1, h, w), 0.3)
    cam[0, 5:11, 5:11] = 1.0
    boundary = torch.zeros(h, w)
    boundary[4, 4:12] = boundary[11, 4:12] = boundary[4:12, 4] = boundary[4:12, 11] = 1.0
    walk = partial(irn_net.propagate, boundary=boundary, input_size=(4 * h, 4 * w), image_size=(4 * h, 4 * w),
                   beta=10, steps=64, radius=3)
    keys = np.array([2])
    plane = semantic_label(walk(cam), keys, 0.25)
    walked = walked_background_label(walk, cam, keys, calibration.background_power(0.5))
    inside, outside = np.zeros((4 * h, 4 * w), bool), np.ones((4 * h, 4 * w), bool)
    inside[24:40, 24:40] = True
    outside[12:52, 12:52] = False
    assert (plane[outside] == 2).mean() > 0.9  # the spill floods the background
    assert (walked[outside] == 0).all() and (walked[inside] == 2).all()
