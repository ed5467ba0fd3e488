"""Stage cam_vs_fraction: RPNet Table II, CAM mIoU against the share of the training data, per method.

Input: eval_cam metrics files, one per (method, fraction), method-major in the order of params `methods`
and `fractions`. Outputs: `table` (CSV: method, train_fraction, miou) and `plot` (mIoU against the fraction
on a log2 axis, one line per method)."""
import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt
import pandas as pd

from wsss.errors import DataError
from wsss.io import atomic_path, save_csv
from wsss.metrics import read
from wsss.params import Param, resolve

PARAMS = {
    "methods": Param(list, help="CAM methods (irnet, rpnet), the outer order of the inputs"),
    "fractions": Param(list, help="train_fraction values, the inner order of the inputs"),
}


def run(params: dict, *, inputs: list, table, plot):
    """Collects the CAM mIoU of every (method, fraction) into `table` and draws `plot`."""
    params = resolve(params, PARAMS, "cam_vs_fraction")
    pairs = [(m, f) for m in params["methods"] for f in params["fractions"]]
    if len(pairs) != len(inputs):
        raise DataError(f"cam_vs_fraction: {len(inputs)} metrics files for {len(pairs)} (method, fraction) pairs")
    rows = [dict(method=m, train_fraction=f, miou=cam_miou(file)) for (m, f), file in zip(pairs, inputs)]
    result = pd.DataFrame(rows)
    save_csv(table, result)
    draw(result, plot)


def cam_miou(file) -> float:
    """The CAM mIoU (stage cam, metric iou, class mean) of an eval_cam metrics file."""
    t = read(file)
    value = t[(t.stage == "cam") & (t.metric == "iou") & (t["class"] == "")].value
    if len(value) != 1:
        raise DataError(f"{file}: expected one CAM mIoU row, found {len(value)}")
    return float(value.iloc[0])


def draw(result: pd.DataFrame, out):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, rows in result.groupby("method", sort=False):
        rows = rows.sort_values("train_fraction")
        ax.plot(rows.train_fraction, rows.miou, marker="o", label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("share of the training images")
    ax.set_ylabel("CAM mIoU")
    ax.set_title("CAM mIoU vs training data (RPNet Table II)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
