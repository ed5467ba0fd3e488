"""AP^r of instance labels (IRNet Tables 1 and 3) on hand-computed cases, and mIoU of label maps."""
import numpy as np
import pytest

from wsss import metrics
from wsss.datasets.voc import voc_palette
from wsss.io import save_png
from wsss.irnet import eval_sem_seg
from wsss.irnet.eval_ins_seg import average_precision, mask_iou


def _mask(*spans, width=100):
    """A 1 x width mask, True on the half-open spans [a, b)."""
    m = np.zeros((1, width), bool)
    for a, b in spans:
        m[0, a:b] = True
    return m


def _instances(masks, classes, scores=None):
    out = {"masks": np.stack(masks), "classes": np.asarray(classes, np.int64)}
    if scores is not None:
        out["scores"] = np.asarray(scores, np.float32)
    return out


def test_mask_iou():
    assert np.allclose(mask_iou(np.stack([_mask((0, 8)), _mask((50, 56))]), np.stack([_mask((0, 10))])), [[0.8], [0]])


def test_average_precision_hand_computed():
    gt = _instances([_mask((0, 10)), _mask((50, 60))], [1, 1])
    # IoU with the first ground truth 0.8 and 0.6 (a duplicate), with the second 0.6
    pred = _instances([_mask((0, 8)), _mask((0, 6)), _mask((50, 56))], [1, 1, 1], [0.9, 0.8, 0.7])
    # IoU 0.5: TP, FP (duplicate), TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    # AP = 1/2 * 1 + 1/2 * 2/3 (precision made monotone from the right)
    ap50 = average_precision([pred], [gt], n_classes=3, iou_thresh=0.5)
    assert ap50[1] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # IoU 0.7: TP, FP, FP -> AP = 1/2 * 1
    assert average_precision([pred], [gt], 3, 0.7)[1] == pytest.approx(0.5)
    # background and class 2 (no ground truth) are NaN: not part of the mean
    assert np.isnan(ap50[0]) and np.isnan(ap50[2])


def test_average_precision_ranks_across_images_and_classes():
    gts = [_instances([_mask((0, 10))], [1]), _instances([_mask((0, 10)), _mask((20, 30))], [1, 2])]
    preds = [_instances([_mask((40, 50))], [1], [0.95]),  # a confident false positive in image 1
             _instances([_mask((0, 10)), _mask((20, 30))], [1, 2], [0.5, 0.9])]
    ap = average_precision(preds, gts, 3, 0.5)
    # class 1: FP (0.95) then TP (0.5) of 2 ground truths -> precision 1/2 at recall 1/2 -> AP 1/4
    assert ap[1] == pytest.approx(0.25)
    assert ap[2] == pytest.approx(1.0)
    no_prediction = average_precision([_instances([_mask((0, 1))], [2], [1.0])], [gts[0]], 3, 0.5)
    assert no_prediction[1] == 0 and np.isnan(no_prediction[2])


def _write_root(root, gts):
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"{i}\n" for i in gts))
    for image_id, gt in gts.items():
        save_png(root / "SegmentationClass" / f"{image_id}.png", gt, voc_palette())


def test_eval_sem_seg_scores_labelled_pixels_and_reports_coverage(tmp_path):
    gt = np.zeros((4, 4), np.uint8)
    gt[:, 2:] = 1
    gt[0, 0] = 255  # void: never scored
    _write_root(tmp_path / "root", {"a": gt})
    pred = np.zeros((4, 4), np.uint8)
    pred[:, 2:] = 1
    pred[3, 3] = 0  # one class-1 pixel called background
    pred[1, 1] = 255  # unsure: not scored, lowers coverage
    save_png(tmp_path / "labels" / "a.png", pred, voc_palette())
    out = tmp_path / "m.csv"
    eval_sem_seg.run({"class_names": ["background", "thing"], "split": "train", "stage": "ir_label",
                      "method": "irnet_crf"}, root=tmp_path / "root", labels=tmp_path / "labels", out=out)
    table = metrics.read(out)
    value = {(r.metric, r["class"]): r.value for _, r in table.iterrows()}
    # background: 6 scored gt pixels all right + 1 false positive -> IoU 6/7; thing: 7 of 8 -> IoU 7/8
    assert value[("iou", "background")] == pytest.approx(6 / 7)
    assert value[("iou", "thing")] == pytest.approx(7 / 8)
    assert value[("iou", "")] == pytest.approx((6 / 7 + 7 / 8) / 2)
    assert value[("coverage", "")] == pytest.approx(14 / 15)
    assert set(table.stage) == {"ir_label"} and set(table.method) == {"irnet_crf"}
