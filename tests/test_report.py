"""The report page: run times, tables, and the page in a real browser (Debian's chromium via playwright)."""
import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wsss import metrics
from wsss.datasets import voc
from wsss.io import save_npz, save_png
from wsss.pipeline import report

CHROMIUM = "/usr/bin/chromium"  # .ci/run installs it (apt-get install chromium)
# the browser check's screenshot is kept here (WSSS_ARTIFACTS overrides), for a person to look at
ARTIFACTS = Path(os.environ.get("WSSS_ARTIFACTS", Path(__file__).resolve().parents[1] / "results" / "test-artifacts"))


def _bench(file, seconds):
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(f"s\th:m:s\n{seconds}\t0:00:00\n")


def test_run_times_sum_the_current_shards_only(tmp_path):
    _bench(tmp_path / "train_cam.tsv", 100.0)
    _bench(tmp_path / "make_cam" / "1-of-2.tsv", 10.0)
    _bench(tmp_path / "make_cam" / "2-of-2.tsv", 12.0)
    _bench(tmp_path / "make_cam" / "1-of-1.tsv", 50.0)  # an earlier run with shards: 1
    _bench(tmp_path / "gather_shards" / "cam" / "maps.tsv", 1.5)
    times = report.run_times(tmp_path, shards=2).set_index("rule")["seconds"]
    assert times.to_dict() == {"gather_shards": 1.5, "make_cam": 22.0, "train_cam": 100.0}


def _run_outputs(root: Path, names: list, out: Path) -> dict:
    """A fake run over the tiny set: metrics, a sweep, a train log, CAMs, label maps and instances."""
    rng = np.random.default_rng(0)
    train, val = voc.read_ids(root, "train"), voc.read_ids(root, "val")
    rows = []
    for stage, method, split in (("cam", "cam", "train"), ("sem_seg", "irnet_rw", "train"),
                                 ("seg", "dsrg_retrain", "val")):
        for metric, cls, value in (("iou", "", 0.5), ("precision", "", 0.75), ("iou", "disc", 0.25),
                                   ("iou", "ring", np.nan)):
            rows.append(dict(stage=stage, method=method, split=split, metric=metric, value=value, **{"class": cls}))
    rows.append(dict(stage="cam", method="cam", split="train", metric="iou_at_fixed_threshold", value=0.4,
                     **{"class": ""}))
    metrics.write(out / "metrics.csv", rows)
    pd.DataFrame(dict(threshold=[0.1, 0.2, 0.3], miou=[0.4, 0.6, 0.5])).to_csv(out / "sweep.csv", index=False)
    pd.DataFrame(dict(iteration=range(40), epoch=np.arange(40) // 10, loss=np.linspace(2, 0.5, 40), lr=0.1,
                      seconds=0.1)).to_csv(out / "train_log.csv", index=False)
    palette = voc.voc_palette()
    for image_id in train:
        h, w = voc.load_image(voc.path(root, "image", image_id)).shape[:2]
        save_npz(out / "cams" / f"{image_id}.npz", keys=np.array([1]), high_res=rng.random((1, h, w), np.float32))
        save_png(out / "labels" / f"{image_id}.png", rng.choice([0, 1, 255], (h, w)).astype(np.uint8), palette)
        save_npz(out / "instances" / f"{image_id}.npz", instance_map=rng.integers(0, 3, (h, w)).astype(np.uint16),
                 classes=np.array([1, 2]), scores=np.array([0.9, 0.8], np.float32))
    for image_id in val[:1]:  # the other val images have no prediction: their cells show a dash
        h, w = voc.load_image(voc.path(root, "image", image_id)).shape[:2]
        save_png(out / "pred" / f"{image_id}.png", rng.integers(0, len(names), (h, w)).astype(np.uint8), palette)
    (out / "pred").mkdir(exist_ok=True)
    _bench(out / "benchmarks" / "train_cam.tsv", 12.5)
    pd.DataFrame(dict(flag=["random walk below CAM"], detail=["sem_seg 50.0 < cam 60.0"])).to_csv(
        out / "flags.csv", index=False)
    # the run's settings: the papers' backbones, but the random walk's background walked
    (out / "config.yaml").write_text("model: {backbone: resnet50}\nseg: {arch: deeplab_v2, backbone: resnet101}\n"
                                     "irn: {rw_background: walked}\ndsrg: {saliency_dir: saliency}\n")
    return dict(metrics_csv=out / "metrics.csv", sweep=out / "sweep.csv", benchmarks=out / "benchmarks",
                config=out / "config.yaml",
                figures=[], train_logs=[out / "train_log.csv"],
                overlays=[out / "cams", out / "labels", out / "instances", out / "pred"], flags=out / "flags.csv")


def _params(names):
    return dict(class_names=names, n_overlays=3, paper_numbers=True, figure_captions=[],
                train_log_names=["train_cam"], overlay_columns=[["CAM", "train"], ["IR labels", "train"],
                                                                ["instances", "train"], ["dsrg", "val"]])


def test_report_page_tables_and_galleries(tiny_voc, tmp_path):
    root, names = tiny_voc
    paths = _run_outputs(root, names, tmp_path)
    page = tmp_path / "report" / "summary.html"
    report.run(_params(names), root=root, summary=page, sweep_plot=tmp_path / "report" / "sweep.png",
               loss_plot=tmp_path / "report" / "loss.png", **paths)
    text = page.read_text()
    assert "<td>50.0</td>" in text and "<td>75.0</td>" in text  # percentages
    # the paper's number beside ours where the settings are the paper's: IRNet's CAM at its fixed threshold,
    # DSRG's ResNet-101 result; none beside the walked background, which a note marks
    assert "<th>iou_at_fixed_threshold (paper)</th>" in text and "<th>iou (paper)</th>" in text
    assert "title='IRNet Table 2: CAM, at the released cam_eval_thres 0.15'>48.3</span>" in text
    assert "title='DSRG Table 1: DSRG (Resnet101), val'>61.4</span>" in text
    assert "66.5" not in text and "irnet_rw, rpnet_rw: walked background" in text
    assert "class='flag'>random walk below CAM</span>" in text
    assert text.count("<h3>") == 3 + 2  # a table per stage, a gallery per split
    assert text.count("data:image/jpeg") == 3 * (2 + 3) + 3 * 2 + 1  # train rows: 5 cells; val rows: 2 + 1 pred


def test_overlay_folder_of_unknown_arrays_is_an_error(tiny_voc, tmp_path):
    root, _ = tiny_voc
    image_id = voc.read_ids(root, "train")[0]
    save_npz(tmp_path / f"{image_id}.npz", other=np.zeros(3))
    with pytest.raises(ValueError, match="neither CAMs"):
        report.overlay(np.zeros((4, 4, 3), np.uint8), tmp_path, image_id, voc.voc_palette())


@contextlib.contextmanager
def in_chromium(page_file, width: int):
    """(page, errors): the report page loaded in headless Chromium, and its console and page errors so far."""
    from playwright.sync_api import sync_playwright
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri(), wait_until="load")
        yield page, errors
        browser.close()


def test_report_page_in_a_browser(tiny_voc, tmp_path):
    """Headless chromium: the page loads, every image decodes, no console errors; a screenshot is kept."""
    root, names = tiny_voc
    paths = _run_outputs(root, names, tmp_path)
    page_file = tmp_path / "summary.html"
    report.run(_params(names), root=root, summary=page_file, sweep_plot=tmp_path / "sweep.png",
               loss_plot=tmp_path / "loss.png", **paths)
    with in_chromium(page_file, 1400) as (page, errors):
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=tmp_path / "report.png", full_page=True)
    assert errors == []
    assert len(images) == 2 + 3 * (2 + 3) + 3 * 2 + 1 and all(done and width > 0 for done, width in images)
    shutil.copy(tmp_path / "report.png", ARTIFACTS / "report_page.png")
    assert (ARTIFACTS / "report_page.png").stat().st_size > 10_000


def test_table_i_sets_the_cam_networks_chains_side_by_side():
    rows = [dict(stage=s, method=m, split=sp, metric="iou", value=v, **{"class": ""}) for s, m, sp, v in (
        ("cam", "cam", "train", 0.5), ("sem_seg", "irnet_rw", "train", 0.6), ("seg", "seg_irnet", "val", 0.7),
        ("cam", "rpnet", "train", 0.55), ("seg", "seg_rpnet", "val", 0.75))]
    table = pd.DataFrame(rows)
    text = report.chain_table(table)
    assert "<th>CAM mIoU (train)</th><th>random-walk labels mIoU (train)</th><th>segmentation mIoU (val)</th>" in text
    assert "<td class=name>Base + BR (IRNet)</td><td>50.0</td><td>60.0</td><td>70.0</td>" in text
    assert "<td class=name>Base + RPNet + BR</td><td>55.0</td><td>–</td><td>75.0</td>" in text  # no RW row: a dash
    assert report.chain_table(table[table.method != "rpnet"]) == ""  # one CAM network: no Table I


def test_listed_csv_tables_show_miou_columns_in_percent(tmp_path):
    pd.DataFrame(dict(net=["cdsp_segs"], segs=[1], miou=[0.6789])).to_csv(tmp_path / "t.csv", index=False)
    text = report.csv_table(tmp_path / "t.csv", "CDSP Table 2")
    assert text.startswith("<h3>CDSP Table 2</h3>")
    assert "<td class=name>cdsp_segs</td><td>1</td><td>67.9</td>" in text


# Every network the demo trains (with every ablation): a loss curve each, and a val overlay column each that is
# scored on val (issue 24: the report left out psi, cdsp, RPNet's networks).
LOSS_CURVES = {"cam", "irn", "rpnet/cam", "rpnet/irn", "seg_irnet", "seg_rpnet", "dsrg", "dsrg_nogrowth",
               "dsrg_retrain", "psi", "psi_baseline", "psi_cpp", "psi_sld", "cdsp"}
VAL_OVERLAYS = {"seg_irnet", "seg_rpnet", "dsrg", "dsrg_nogrowth", "dsrg_retrain", "psi", "psi_ms", "psi_baseline",
                "psi_cpp", "psi_sld", "cdsp"}


@pytest.fixture(scope="module")
def demo_report_params(tmp_path_factory):
    """The report rule's params in the demo's plan with every ablation (`snakemake -n -p`)."""
    import json
    import shlex
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[1]
    work = tmp_path_factory.mktemp("plan")
    (work / "config.yaml").write_text((repo / "config.yaml").read_text())
    planned = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(repo / "workflow" / "Snakefile"),
                              "--directory", str(work), "-n", "-p", "--cores", "1", "report", "--config",
                              "ablations=True"], capture_output=True, text=True)
    assert planned.returncode == 0, planned.stderr[-3000:]
    line = next(line for line in planned.stdout.splitlines() if "-m wsss.cli report " in line)
    words = shlex.split(line.split("Shell command: ", 1)[1])
    return json.loads(words[words.index("--params") + 1])


def test_the_workflow_reports_every_network(demo_report_params):
    params = demo_report_params
    assert LOSS_CURVES <= set(params["train_log_names"])
    assert VAL_OVERLAYS <= {name for name, split in params["overlay_columns"] if split == "val"}
    for names in ("train_log_names", "overlay_columns", "figure_captions", "table_captions"):
        labels = [str(n) for n in params[names]]
        assert len(labels) == len(set(labels)), f"{names}: a name twice"


def test_report_page_of_every_network_in_a_browser(tiny_voc, tmp_path, demo_report_params):
    """The page with the demo's every loss curve, overlay column, figure and table in headless chromium: it loads,
    every image decodes, no console errors, it fits the window's width, thresholds are not percentages."""
    root, names = tiny_voc
    paths = _run_outputs(root, names, tmp_path)
    params = {**demo_report_params, "class_names": names, "n_overlays": 2}
    rng = np.random.default_rng(0)
    palette = voc.voc_palette()
    overlays = []
    for column, split in params["overlay_columns"]:
        folder = tmp_path / "overlays" / column.replace("/", "_")
        for image_id in voc.read_ids(root, split)[:2]:
            h, w = voc.load_image(voc.path(root, "image", image_id)).shape[:2]
            if column.endswith("CAM"):
                save_npz(folder / f"{image_id}.npz", keys=np.array([1]), high_res=rng.random((1, h, w), np.float32))
            elif column == "instances":
                save_npz(folder / f"{image_id}.npz", instance_map=rng.integers(0, 3, (h, w)).astype(np.uint16),
                         classes=np.array([1, 2]), scores=np.array([0.9, 0.8], np.float32))
            else:
                save_png(folder / f"{image_id}.png", rng.integers(0, len(names), (h, w)).astype(np.uint8), palette)
        overlays.append(folder)
    figures = [paths["train_logs"][0].with_name(f"figure{i}.png") for i in range(len(params["figure_captions"]))]
    for png in figures:
        report.plot_sweep(pd.read_csv(paths["sweep"]), png)
    tables = [tmp_path / f"table{i}.csv" for i in range(len(params["table_captions"]))]
    for csv in tables:
        pd.DataFrame(dict(net=["cdsp"], miou=[0.5])).to_csv(csv, index=False)
    metrics.write(paths["metrics_csv"], metrics.read(paths["metrics_csv"]).to_dict("records") + [
        dict(stage="cam", method="cam", split="train", metric="fixed_threshold", value=0.15, **{"class": ""}),
        dict(stage="boundary", method="irnet", split="train", metric="f1", value=0.5, **{"class": ""})])
    page_file = tmp_path / "summary.html"
    report.run(params, root=root, summary=page_file, sweep_plot=tmp_path / "sweep.png", loss_plot=tmp_path / "loss.png",
               **{**paths, "train_logs": paths["train_logs"] * len(params["train_log_names"]), "overlays": overlays,
                  "figures": figures, "tables": tables})
    text = page_file.read_text()
    assert "<td>0.15</td>" in text and "<td>15.0</td>" not in text  # fixed_threshold as it is
    assert "(boundary)</small>" in text and "boundary <small>(boundary)" not in text
    with in_chromium(page_file, 1280) as (page, errors):
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        headers = page.eval_on_selector_all(".gallery th", "els => els.map(e => e.textContent)")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        page.screenshot(path=tmp_path / "report.png", full_page=True)
    assert errors == []
    assert images and all(done and w > 0 for done, w in images)
    assert VAL_OVERLAYS <= set(headers)
    assert width[0] <= width[1], f"the page scrolls sideways: {width}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "report.png", ARTIFACTS / "report_page_every_network.png")
