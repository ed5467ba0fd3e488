"""The `report` stage: one self-contained HTML page of the run (tables, plots, overlays), and its plots.

The page (`summary`), top to bottom: flags (from an optional flags CSV, in red), one table per stage of
metrics.csv (percentages; the papers' numbers beside ours when `paper_numbers` is set, wsss/pipeline/papers.py),
RPNet's Table I when the run has more than one CAM network (`chains`), every table the rule lists (CSV files,
e.g. ablations), the plots (loss curves from each trainer's train_log.csv, the CAM threshold sweep, every figure the rule
lists), one gallery of overlays per split (image, ground truth, then one column per pseudo-label or
prediction folder the rule lists), and the run time of every rule. Images are embedded (data URIs), so the
file can be mailed or opened from `snakemake --report`'s bundle.

Extending it (a new method): its rule file registers its outputs with `OUT.add(method, kind, file, label, split)`
(wsss/pipeline/plan.py Outputs; kinds metrics (its stage gets a table; add paper numbers to papers.py), figure,
table, train_log, overlay; `ablation=True` for its ablation rows), or `segmentation_network(method, net)` for a
network that infer_seg and eval_seg score (workflow/rules/common.smk). An overlay folder
holds `<id>.png` label maps (palette indices, 255 = none), or `<id>.npz` CAMs (`high_res`) or instances
(`instance_map`)."""
import base64
import html
import io
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: clusters and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from PIL import Image

from wsss import metrics
from wsss.datasets import voc
from wsss.io import atomic_path
from wsss.params import Param, resolve
from wsss.pipeline import papers, regressions
from wsss.visual import blend, labels_over

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "n_overlays": Param(int, 6, "images per overlay gallery"),
    "shards": Param(int, 1, "the run's shard count (benchmarks of another count are old runs')"),
    "paper_numbers": Param(bool, False, "show the papers' numbers beside ours (a paper preset on VOC 2012)"),
    "figure_captions": Param(list, [], "one caption per --figures file"),
    "train_log_names": Param(list, [], "one network name per --train_logs file"),
    "overlay_columns": Param(list, [], "[name, split] per --overlays folder"),
    "table_captions": Param(list, [], "one caption per --tables file"),
}
STAGE_TITLES = {"cam": "Class activation maps", "ir_label": "IRNet inter-pixel relation labels",
                "sem_seg": "Semantic pseudo-labels", "ins_seg": "Instance pseudo-labels",
                "boundary": "IRNet boundaries against the ground-truth boundaries", "seg": "Segmentation networks"}
# RPNet Table I: each CAM network's chain through IRNet (wsss/pipeline/plan.py Chain), named as in the paper
CHAIN_NAMES = {"irnet": "Base + BR (IRNet)", "rpnet": "Base + RPNet + BR"}
OVERLAY_SIZE = 160  # px, the long side of an overlay cell
LOSS_COLUMNS = 4  # loss-curve panels per row
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.name{text-align:left}.paper{color:#777}.flag{color:#b00;font-weight:bold}
.gallery td{padding:2px}.gallery img{display:block}figure{display:inline-block;margin:0 1em 1em 0}
figcaption{font-size:90%;color:#555;max-width:520px}figure img{max-width:100%;height:auto}
.gallery{display:block;overflow-x:auto;max-width:100%}"""


def run(params: dict, *, root, benchmarks, summary, loss_plot, metrics_csv=None, sweep=None, sweep_plot=None,
        figures: list = (), train_logs: list = (), overlays: list = (), tables: list = (), flags=None, config=None):
    """Writes the page `summary` and the plots `loss_plot` and (with a `sweep`) `sweep_plot`; `config`: the run's
    resolved configuration, shown at the end of the page. Without `metrics_csv` (a data set without masks)
    nothing is scored: the page has no tables, and its overlays no ground-truth column."""
    params = resolve(params, PARAMS, "report")
    for what, files, names in (("--figures", figures, "figure_captions"), ("--train_logs", train_logs,
                                                                           "train_log_names"),
                               ("--overlays", overlays, "overlay_columns"), ("--tables", tables, "table_captions")):
        if len(files) != len(params[names]):
            raise ValueError(f"report: {len(files)} {what} but {len(params[names])} {names}")
    table = metrics.read(metrics_csv) if metrics_csv else pd.DataFrame(columns=metrics.COLUMNS)
    settings = yaml.safe_load(Path(config).read_text()) if config is not None and Path(config).is_file() else None
    plots = [loss_plot]
    plot_losses({n: pd.read_csv(f) for n, f in zip(params["train_log_names"], train_logs)}, loss_plot)
    captions = ["Training loss per iteration (thin) and its running mean (thick), from each train_log.csv"]
    if sweep:
        plot_sweep(pd.read_csv(sweep), sweep_plot)
        plots.append(sweep_plot)
        captions.append("CAM mIoU against the background threshold")
    if metrics_csv is None:
        results = "<p>Nothing is scored: the data set has no masks (dataset.masks).</p>"
    elif params["paper_numbers"]:
        results = "<p>Percentages. Grey: the paper's number on PASCAL VOC 2012 (hover for its source).</p>"
    else:
        results = "<p>Percentages.</p>"
    parts = [
        flag_list(pd.concat([regression_flags(table), pd.read_csv(flags, keep_default_na=False) if flags else None])),
        "<h2>Results</h2>",
        results,
        *(stage_table(stage, rows, settings if params["paper_numbers"] else None, papers.notes(settings).get(stage, []))
          for stage, rows in table.groupby("stage", sort=False)),
        chain_table(table),
        *(csv_table(csv, caption) for csv, caption in zip(tables, params["table_captions"])),
        "<h2>Plots</h2>",
        *(figure(png, caption) for png, caption in zip([*plots, *figures], [*captions, *params["figure_captions"]])),
        "<h2>Overlays</h2>",
        legend(params["class_names"]),
        *galleries(root, params, overlays),
        "<h2>Run time per rule (shards summed)</h2>",
        html_table(run_times(benchmarks, params["shards"]).assign(
            seconds=lambda t: t.seconds.map("{:.1f}".format))),
        config_section(config),
    ]
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>wsss run report</title>"
            f"<style>{STYLE}</style></head><body><h1>wsss run report</h1>\n" + "\n".join(parts) + "\n</body></html>")
    with atomic_path(summary) as tmp:
        tmp.write_text(page)


# ---- tables ----------------------------------------------------------------------------------------------

def stage_table(stage: str, rows: pd.DataFrame, paper_config: dict | None, notes=()) -> str:
    """Means per method and split as percentages (with the paper's number where known for a run of
    configuration `paper_config`; None: no paper numbers), the `notes` below, then the per-class IoU in a
    collapsed table."""
    means = rows[rows["class"] == ""]
    wide = means.pivot_table(index=["method", "split"], columns="metric", values="value", sort=False)
    # a "paper" column beside each metric that a paper reports for this stage
    compared = {m for m in wide.columns if any(papers.number(stage, *index, m, paper_config) for index in wide.index)}
    body = []
    for (method, split), values in wide.iterrows():
        cells = [method, split]
        for metric, value in values.items():
            cells += [_number(metric, value)] + ([_paper(stage, method, split, metric, paper_config)]
                                                 if metric in compared else [])
        body.append(cells)
    header = ["method", "split"]
    for metric in wide.columns:
        header += [metric] + ([f"{metric} (paper)"] if metric in compared else [])
    title = f"<h3>{html.escape(STAGE_TITLES[stage])} <small>({html.escape(stage)})</small></h3>" if (
        stage in STAGE_TITLES) else f"<h3>{html.escape(stage)}</h3>"
    per_class = rows[(rows["class"] != "") & (rows.metric == "iou")]
    detail = ""
    if len(per_class):
        wide_class = per_class.pivot_table(index=["method", "split"], columns="class", values="value", sort=False,
                                           dropna=False)
        cells = [[m, s, *(_percent(v) for v in values)] for (m, s), values in wide_class.iterrows()]
        detail = ("<details><summary>IoU per class (%)</summary>"
                  + html_rows(["method", "split", *wide_class.columns], cells) + "</details>")
    note = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    return title + html_rows(header, body) + note + detail


def chains(table: pd.DataFrame) -> dict:
    """name -> [(stage, method)] of the CAMs, random-walk labels and segmentation network of every CAM network
    in the metrics (rows cam / irnet_rw / seg_irnet for IRNet's, <m> / <m>_rw / seg_<m> for CAM method m)."""
    out = {}
    for cam in table[table.stage == "cam"].method.unique():
        method = "irnet" if cam == "cam" else cam
        out[CHAIN_NAMES.get(method, f"Base + {method} + BR")] = [("cam", cam), ("sem_seg", f"{method}_rw"),
                                                                  ("seg", f"seg_{method}")]
    return out


def chain_table(table: pd.DataFrame) -> str:
    """RPNet Table I: a row per CAM network of the run, its CAM, random-walk label and segmentation mIoU side by
    side (each on the split it is scored on); empty unless two networks or more ran."""
    means = table[(table["class"] == "") & (table.metric == "iou")]
    value = {(r.stage, r.method): (r.value, r.split) for r in means.itertuples()}
    found = chains(means)
    rows = [[name, *(_percent(value[key][0]) if key in value else "–" for key in chain)]
            for name, chain in found.items() if chain[0] in value]
    if len(rows) < 2:
        return ""
    splits = [next((value[key][1] for key in (chain[i] for chain in found.values()) if key in value), "")
              for i in range(3)]
    header = ["CAM network", *(f"{what} mIoU ({split})" for what, split in
                               zip(("CAM", "random-walk labels", "segmentation"), splits))]
    return "<h3>CAM networks through IRNet <small>(RPNet Table I)</small></h3>" + html_rows(header, rows)


def csv_table(csv, caption: str) -> str:
    """A table the rule lists (e.g. an ablation's), its caption as the title; columns named *miou* in percent."""
    frame = pd.read_csv(csv, keep_default_na=False)
    cells = [[_percent(v) if "miou" in column and v != "" else html.escape(str(v)) for column, v in row.items()]
             for _, row in frame.iterrows()]
    return f"<h3>{html.escape(caption)}</h3>" + html_rows(list(frame.columns), cells)


def _number(metric, value) -> str:
    """A threshold as it is (0.15), any other value in percent."""
    return f"{value:g}" if metric in papers.NOT_FRACTIONS or metric.endswith("threshold") else _percent(value)


def _percent(value) -> str:
    return "–" if pd.isna(value) else f"{100 * value:.1f}"


def _paper(stage, method, split, metric, config) -> str:
    known = papers.number(stage, method, split, metric, config)
    if known is None:
        return "<span class='paper'>–</span>"
    value, source = known
    return f"<span class='paper' title='{html.escape(source)}'>{value:.1f}</span>"


def html_rows(header: list, rows: list) -> str:
    """A table of already formatted cells (strings may hold markup); the first column left-aligned."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=name' if i == 0 else ''}>{c}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_table(frame: pd.DataFrame) -> str:
    return html_rows(list(frame.columns), [[html.escape(str(v)) for v in row] for row in frame.itertuples(index=False)])


def regression_flags(table: pd.DataFrame) -> pd.DataFrame:
    """flag, detail: every stage of the metrics scoring below its own input (wsss/pipeline/regressions.py)."""
    found = regressions.regressions(table)
    return pd.DataFrame([{"flag": f["what"], "detail": regressions.describe(f)} for f in found],
                        columns=["flag", "detail"])


def flag_list(flags: pd.DataFrame | None) -> str:
    """Warnings about the run (columns `flag`, `detail`, e.g. from wsss/pipeline/regressions.py), in red."""
    if flags is None or not len(flags):
        return ""
    items = "".join(f"<li><span class='flag'>{html.escape(r.flag)}</span> {html.escape(str(r.detail))}</li>"
                    for r in flags.itertuples())
    return f"<h2 class='flag'>Flags</h2><ul>{items}</ul>"


# ---- plots -----------------------------------------------------------------------------------------------

def plot_sweep(sweep: pd.DataFrame, out):
    best = sweep.loc[sweep.miou.idxmax()]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sweep.threshold, 100 * sweep.miou, marker="o")
    label = f"best {best.threshold:.2f}: {100 * best.miou:.1f} %"
    ax.axvline(best.threshold, color="gray", linestyle="--", label=label)
    ax.set(xlabel="background threshold", ylabel="mIoU (%)", title="CAM mIoU vs background threshold")
    ax.legend()
    _save(fig, out)


def plot_losses(logs: dict[str, pd.DataFrame], out):
    """One panel per network, LOSS_COLUMNS to a row: loss per iteration and its running mean over ~2 % of the run."""
    n = max(len(logs), 1)
    rows, columns = -(-n // LOSS_COLUMNS), min(n, LOSS_COLUMNS)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(logs):]:
        ax.set_axis_off()
    for ax, (name, log) in zip(axes.flat, logs.items()):
        window = max(1, len(log) // 50)
        ax.plot(log.iteration, log.loss, lw=0.5, alpha=0.4, color="C0")
        ax.plot(log.iteration, log.loss.rolling(window, min_periods=1).mean(), lw=1.5, color="C0")
        ax.set(title=name, xlabel="iteration", ylabel="loss")
    _save(fig, out)


def figure(png, caption: str) -> str:
    return (f"<figure><img src='{_data_uri(Path(png).read_bytes())}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _save(fig, out):
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# ---- overlays --------------------------------------------------------------------------------------------

def legend(class_names: list) -> str:
    """The label colours: a swatch per class; grey in an overlay means no label there."""
    palette = voc.voc_palette()
    swatches = "".join(f"<span style='display:inline-block;margin-right:1em'><span style='display:inline-block;"
                       f"width:1em;height:1em;vertical-align:middle;background:rgb{tuple(int(c) for c in palette[i])}'>"
                       f"</span> {html.escape(name)}</span>" for i, name in enumerate(class_names))
    return f"<p>{swatches}<span>grey: no label</span></p>"


def galleries(root, params: dict, folders: list) -> list[str]:
    """One table per split that has overlay columns: a row per image (the split's first n_overlays)."""
    by_split = {}
    for (name, split), folder in zip(params["overlay_columns"], folders):
        by_split.setdefault(split, []).append((name, Path(folder)))
    parts = []
    for split, columns in by_split.items():
        ids = voc.read_ids(root, split)[: params["n_overlays"]]
        header = ["image", "ground truth", *(name for name, _ in columns)]
        panels = [overlay_row(root, image_id, columns, len(params["class_names"])) for image_id in ids]
        if all(row[1] is None for row in panels):  # no masks: no ground-truth column
            header.pop(1)
            panels = [row[:1] + row[2:] for row in panels]
        rows = [[_cell(panel) for panel in row] for row in panels]
        parts.append(f"<h3>{html.escape(split)} images</h3>" + html_rows(header, rows).replace(
            "<table>", "<table class='gallery'>", 1))
    return parts


def overlay_row(root, image_id: str, columns, n_classes: int) -> list[np.ndarray | None]:
    """RGB panels: the image, its ground truth, then each column's output for the image (None if absent)."""
    image = voc.load_image(voc.path(root, "image", image_id))
    palette = voc.voc_palette().astype(np.uint8)
    mask_file = voc.path(root, "mask", image_id)
    truth = palette[voc.load_mask(mask_file, n_classes, image.shape[:2])] if mask_file.is_file() else None
    return [image, truth, *(overlay(image, folder, image_id, palette) for _, folder in columns)]


def overlay(image: np.ndarray, folder: Path, image_id: str, palette: np.ndarray) -> np.ndarray | None:
    """The folder's output for the image drawn over it: label colours, CAM heat or instance colours."""
    png, npz = folder / f"{image_id}.png", folder / f"{image_id}.npz"
    if png.is_file():
        labels = np.asarray(Image.open(png))
        return labels_over(image, labels, palette)
    if not npz.is_file():
        return None
    with np.load(npz) as data:
        if "high_res" in data:  # CAMs: the strongest class score per pixel
            heat = data["high_res"].max(0) if len(data["high_res"]) else np.zeros(image.shape[:2])
            rgb = (plt.get_cmap("jet")(heat)[..., :3] * 255).astype(np.uint8)
            return blend(image, rgb, np.ones(heat.shape, bool))
        if "instance_map" in data:
            ids = data["instance_map"].astype(np.int64)
            colours = np.random.default_rng(0).integers(40, 256, (ids.max() + 1, 3)).astype(np.uint8)
            return blend(image, colours[ids], ids > 0)
    raise ValueError(f"{npz}: neither CAMs (high_res) nor instances (instance_map)")


def _cell(panel: np.ndarray | None) -> str:
    if panel is None:
        return "–"
    scale = OVERLAY_SIZE / max(panel.shape[:2])  # small images are enlarged (pixels kept sharp), large shrunk
    picture = Image.fromarray(panel).resize((round(panel.shape[1] * scale), round(panel.shape[0] * scale)),
                                            Image.NEAREST if scale > 1 else Image.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)  # a fifth of the PNG's size, for photos and overlays alike
    return (f"<img src='{_data_uri(buffer.getvalue(), 'jpeg')}' width={picture.width} height={picture.height} "
            "alt=''>")


def _data_uri(data: bytes, kind="png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


def config_section(config) -> str:
    """The run's config.yaml (its path and text); empty without one."""
    if config is None or not Path(config).is_file():
        return ""
    return (f"<h2>Configuration</h2><p>{html.escape(str(config))}</p>"
            f"<pre>{html.escape(Path(config).read_text())}</pre>")


# ---- run times -------------------------------------------------------------------------------------------

def run_times(benchmarks, shards: int) -> pd.DataFrame:
    """rule, seconds: the Snakemake benchmark files under `benchmarks`, a rule's jobs summed."""
    times = pd.DataFrame([dict(rule=_rule_of(p.relative_to(benchmarks)), seconds=pd.read_csv(p, sep="\t")["s"].iloc[0])
                          for p in sorted(Path(benchmarks).glob("**/*.tsv")) if _current(p, shards)],
                         columns=["rule", "seconds"])
    return times.groupby("rule", sort=False).sum().reset_index()


def _current(file: Path, shards: int) -> bool:
    """False for the benchmark of a shard of an earlier run with another `shards` (<i>-of-<n>.tsv)."""
    match = re.fullmatch(r"\d+-of-(\d+)", file.stem)
    return match is None or int(match.group(1)) == shards


def _rule_of(relative: Path) -> str:
    """<rule>.tsv, or <rule>/<shard or folder>.tsv for a rule with many jobs (their times are summed)."""
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem
