"""The Snakemake DAG end to end on a tiny demo, and what reruns after a config edit.

One real run of the whole DAG (module-scoped fixture); each rerun case then edits one config value and
asserts the exact set of jobs `snakemake -n` plans."""
import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from wsss import metrics

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile")]

TINY = {
    "run_dir": "results/tiny",
    "seed": 0,
    "device": "cpu",
    "dataset": {"root": "data/tiny", "demo": True, "class_names": ["background", "disc", "square", "triangle",
                                                                     "ring", "cross"]},
    "demo": {"seed": 0, "n_train": 10, "n_val": 4, "size": 64},
    "model": {"backbone": "small", "pretrained": None},
    "cam": {"crop": 64, "resize_long": [48, 80], "batch_size": 5, "epochs": 1, "scales": [1.0, 0.5],
            "eval_thresholds": [0.1, 0.2, 0.3]},
    "report": {"n_overlays": 2},
}


def snakemake(workdir: Path, config: dict, *args) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--cores", "2", *args],
                          capture_output=True, text=True, env=_env())


def _env():
    import os
    bin_dir = str(Path(sys.executable).parent)  # the `wsss` command of this environment
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]}


def planned_jobs(workdir: Path, config: dict) -> set[str]:
    result = snakemake(workdir, config, "--dry-run")
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout + result.stderr
    if "Nothing to be done" in out:
        return set()
    table = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", table, re.M)} - {"job"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wf")
    result = snakemake(workdir, TINY)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_pipeline_outputs(tiny_run):
    run = tiny_run / "results" / "tiny"
    table = metrics.read(run / "metrics.csv")
    assert list(table.columns) == ["stage", "method", "split", "metric", "class", "value"]
    miou = table[(table.stage == "cam") & (table.metric == "iou") & (table["class"] == "")].value
    assert len(miou) == 1 and 0 <= miou.iloc[0] <= 1
    assert (run / "report" / "summary.html").stat().st_size > 0
    assert len(list((run / "report" / "overlays").glob("*.png"))) == 2
    assert list(run.glob("**/.*.tmp-*")) == []  # no leftover temporary files
    assert planned_jobs(tiny_run, TINY) == set()


def edited(path: str, value) -> dict:
    config = copy.deepcopy(TINY)
    *parents, key = path.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[key] = value
    return config


AFTER_CAMS = {"gather_shards", "eval_cam", "metrics", "report", "all"}


@pytest.mark.parametrize("path, value, expected", [
    ("cam.eval_thresholds", [0.15, 0.25], {"eval_cam", "metrics", "report", "all"}),
    ("cam.lr", 0.05, {"train_cam", "make_cam"} | AFTER_CAMS),
    ("cam.scales", [1.0], {"make_cam"} | AFTER_CAMS),
    ("report.n_overlays", 1, {"report", "all"}),
    ("demo.n_val", 5, {"demo_dataset", "train_cam", "make_cam"} | AFTER_CAMS),
])
def test_only_stale_stages_rerun(tiny_run, path, value, expected):
    assert planned_jobs(tiny_run, edited(path, value)) == expected


def test_sharded_run_equals_unsharded(tiny_run, tmp_path):
    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_run, sharded, symlinks=True)
    config = edited("shards", 3)
    assert planned_jobs(sharded, config) == {"make_cam"} | AFTER_CAMS
    result = snakemake(sharded, config)
    assert result.returncode == 0, result.stderr[-5000:]
    before, after = (w / "results" / "tiny" for w in (tiny_run, sharded))
    files = sorted(p.name for p in (before / "cam" / "maps").iterdir())
    assert files == sorted(p.name for p in (after / "cam" / "maps").iterdir()) and len(files) == 10
    for name in files:
        with np.load(before / "cam" / "maps" / name) as a, np.load(after / "cam" / "maps" / name) as b:
            assert all(np.array_equal(a[k], b[k]) for k in ("keys", "cam", "high_res"))
    assert (before / "metrics.csv").read_bytes() == (after / "metrics.csv").read_bytes()
    assert len(list((after / "benchmarks" / "make_cam").glob("*.tsv"))) == 3


@pytest.mark.parametrize("path, value, message", [
    ("cam.lr", "1e-3", "cam"),
    ("cam.epochs", 1.5, "epochs"),
])
def test_config_errors_name_the_key(tmp_path, path, value, message):
    result = snakemake(tmp_path, edited(path, value), "--dry-run")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_config_typo_is_rejected(tmp_path):
    config = copy.deepcopy(TINY)
    config["cam"]["learning_rate"] = 0.1
    result = snakemake(tmp_path, config, "--dry-run")
    assert result.returncode != 0
    assert "learning_rate" in result.stdout + result.stderr
