"""The `report` stage: a summary table (HTML), the CAM threshold-sweep plot and CAM overlay images.

`snakemake --report` bundles these outputs (marked with report() in workflow/rules/report.smk) into one
HTML file; the files are also readable on their own under {run_dir}/report/."""
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: clusters and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from wsss import metrics
from wsss.datasets import voc
from wsss.io import atomic_path
from wsss.params import Param, resolve
from wsss.pipeline import regressions

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "split": voc.SPLIT,
    "n_overlays": Param(int, 6, "images with CAM overlays"),
    "shards": Param(int, 1, "the run's shard count (benchmarks of another count are old runs')"),
}


def run(params: dict, *, root, metrics_csv, sweep, cams, benchmarks, summary, sweep_plot, overlays):
    """Writes the summary table (with the run times of every rule's file under `benchmarks`), the sweep
    plot and `n_overlays` CAM overlays."""
    params = resolve(params, PARAMS, "report")
    table = metrics.read(metrics_csv)
    write_summary(table, benchmarks, summary, params["shards"])
    plot_sweep(pd.read_csv(sweep), sweep_plot)
    ids = voc.read_ids(root, params["split"])[: params["n_overlays"]]
    with atomic_path(overlays) as tmp:
        tmp.mkdir()
        for image_id in ids:
            plot_cam_overlay(root, image_id, Path(cams) / f"{image_id}.npz", params["class_names"],
                             tmp / f"{image_id}.png")


def write_summary(table: pd.DataFrame, benchmarks, out, shards: int):
    means = table[table["class"] == ""].pivot_table(index=["stage", "method", "split"], columns="metric",
                                                    values="value", sort=False)
    per_class = table[(table["class"] != "") & (table.metric == "iou")].pivot_table(
        index=["stage", "method", "split"], columns="class", values="value", sort=False)
    times = run_times(benchmarks, shards)
    html = "\n".join([
        "<html><head><meta charset='utf-8'><title>wsss run summary</title></head><body>",
        regressions.html(table),  # stages scoring below their input, in red
        "<h2>Means</h2>", means.to_html(float_format="{:.4f}".format),
        "<h2>Per-class IoU</h2>", per_class.to_html(float_format="{:.3f}".format),
        "<h2>Run time per rule (shards summed)</h2>", times.to_html(index=False, float_format="{:.1f}".format),
        "</body></html>"])
    with atomic_path(out) as tmp:
        tmp.write_text(html)


def run_times(benchmarks, shards: int) -> pd.DataFrame:
    """rule, seconds: the Snakemake benchmark files under `benchmarks`, a rule's jobs summed."""
    times = pd.DataFrame([dict(rule=_rule_of(p.relative_to(benchmarks)), seconds=pd.read_csv(p, sep="\t")["s"].iloc[0])
                          for p in sorted(Path(benchmarks).glob("**/*.tsv")) if _current(p, shards)])
    return times.groupby("rule", sort=False).sum().reset_index()


def _current(file: Path, shards: int) -> bool:
    """False for the benchmark of a shard of an earlier run with another `shards` (<i>-of-<n>.tsv)."""
    match = re.fullmatch(r"\d+-of-(\d+)", file.stem)
    return match is None or int(match.group(1)) == shards


def _rule_of(relative: Path) -> str:
    """<rule>.tsv, or <rule>/<shard or folder>.tsv for a rule with many jobs (their times are summed)."""
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def plot_sweep(sweep: pd.DataFrame, out):
    best = sweep.loc[sweep.miou.idxmax()]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sweep.threshold, sweep.miou, marker="o")
    ax.axvline(best.threshold, color="gray", linestyle="--", label=f"best {best.threshold:.2f}: {best.miou:.3f}")
    ax.set(xlabel="background threshold", ylabel="mIoU", title="CAM mIoU vs background threshold")
    ax.legend()
    _save(fig, out)


def plot_cam_overlay(root, image_id, cam_file, class_names, out):
    image = voc.load_image(Path(root) / "JPEGImages" / f"{image_id}.jpg")
    mask = voc.load_mask(Path(root) / "SegmentationClass" / f"{image_id}.png", len(class_names), image.shape[:2])
    cam = np.load(cam_file)
    palette = voc.voc_palette()
    panels = [("image", image), ("ground truth", palette[mask])]
    panels += [(class_names[k], None) for k in cam["keys"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.4))
    for i, (ax, (title, picture)) in enumerate(zip(np.atleast_1d(axes), panels)):
        if picture is None:  # CAM of a present class over the image
            ax.imshow(image)
            ax.imshow(cam["high_res"][i - 2], cmap="jet", alpha=0.5, vmin=0, vmax=1)
        else:
            ax.imshow(picture)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    _save(fig, out)


def _save(fig, out):
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
