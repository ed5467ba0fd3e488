"""Stage eval_cam: CAMs as segmentations, scored against the ground-truth masks (released step/eval_cam.py).

For each background threshold t in `thresholds`, a pixel's label is the argmax over [t, high_res CAMs of
the image's classes] (background wins ties), i.e. its strongest class where that CAM exceeds t, else
background. Void (255) pixels are ignored.

Outputs: `metrics` (long table, stage "cam", method `method`: "cam", "rpnet" for RPNet's CAMs): IoU, precision and recall per class and their
means at the threshold with the best mIoU, plus metrics `best_threshold`, `fixed_threshold` (the paper's
0.15, `fixed_threshold` param) and `iou_at_fixed_threshold`, the mIoU there (choosing the threshold on the
scored split itself is optimistic; IRNet reports the fixed one), plus the CAMs' calibration per class
(issue 13; each CAM is divided by its own max, so a diffuse one is high far from its object): `cam_inside`
the mean CAM on the class's pixels, `cam_outside` its mean on the other non-void pixels of the images with
the class, `cam_spill` the share of those with CAM above the best threshold; `sweep` (CSV): one row per
threshold with columns threshold, miou, precision, recall (class means).
params: class_names, split, thresholds (IRNet evaluates at the single threshold 0.15), fixed_threshold
(0.15: run_sample.py cam_eval_thres), method."""
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from wsss.cam import make_cam
from wsss.datasets import voc
from wsss.datasets.voc import load_mask, path, scored_ids
from wsss.io import save_csv
from wsss.metrics import confusion, rows, scores, write
from wsss.params import Param, resolve

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "split": voc.SPLIT,
    "thresholds": Param(list, help="background thresholds of the sweep (IRNet evaluates at 0.15)"),
    "fixed_threshold": Param(float, 0.15, "also report the mIoU at this threshold (IRNet's cam_eval_thres)"),
    "method": Param(str, "cam", "the metrics rows' method (cam: IRNet's CAM network; rpnet)"),
}


def run(params: dict, *, root, cams, metrics, sweep):
    """Scores the CAMs in folder `cams` for every image of `split` over the threshold sweep."""
    params = resolve(params, PARAMS, "eval_cam")
    class_names, fixed = params["class_names"], params["fixed_threshold"]
    swept = list(params["thresholds"])
    thresholds = swept + ([] if fixed in swept else [fixed])
    conf = np.zeros((len(thresholds), len(class_names), len(class_names)), np.int64)
    calibration = Calibration(len(class_names), thresholds)
    for image_id in tqdm(scored_ids(root, params["split"]), desc="eval_cam"):
        gt = load_mask(path(root, "mask", image_id), len(class_names))
        maps = make_cam.load(Path(cams) / f"{image_id}.npz", gt.shape)
        for i, label in enumerate(threshold_labels(maps["keys"], maps["high_res"], thresholds)):
            conf[i] += confusion(label, gt, len(class_names))
        calibration.add(maps["keys"], maps["high_res"], gt)
    table = sweep_table(thresholds, conf)
    best = int(table["miou"].to_numpy()[:len(swept)].argmax())  # the best of the sweep proper
    save_csv(sweep, table.iloc[:len(swept)])
    write(metrics, rows("cam", params["method"], params["split"], class_names, conf[best], best_threshold=thresholds[best],
                        fixed_threshold=fixed, iou_at_fixed_threshold=table["miou"].iloc[thresholds.index(fixed)])
          + calibration.rows(params["method"], params["split"], class_names, best))


class Calibration:
    """Per-class sums of the CAM on and off its class's pixels, and counts above each threshold off them."""

    def __init__(self, n_classes: int, thresholds):
        self.thresholds = np.asarray(thresholds, np.float64)
        self.sums = np.zeros((n_classes, 4))  # CAM sum inside, inside pixels, CAM sum outside, outside pixels
        self.spill = np.zeros((n_classes, len(thresholds)))  # outside pixels with CAM > threshold

    def add(self, keys, high_res, gt):
        scored = gt != voc.IGNORE
        for k, cam in zip(keys, high_res):
            inside, outside = cam[scored & (gt == k)], cam[scored & (gt != k)]
            self.sums[k] += [inside.sum(), inside.size, outside.sum(), outside.size]
            self.spill[k] += (outside[:, None] > self.thresholds).sum(0)

    def rows(self, method, split, class_names, best: int) -> list[dict]:
        """cam_inside, cam_outside, cam_spill (at threshold index `best`) per class and their means."""
        with np.errstate(invalid="ignore", divide="ignore"):
            values = {"cam_inside": self.sums[:, 0] / self.sums[:, 1], "cam_outside": self.sums[:, 2] / self.sums[:, 3],
                      "cam_spill": self.spill[:, best] / self.sums[:, 3]}
        out = []
        for metric, per_class in values.items():
            per_class = per_class[1:]  # background has no CAM
            out.append(dict(stage="cam", method=method, split=split, metric=metric, **{"class": ""},
                            value=float(np.nanmean(per_class)) if np.isfinite(per_class).any() else np.nan))
            out += [dict(stage="cam", method=method, split=split, metric=metric, **{"class": name}, value=float(v))
                    for name, v in zip(class_names[1:], per_class)]
        return out


def threshold_labels(keys: np.ndarray, high_res: np.ndarray, thresholds) -> np.ndarray:
    """uint8 [T, H, W] label maps, one per background threshold."""
    strongest, winner = high_res.max(0), keys[high_res.argmax(0)]
    return np.stack([np.where(strongest > t, winner, 0) for t in thresholds]).astype(np.uint8)


def sweep_table(thresholds, conf: np.ndarray) -> pd.DataFrame:
    """threshold, miou, precision, recall (means over classes that occur) per threshold."""
    means = [{k: float(np.nanmean(v)) for k, v in scores(c).items()} for c in conf]
    return pd.DataFrame({"threshold": thresholds, "miou": [m["iou"] for m in means],
                         "precision": [m["precision"] for m in means], "recall": [m["recall"] for m in means]})
