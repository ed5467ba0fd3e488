"""Confusion-matrix scores (mIoU, precision, recall) and the long metrics table.

Every evaluation stage writes rows (stage, method, split, metric, class, value) with `class` empty for
means; the `metrics` rule concatenates them into {run_dir}/metrics.csv, which the report reads."""
import warnings

import numpy as np
import pandas as pd

from wsss import IGNORE
from wsss.io import save_csv

COLUMNS = ["stage", "method", "split", "metric", "class", "value"]


def confusion(pred: np.ndarray, gt: np.ndarray, n_classes: int) -> np.ndarray:
    """[n, n] counts, rows = ground truth, columns = prediction; pixels where gt == 255 are ignored."""
    valid = gt != IGNORE
    idx = gt[valid].astype(np.int64) * n_classes + pred[valid].astype(np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scores(conf: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class IoU, precision and recall from a confusion matrix (NaN where a class never occurs)."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    gt, pred = conf.sum(1), conf.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"iou": tp / (gt + pred - tp), "precision": tp / pred, "recall": tp / gt}


def supervision_quality(conf: np.ndarray, n_classes: int) -> list[float]:
    """A training supervision's quality (DSRG Fig. 4, PSI's SLD steps) from a confusion whose prediction column
    `n_classes` counts the unlabelled pixels, so recall counts what the supervision leaves out: mean precision,
    recall and IoU over the classes and the labelled fraction (NaN where nothing was scored)."""
    s = scores(conf)
    with warnings.catch_warnings():  # a class that never occurs, or no mask at all
        warnings.simplefilter("ignore", RuntimeWarning)
        quality = [float(np.nanmean(s[m][:n_classes])) for m in ("precision", "recall", "iou")]
    total = conf.sum()
    return quality + [float(1 - conf[:, n_classes].sum() / total) if total else float("nan")]


def rows(stage, method, split, class_names, conf, **extra) -> list[dict]:
    """Long-format rows for one confusion matrix: IoU, precision, recall per class and their means (class
    empty; so mIoU is metric "iou" with empty class), plus any extra scalar metrics."""
    out = []
    for metric, per_class in scores(conf).items():
        out.append(dict(stage=stage, method=method, split=split, metric=metric, **{"class": ""},
                        value=float(np.nanmean(per_class))))
        out += [dict(stage=stage, method=method, split=split, metric=metric, **{"class": name}, value=float(v))
                for name, v in zip(class_names, per_class)]
    out += [dict(stage=stage, method=method, split=split, metric=k, **{"class": ""}, value=float(v))
            for k, v in extra.items()]
    return out


def write(path, table_rows: list[dict]):
    save_csv(path, pd.DataFrame(table_rows, columns=COLUMNS))


def read(path) -> pd.DataFrame:
    table = pd.read_csv(path, keep_default_na=False, dtype={"class": str})  # "" = mean, not NaN
    table["value"] = pd.to_numeric(table["value"].replace("", None), errors="raise")  # "" = NaN IoU
    return table
