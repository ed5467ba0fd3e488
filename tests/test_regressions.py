"""Regression flags: a stage below its own input on a split with masks is found, warned and shown in red."""
import io

import pandas as pd

from wsss import metrics
from wsss.pipeline import metrics as metrics_stage
from wsss.pipeline import regressions, report


def _table(values: dict) -> pd.DataFrame:
    """{(stage, method, split): mIoU} -> long table with means, plus a per-class row that must be ignored."""
    rows = [dict(stage=s, method=m, split=sp, metric="iou", **{"class": ""}, value=v)
            for (s, m, sp), v in values.items()]
    rows.append(dict(stage="sem_seg", method="irnet_rw", split="train", metric="iou", **{"class": "disc"}, value=0.0))
    return pd.DataFrame(rows, columns=metrics.COLUMNS)


ISSUE_13 = {("cam", "cam", "train"): 0.392, ("sem_seg", "irnet_rw", "train"): 0.239,  # the issue's numbers
            ("seg", "dsrg_nogrowth", "val"): 0.426,
            ("seg", "dsrg", "val"): 0.377, ("seg", "dsrg_retrain", "val"): 0.312}


def test_dsrg_networks_without_saliency_are_compared_too():
    renamed = {(s, m + "_cambg" if m.startswith("dsrg") else m, sp): v for (s, m, sp), v in ISSUE_13.items()}
    assert len(regressions.regressions(_table(renamed))) == 3


def test_each_stage_below_its_input_is_found_with_both_numbers():
    found = regressions.regressions(_table(ISSUE_13))
    assert [(f["what"], f["split"], f["value"], f["input_value"]) for f in found] == [
        ("random walk below CAM", "train", 0.239, 0.392),
        ("DSRG growth below no growth", "val", 0.377, 0.426),
        ("retrain below its teacher", "val", 0.312, 0.377)]
    assert regressions.describe(found[0]) == "random walk below CAM on train: sem_seg/irnet_rw mIoU 23.9 < cam/cam 39.2"


def test_improvements_and_other_splits_are_not_flagged():
    demo = {("cam", "cam", "train"): 0.707, ("sem_seg", "irnet_rw", "train"): 0.781,
            ("seg", "dsrg_nogrowth", "val"): 0.623, ("seg", "dsrg", "val"): 0.712,
            ("seg", "dsrg_retrain", "val"): 0.755, ("sem_seg", "irnet_rw", "val"): 0.1}  # no CAM row on val
    assert regressions.regressions(_table(demo)) == []
    assert report.flag_list(report.regression_flags(_table(demo))) == ""


def test_rpnet_chain_is_compared_with_its_cams_and_the_baseline():
    photos = {("cam", "cam", "train"): 0.587, ("cam", "rpnet", "train"): 0.264,  # issue 16's collapse
              ("sem_seg", "irnet_rw", "train"): 0.621, ("sem_seg", "rpnet_rw", "train"): 0.253}
    found = regressions.regressions(_table(photos))
    assert [(f["what"], f["method"], f["value"], f["input_method"], f["input_value"]) for f in found] == [
        ("random walk below CAM", "rpnet_rw", 0.253, "rpnet", 0.264),
        ("RPNet CAM below the baseline CAM", "rpnet", 0.264, "cam", 0.587)]
    assert regressions.describe(found[1]) == ("RPNet CAM below the baseline CAM on train: cam/rpnet mIoU 26.4 "
                                              "< cam/cam 58.7")
    fixed = {**photos, ("cam", "rpnet", "train"): 0.6, ("sem_seg", "rpnet_rw", "train"): 0.63}
    assert regressions.regressions(_table(fixed)) == []


def test_metrics_stage_warns_and_report_html_is_red(tmp_path, capsys):
    part = tmp_path / "part.csv"
    _table(ISSUE_13).to_csv(part, index=False)
    metrics_stage.run({}, inputs=[str(part)], out=tmp_path / "metrics.csv")
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("WARNING:")]
    assert len(warned) == 3 and "23.9 < cam/cam 39.2" in warned[0]
    html = report.flag_list(report.regression_flags(metrics.read(tmp_path / "metrics.csv")))
    assert "class='flag'" in html and html.count("<li>") == 3
    stream = io.StringIO()
    regressions.warn(_table({}), stream)
    assert stream.getvalue() == ""


def test_flags_of_a_run_reach_the_console(tmp_path):
    """The Snakefile's onsuccess prints them at the end of a run (issue 24); no metrics.csv, no lines."""
    csv = tmp_path / "metrics.csv"
    csv.write_text("stage,method,split,metric,class,value\ncam,cam,train,iou,,0.6\nsem_seg,irnet_rw,train,iou,,0.5\n")
    lines = []
    regressions.print_flags(csv, lines.append)
    assert lines == ["WARNING: random walk below CAM on train: sem_seg/irnet_rw mIoU 50.0 < cam/cam 60.0"]
    regressions.print_flags(tmp_path / "absent.csv", lines.append)
    assert len(lines) == 1
