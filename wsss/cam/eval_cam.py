"""Stage eval_cam: CAMs as segmentations, scored against the ground-truth masks (released step/eval_cam.py).

For each background threshold t in `thresholds`, a pixel's label is the argmax over [t, high_res CAMs of
the image's classes] (background wins ties), i.e. its strongest class where that CAM exceeds t, else
background. Void (255) pixels are ignored.

Outputs: `metrics` (long table, stage "cam", method `method`: "cam", "rpnet" for RPNet's CAMs): IoU, precision and
recall per class and their means at the threshold with the best mIoU, plus metric `best_threshold`; `sweep`
(CSV): one row per threshold with columns threshold, miou, precision, recall (class means).
params: class_names, split, thresholds (IRNet evaluates at the single threshold 0.15), method; tags_from is unused
(the CAM files carry each image's classes)."""
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from wsss.cam import make_cam
from wsss.datasets import voc
from wsss.datasets.voc import load_mask, path, read_ids
from wsss.io import save_csv
from wsss.metrics import confusion, rows, scores, write
from wsss.params import Param, resolve

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "split": voc.SPLIT,
    "thresholds": Param(list, help="background thresholds of the sweep (IRNet evaluates at 0.15)"),
    "method": Param(str, "cam", "the metrics rows' method (cam: IRNet's CAM network; rpnet)"),
}


def run(params: dict, *, root, cams, metrics, sweep):
    """Scores the CAMs in folder `cams` for every image of `split` over the threshold sweep."""
    params = resolve(params, PARAMS, "eval_cam")
    class_names, thresholds = params["class_names"], list(params["thresholds"])
    conf = np.zeros((len(thresholds), len(class_names), len(class_names)), np.int64)
    for image_id in tqdm(read_ids(root, params["split"]), desc="eval_cam"):
        gt = load_mask(path(root, "mask", image_id), len(class_names))
        maps = make_cam.load(Path(cams) / f"{image_id}.npz", gt.shape)
        for i, label in enumerate(threshold_labels(maps["keys"], maps["high_res"], thresholds)):
            conf[i] += confusion(label, gt, len(class_names))
    table = sweep_table(thresholds, conf)
    best = int(table["miou"].to_numpy().argmax())
    save_csv(sweep, table)
    write(metrics, rows("cam", params["method"], params["split"], class_names, conf[best],
                        best_threshold=thresholds[best]))


def threshold_labels(keys: np.ndarray, high_res: np.ndarray, thresholds) -> np.ndarray:
    """uint8 [T, H, W] label maps, one per background threshold."""
    strongest, winner = high_res.max(0), keys[high_res.argmax(0)]
    return np.stack([np.where(strongest > t, winner, 0) for t in thresholds]).astype(np.uint8)


def sweep_table(thresholds, conf: np.ndarray) -> pd.DataFrame:
    """threshold, miou, precision, recall (means over classes that occur) per threshold."""
    means = [{k: float(np.nanmean(v)) for k, v in scores(c).items()} for c in conf]
    return pd.DataFrame({"threshold": thresholds, "miou": [m["iou"] for m in means],
                         "precision": [m["precision"] for m in means], "recall": [m["recall"] for m in means]})
