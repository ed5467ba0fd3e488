"""eval_cam's calibration rows (cam_inside / cam_outside / cam_spill) against a float64 reference."""
import numpy as np
import pandas as pd

from wsss.cam.eval_cam import Calibration

NAMES = ["background", "a", "b", "c"]


def test_calibration_equals_direct_means_on_random_images():
    rng = np.random.default_rng(0)
    thresholds = [0.2, 0.5]
    calibration = Calibration(len(NAMES), thresholds)
    inside, outside = {1: [], 2: []}, {1: [], 2: []}
    for _ in range(5):
        gt = rng.choice([0, 1, 2, 255], size=(9, 7)).astype(np.uint8)
        keys = np.array([1, 2])
        cams = rng.random((2, 9, 7)).astype(np.float32)
        calibration.add(keys, cams, gt)
        for k, cam in zip(keys, cams.astype(np.float64)):
            inside[k] += cam[gt == k].tolist()
            outside[k] += cam[(gt != k) & (gt != 255)].tolist()
    table = pd.DataFrame(calibration.rows("cam", "train", NAMES, best=1)).set_index(["metric", "class"])["value"]
    for k, name in ((1, "a"), (2, "b")):
        assert np.isclose(table["cam_inside", name], np.mean(inside[k]))
        assert np.isclose(table["cam_outside", name], np.mean(outside[k]))
        assert np.isclose(table["cam_spill", name], np.mean(np.array(outside[k]) > 0.5))
    assert np.isnan(table["cam_inside", "c"])  # never present: no value, and the mean skips it
    assert np.isclose(table["cam_inside", ""], (table["cam_inside", "a"] + table["cam_inside", "b"]) / 2)
