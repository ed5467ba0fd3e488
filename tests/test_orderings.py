"""`snakemake orderings` (issue 22): the claims table over seeds and backbones, each run's configuration, and
the plan (one nested run per backbone and seed, the data set made once, not in the default target)."""
import copy
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from wsss import metrics
from wsss.orderings import claim_targets, nested_config, orderings_run, orderings_table

from test_workflow import TINY as WORKFLOW_TINY  # the tiny demo of the workflow tests

REPO = Path(__file__).resolve().parents[1]


def _metrics_file(path, values: dict):
    """A metrics.csv of the means `values` {(stage, method, metric): percent}, on the demo's splits."""
    rows = [dict(stage=s, method=m, split="train" if s in orderings_table.SCORED_ON_LABELS else "val", metric=k,
                 **{"class": ""}, value=v / 100) for (s, m, k), v in values.items()]
    rows.append(dict(stage="cam", method="cam", split="val", metric="iou", **{"class": ""}, value=0.99))  # other split
    rows.append(dict(stage="cam", method="cam", split="train", metric="iou", **{"class": "disc"}, value=0.01))
    metrics.write(path, rows)
    return path


def _run(seed_offset: float, **overrides) -> dict:
    values = {("cam", "cam", "iou"): 50.0, ("sem_seg", "irnet_rw", "iou"): 60.0 + seed_offset,
              ("ins_seg", "irnet", "ap50"): 30.0, ("seg", "dsrg_nogrowth_cambg", "iou"): 70.0,
              ("seg", "dsrg_cambg", "iou"): 69.0 + seed_offset, ("seg", "dsrg_retrain_cambg", "iou"): 69.0 + seed_offset,
              ("seg", "psi_baseline", "iou"): 60.0, ("seg", "psi_cpp", "iou"): 62.0, ("seg", "psi_sld", "iou"): 59.0,
              ("seg", "psi", "iou"): 61.0}
    values.update(overrides)
    return values


def test_claims_table_means_spreads_and_verdicts(tmp_path):
    runs = [["efficientnet_lite0", 0], ["efficientnet_lite0", 1], ["efficientnet_lite0", 2], ["small", 0]]
    files = [_metrics_file(tmp_path / f"{b}_{s}.csv", _run(2.0 * s)) for b, s in runs]
    params = dict(runs=runs, label_split="train", eval_split="val")
    orderings_table.run(params, metrics_csv=[str(f) for f in files], out=tmp_path / "claims.csv",
                        markdown=tmp_path / "claims.md")
    table = pd.read_csv(tmp_path / "claims.csv").set_index(["backbone", "claim"])
    lite = table.loc["efficientnet_lite0"]
    rw = lite.loc["random-walk labels above the CAMs"]
    assert (rw.result_mean, rw.compared_mean, rw.margin_mean) == pytest.approx((62.0, 50.0, 12.0))
    assert rw.result_sd == pytest.approx(2.0) and rw.seeds == "3/3" and rw.verdict == "holds"
    assert (rw.paper_result, rw.paper_compared) == (66.5, 48.3)
    # DSRG's _cambg rows count as the networks; the mean margin decides (-1 +1 +3 > 0), seeds say where it held
    growth = lite.loc["growth above no growth"]
    assert growth.margin_mean == pytest.approx(1.0) and growth.seeds == "2/3" and growth.verdict == "holds"
    assert lite.loc["the retrain not below its teacher"].verdict == "holds"  # equal is not below
    best = lite.loc["CPP + SLD the best"]  # compared with the best of baseline, + CPP, + SLD
    assert best.compared_mean == pytest.approx(62.0) and best.verdict == "fails" and best.seeds == "0/3"
    assert lite.loc["instance labels (AP50)"].verdict == "-"
    assert table.loc[("small", "random-walk labels above the CAMs")].result_sd == 0  # one seed
    assert not any("RPNet" in p or "CDSP" in p for p in table.paper)  # rows a run lacks are left out
    lines = (tmp_path / "claims.md").read_text().splitlines()
    assert len(lines) == 2 + len(table)
    assert "| efficientnet_lite0 | IRNet Table 2: random-walk labels above the CAMs | 66.5 vs 48.3 | 62.0 ± 2.0 vs " \
           "50.0 ± 0.0 | +12.0 ± 2.0 | 3/3 | holds |" in lines


def test_nested_config_follows_the_backbone():
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    base.setdefault("seg", {})
    base["model"] = {"backbone": "small", "pretrained": None}
    base["seg"].update(backbone="small", pretrained=None)
    base["orderings"] = {"seeds": [0, 1], "backbones": ["efficientnet_lite0", "small"]}
    before = copy.deepcopy(base)
    lite = nested_config(base, "efficientnet_lite0", 1, "results/x/orderings/efficientnet_lite0_s1")
    assert base == before  # the outer configuration is left as it is
    assert lite["model"] == {"backbone": "efficientnet_lite0", "pretrained": "package"}
    assert lite["seg"]["backbone"] == "efficientnet_lite0" and lite["seg"]["pretrained"] is None  # from the CAM net
    assert (lite["seed"], lite["ablations"], lite["run_dir"]) == (1, ["dsrg", "psi"],
                                                                  "results/x/orderings/efficientnet_lite0_s1")
    cdsp = [f"results/x/orderings/efficientnet_lite0_s1/metrics/seg_cdsp_{n}.csv"
            for n in ("segs", "segc", "seg", "seg_dc", "seg_lorm", "seg_ds")]
    assert claim_targets(lite["run_dir"], lite["methods"]) == ["all", *cdsp]  # CDSP Table 2, not Table 3 or Fig. 7
    assert claim_targets(lite["run_dir"], ["irnet"]) == ["all"]
    assert lite["orderings"]["seeds"] == [] and lite["orderings"]["report"] is False  # no runs of its own
    assert nested_config(lite, "small", 0, "r")["model"] == {"backbone": "small", "pretrained": None}
    with pytest.raises(ValueError, match="resnet50 needs its ImageNet file"):
        nested_config(base, "resnet50", 0, "r")


def test_a_runs_config_does_not_depend_on_the_other_runs():
    """Adding a backbone or a seed to `orderings` leaves every existing run's config (its rule's params) as it was."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    more = copy.deepcopy(base)
    more["orderings"].update(backbones=["efficientnet_lite0"], seeds=[0, 1, 2])
    assert nested_config(base, "efficientnet_lite0", 0, "r") == nested_config(more, "efficientnet_lite0", 0, "r")


def test_a_backbones_settings_replace_the_keys_they_name():
    """orderings.settings[backbone]: `small` from scratch keeps its own schedule in runs of a pretrained config;
    nested sections merge key by key, other backbones' runs and the outer config are untouched."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    base["orderings"]["settings"] = {"small": {"cam": {"epochs": 12, "rpnet": {"lr": 0.1}}, "train": {"bn_images": 0}}}
    before = copy.deepcopy(base)
    small = nested_config(base, "small", 0, "r")
    assert (small["cam"]["epochs"], small["cam"]["rpnet"]["lr"], small["train"]["bn_images"]) == (12, 0.1, 0)
    assert small["cam"]["rpnet"]["epochs"] == base["cam"]["rpnet"]["epochs"]  # merged, not replaced
    assert small["cam"]["crop"] == base["cam"]["crop"] and small["orderings"]["settings"] == {}
    lite = nested_config(base, base["model"]["backbone"], 0, "r")
    assert (lite["cam"], lite["train"]) == (base["cam"], base["train"]) and base == before


TINY = {**WORKFLOW_TINY, "orderings": {"seeds": [0, 3], "backbones": ["efficientnet_lite0", "small"]}}


def _plan(workdir: Path, config: dict, *targets) -> dict:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                             "--directory", str(workdir), "--cores", "2", "--dry-run", *targets],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
    table = (result.stdout + result.stderr).split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def test_orderings_plans_one_run_per_backbone_and_seed(tmp_path):
    """The data set is made once, by the outer run (each nested run finds it); the default target has no
    orderings unless orderings.report asks for the table on the report page."""
    planned = _plan(tmp_path, TINY, "orderings")
    assert planned["orderings_run"] == 4 and planned["demo_dataset"] == 1 and planned["orderings_table"] == 1
    printed = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                              "--directory", str(tmp_path), "--cores", "2", "--dry-run", "--printshellcmds",
                              "orderings"], capture_output=True, text=True).stdout
    assert printed.count('"targets": ["all", ') == 4 and "efficientnet_lite0_s3/metrics/seg_cdsp_seg_ds.csv" in printed
    assert "train_cam" not in planned  # the runs' own jobs are the nested Snakemakes'
    assert "orderings_run" not in _plan(tmp_path, TINY)
    reported = copy.deepcopy(TINY)
    reported["orderings"]["report"] = True
    assert _plan(tmp_path, reported)["orderings_run"] == 4


def test_a_run_gathers_every_chains_metrics(tmp_path):
    """RPNet's chain scores into {run}/rpnet/metrics/: its CAM and random-walk rows must reach the claims."""
    rows = {"metrics/eval_cam.csv": ("cam", "cam", 0.5), "rpnet/metrics/eval_cam.csv": ("cam", "rpnet", 0.6),
            "rpnet/metrics/sem_seg.csv": ("sem_seg", "rpnet_rw", 0.7)}
    for name, (stage, method, value) in rows.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([dict(stage=stage, method=method, split="train", metric="iou", **{"class": ""}, value=value)]
                     ).to_csv(tmp_path / name, index=False)
    table = orderings_run.gather(tmp_path)
    assert sorted(table.method) == ["cam", "rpnet", "rpnet_rw"]
