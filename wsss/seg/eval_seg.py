"""The eval_seg stage: mIoU and per-class IoU / precision / recall (DSRG Table 2) of a folder of label
PNGs against the ground-truth masks of `split`, written as stage "seg" rows of the metrics table, `method`
naming the labels' origin (e.g. irn, dsrg, dsrg_no_growth, dsrg_retrain)."""
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wsss import metrics
from wsss.datasets import voc
from wsss.params import Param, resolve

PARAMS = {"class_names": voc.CLASS_NAMES, "split": voc.SPLIT, "method": Param(str, help="the metrics rows' method")}


def run(params: dict, *, root, pred, out):
    """Scores `pred`/<id>.png for every image of `split`."""
    params = resolve(params, PARAMS, "eval_seg")
    class_names = params["class_names"]
    n = len(class_names)
    conf = np.zeros((n, n), np.int64)
    for image_id in tqdm(voc.scored_ids(root, params["split"]), desc="eval_seg"):
        gt = voc.load_mask(voc.path(root, "mask", image_id), n)
        file = Path(pred) / f"{image_id}.png"
        label = voc.load_mask(file, n, gt.shape)
        if (label == voc.IGNORE).any():
            raise voc.DataError(f"{file}: prediction holds ignore (255) pixels; every pixel needs a class")
        conf += metrics.confusion(label, gt, n)
    metrics.write(out, metrics.rows("seg", params["method"], params["split"], class_names, conf))
