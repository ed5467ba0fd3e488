"""The eval_ins_seg stage: AP^r of instance pseudo-labels (IRNet Tables 1 and 3) at mask IoU 0.5 and 0.7.

Ground truth: each instance id of `SegmentationObject/<id>.png` is one mask (void 255 pixels belong to
none), its class the majority `SegmentationClass` label under it. Predictions: the ins_seg/<id>.npz files of
make_ins_seg_labels. AP is the released evaluation's (chainercv `eval_instance_segmentation_voc`, VOC 2010+
all-point interpolation): per class, detections sorted by score; one matches the ground-truth mask of its
class with the highest IoU if that IoU reaches the threshold and the mask is not yet taken; AP = area under
the interpolated precision-recall curve; the mean runs over classes with ground truth.

params: class_names, split.
"""
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wsss import metrics
from wsss.datasets import voc
from wsss.irnet.make_ins_seg_labels import load_instances
from wsss.params import resolve

PARAMS = {"class_names": voc.CLASS_NAMES, "split": voc.SPLIT}

THRESHOLDS = {"ap50": 0.5, "ap70": 0.7}


def run(params: dict, *, root, ins_seg, out):
    """Writes metrics rows (stage "ins_seg", method "irnet", metrics ap50 / ap70, per class and mean)."""
    params = resolve(params, PARAMS, "eval_ins_seg")
    class_names = params["class_names"]
    preds, gts = [], []
    for image_id in tqdm(voc.scored_ids(root, params["split"], ("mask", "instances")), desc="eval_ins_seg"):
        gt = gt_instances(root, image_id, len(class_names))
        pred = load_instances(Path(ins_seg) / f"{image_id}.npz")
        if pred["masks"].shape[1:] != gt["masks"].shape[1:]:
            raise voc.DataError(f"{Path(ins_seg) / image_id}.npz: masks are {pred['masks'].shape[1:]} but the "
                                 f"image is {gt['masks'].shape[1:]}")
        preds.append(pred)
        gts.append(gt)
    rows = []
    for metric, thresh in THRESHOLDS.items():
        ap = average_precision(preds, gts, len(class_names), thresh)
        rows.append(_row(params, metric, "", np.nanmean(ap[1:])))
        rows += [_row(params, metric, name, v) for name, v in zip(class_names[1:], ap[1:])]
    metrics.write(out, rows)


def _row(params, metric, class_name, value):
    return dict(stage="ins_seg", method="irnet", split=params["split"], metric=metric,
                **{"class": class_name}, value=float(value))


def gt_instances(root, image_id, n_classes) -> dict:
    """{"masks": bool [n, H, W], "classes": int64 [n]} of one image's ground-truth instances."""
    labels = voc.load_mask(voc.path(root, "mask", image_id), n_classes)
    ids = voc.load_instances(voc.path(root, "instances", image_id), labels.shape)
    instance_ids = [i for i in np.unique(ids) if i not in (0, voc.IGNORE)]
    masks = np.stack([ids == i for i in instance_ids]) if instance_ids else np.zeros((0, *ids.shape), bool)
    classes = []
    for i, mask in zip(instance_ids, masks):
        counts = np.bincount(labels[mask], minlength=256)[1:n_classes]
        if not counts.any():
            raise voc.DataError(f"{voc.path(root, 'instances', image_id)}: instance {i} lies on no object "
                                 "class in SegmentationClass")
        classes.append(int(counts.argmax()) + 1)
    return {"masks": masks, "classes": np.asarray(classes, np.int64)}


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [n, m] between bool masks a [n, H, W] and b [m, H, W]."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1)


def average_precision(preds: list, gts: list, n_classes: int, iou_thresh: float) -> np.ndarray:
    """AP per class [n_classes] (index = label-space class; NaN for background and classes without
    ground truth). preds: dicts with masks, classes, scores; gts: dicts with masks, classes."""
    n_pos, scores, matched = defaultdict(int), defaultdict(list), defaultdict(list)
    for pred, gt in zip(preds, gts):
        for c in np.union1d(pred["classes"], gt["classes"]):
            p = pred["classes"] == c
            order = np.argsort(-pred["scores"][p], kind="stable")
            p_masks, p_scores = pred["masks"][p][order], pred["scores"][p][order]
            g_masks = gt["masks"][gt["classes"] == c]
            n_pos[c] += len(g_masks)
            scores[c] += p_scores.tolist()
            matched[c] += _match(p_masks, g_masks, iou_thresh)
    ap = np.full(n_classes, np.nan)
    for c in n_pos:
        if n_pos[c] > 0:
            order = np.argsort(-np.asarray(scores[c]), kind="stable")
            ap[c] = _area_under_pr(np.asarray(matched[c], bool)[order], n_pos[c])
    return ap


def _match(p_masks, g_masks, iou_thresh) -> list[bool]:
    """True positives of one image and class, detections in descending score order: each detection
    claims its best-IoU ground truth; a second claim on the same ground truth is a false positive."""
    if len(g_masks) == 0:
        return [False] * len(p_masks)
    iou = mask_iou(p_masks, g_masks) if len(p_masks) else np.zeros((0, len(g_masks)))
    taken = np.zeros(len(g_masks), bool)
    out = []
    for row in iou:
        g = int(row.argmax())
        out.append(bool(row[g] >= iou_thresh and not taken[g]))
        taken[g] |= row[g] >= iou_thresh
    return out


def _area_under_pr(tp: np.ndarray, n_pos: int) -> float:
    """VOC 2010+ AP: precision made monotone from the right, summed over the recall steps."""
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(~tp)
    precision = np.concatenate([[0.0], tp_cum / np.maximum(tp_cum + fp_cum, 1), [0.0]])
    recall = np.concatenate([[0.0], tp_cum / n_pos, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    step = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[step + 1] - recall[step]) * precision[step + 1]))
