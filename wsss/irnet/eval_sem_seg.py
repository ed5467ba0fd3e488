"""The eval_sem_seg stage: mIoU, precision and recall of label PNGs against `SegmentationClass` (IRNet Table 2).

Used for the random-walk semantic labels (stage "sem_seg", method "irnet_rw") and for the IR labels (stage
"ir_label"); `stage` and `method` params name the rows. Void ground truth (255) is not scored, nor are
pixels the labels leave unsure (255, only IR labels have them): the extra metric `coverage` is the share of
non-void ground-truth pixels that were scored (1 for semantic labels).

params: class_names, split, stage ("sem_seg" | "ir_label"), method ("irnet_rw" | "irnet_crf").
"""
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wsss import metrics
from wsss.datasets import voc
from wsss.params import Param, resolve

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "split": voc.SPLIT,
    "stage": Param(str, help="the metrics rows' stage (ir_label, sem_seg)"),
    "method": Param(str, help="the metrics rows' method (irnet_crf, irnet_rw)"),
}


def run(params: dict, *, root, labels, out):
    """Writes metrics rows for the label PNGs in `labels` over the images of `split`."""
    params = resolve(params, PARAMS, "eval_sem_seg")
    n = len(params["class_names"])
    conf = np.zeros((n, n), np.int64)
    unsure = 0
    for image_id in tqdm(voc.scored_ids(root, params["split"]), desc=f"eval {params['stage']}"):
        gt = voc.load_mask(voc.path(root, "mask", image_id), n)
        pred = voc.load_mask(Path(labels) / f"{image_id}.png", n, gt.shape)
        scored = pred != voc.IGNORE
        conf += metrics.confusion(pred[scored], gt[scored], n)
        unsure += int(np.sum(~scored & (gt != voc.IGNORE)))
    coverage = conf.sum() / max(conf.sum() + unsure, 1)
    metrics.write(out, metrics.rows(params["stage"], params["method"], params["split"], params["class_names"],
                                    conf, coverage=coverage))
