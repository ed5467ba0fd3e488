"""The eval_boundary stage: IRNet's boundary map against the ground-truth class boundaries (issue 13).

The random walk (Eq. 12-13) can only be as good as the boundaries it stops at, so they are scored on
their own. Ground-truth boundary (wsss.irnet.boundaries.gt_boundary): the 1 px line between the labels
of `SegmentationClass`, void filled from the nearest labelled pixel (VOC's void band lies along borders).
IRNet's map (image and mirror averaged, as make_sem_seg_labels uses it) is brought to image resolution
and thresholded at each of
`thresholds`; a predicted boundary pixel is correct if a ground-truth one lies within `tolerance` px, a
ground-truth pixel is found if a predicted one does (the usual boundary precision / recall with a
distance tolerance, counted over all images of `split`).

Outputs: `metrics` (stage "boundary", method "irnet"): precision, recall and f1 at the threshold with the
best f1, and `best_threshold`; `sweep` (CSV): threshold, precision, recall, f1 per threshold.
params: split, device, input_scale (train_irn's), thresholds, tolerance (px).
"""
import numpy as np
import pandas as pd
from scipy import ndimage

from wsss.datasets import voc
from wsss.io import save_csv
from wsss.irnet import net as irn_net
from wsss.irnet.boundaries import gt_boundary
from wsss.irnet.make_sem_seg_labels import irn_inputs
from wsss.metrics import write
from wsss.params import Param, resolve
from wsss.runtime import DEVICE
from wsss.shards import SHARD

PARAMS = {
    "split": voc.SPLIT,
    "device": DEVICE,
    "shard": SHARD,
    "input_scale": Param(float, 1.0, "IRNet sees the image rescaled by this (train_irn's value)"),
    "thresholds": Param(list, [0.1, 0.3, 0.5, 0.7, 0.9], "boundary-map thresholds of the sweep"),
    "tolerance": Param(float, 3.0, "px: a boundary pixel this close to one of the other side counts as matched"),
}


def run(params: dict, *, root, cams, irn_model, metrics, sweep):
    """Scores the boundary map of the IRNet at `irn_model` on every image of `split`."""
    params = resolve(params, PARAMS, "eval_boundary")
    thresholds = [float(t) for t in params["thresholds"]]
    counts = np.zeros((len(thresholds), 4), np.int64)  # correct predicted, predicted, found truth, truth
    for x in irn_inputs(params, root, cams, irn_model, desc="eval_boundary"):
        truth = gt_boundary(voc.load_mask(voc.path(root, "mask", x.image_id), 256, x.image_size))
        boundary = irn_net.to_image(x.boundary[None], x.input_size, x.image_size)[0].cpu().numpy()
        counts += match_counts(boundary, truth, thresholds, params["tolerance"])
    table = sweep_table(thresholds, counts)
    best = int(table["f1"].to_numpy().argmax())
    save_csv(sweep, table)
    write(metrics, [dict(stage="boundary", method="irnet", split=params["split"], metric=k, **{"class": ""},
                         value=float(table[k].iloc[best])) for k in ("precision", "recall", "f1")]
          + [dict(stage="boundary", method="irnet", split=params["split"], metric="best_threshold",
                  **{"class": ""}, value=thresholds[best])])


def match_counts(boundary: np.ndarray, truth: np.ndarray, thresholds, tolerance: float) -> np.ndarray:
    """int [T, 4] per threshold: predicted pixels within `tolerance` of truth, predicted pixels, truth pixels
    within `tolerance` of a prediction, truth pixels."""
    near_truth = _distance_to(truth) <= tolerance
    out = np.zeros((len(thresholds), 4), np.int64)
    for i, t in enumerate(thresholds):
        predicted = boundary > t
        near_predicted = _distance_to(predicted) <= tolerance
        out[i] = [(predicted & near_truth).sum(), predicted.sum(), (truth & near_predicted).sum(), truth.sum()]
    return out


def _distance_to(pixels: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest True pixel (inf when there is none)."""
    if not pixels.any():
        return np.full(pixels.shape, np.inf)
    return ndimage.distance_transform_edt(~pixels)


def sweep_table(thresholds, counts: np.ndarray) -> pd.DataFrame:
    precision = counts[:, 0] / np.maximum(counts[:, 1], 1)
    recall = counts[:, 2] / np.maximum(counts[:, 3], 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return pd.DataFrame({"threshold": thresholds, "precision": precision, "recall": recall, "f1": f1})
