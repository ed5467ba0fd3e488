"""The Snakemake DAG end to end on a tiny demo, and what reruns after a config edit.

One real run of the whole DAG (module-scoped fixture); each rerun case then edits one config value and
asserts the exact set of jobs `snakemake -n` plans."""
import copy
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from wsss import metrics
from wsss.datasets import voc

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile")]

TINY = {
    "run_dir": "results/tiny",
    "seed": 0,
    "device": "cpu",
    "methods": ["irnet", "dsrg", "psi", "cdsp"],  # RPNet: its own fixture below
    "ablations": ["dsrg"],
    "dataset": {"root": "data/tiny", "demo": True, "train_split": "train",
                "class_names": ["background", "disc", "square", "triangle", "ring", "cross"]},
    # 128 px and 20 CAM epochs: CAMs (stride 16) that localise, so that test_pipeline_outputs has a quality floor
    "demo": {"seed": 0, "n_train": 10, "n_val": 4, "size": 128},
    "model": {"backbone": "small", "pretrained": None},
    "cam": {"crop": 128, "resize_long": [96, 160], "batch_size": 5, "epochs": 20, "scales": [1.0, 0.5],
            "eval_thresholds": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]},
    "irn": {"crop": 64, "batch_size": 5, "epochs": 1, "pair_radius": 5, "steps": 16, "dp_iterations": 5},
    "seg": {"backbone": "small", "crop": 64, "batch_size": 5, "iterations": 2, "checkpoint_every": 1,
            "infer_scales": [1.0]},
    "dsrg": {"iterations": 2, "infer_sizes": [64], "retrain_batch_size": 5},
    "psi": {"crop": 64, "batch_size": 5, "epochs": 4, "head_channels": 8, "cpp_width": 8, "lambda_1": 1,
            "sld_radius": 4, "infer_scales": [1.0, 0.5]},
    "cdsp": {"crop": 64, "batch_size": 5, "epochs": 1, "warmup_epochs": 0},
    "report": {"n_overlays": 2},
}


def snakemake(workdir: Path, config: dict, *args) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--cores", "2", *args],
                          capture_output=True, text=True, env=_env())


def _env():
    """The test's environment as it is: jobs must not need the environment's bin/ on PATH (`make demo`
    runs .venv/bin/snakemake from a shell without it)."""
    return dict(os.environ)


def planned_jobs(workdir: Path, config: dict, *args) -> set[str]:
    result = snakemake(workdir, config, "--dry-run", *args)
    assert result.returncode == 0, result.stderr + result.stdout
    return _jobs(result.stdout + result.stderr)


def _jobs(out: str) -> set[str]:
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


def test_printed_command_run_by_hand_gives_the_rule_output(tiny_run, tmp_path):
    """The command `snakemake -n -p` prints for a job, pasted into a shell, writes what the rule wrote."""
    out = tiny_run / "results" / "tiny" / "metrics" / "eval_cam.csv"
    by_rule = out.read_bytes()
    dry = snakemake(tiny_run, TINY, "-n", "-p", "--forcerun", "eval_cam", "--until", "eval_cam")
    assert dry.returncode == 0, dry.stderr
    command = re.search(r"^Shell command: (.*-m wsss\.cli eval_cam .*)$", dry.stdout, re.M).group(1)
    out.unlink()
    by_hand = subprocess.run(["bash", "-c", command], cwd=tiny_run, env=_env(), capture_output=True, text=True)
    assert by_hand.returncode == 0, by_hand.stderr
    assert out.read_bytes() == by_rule


def all_background_miou(root: Path, split: str, n_classes: int) -> float:
    """mIoU of labelling every pixel background: what a pipeline that learned nothing scores."""
    masks = [voc.load_mask(voc.path(root, "mask", i), n_classes) for i in voc.read_ids(root, split)]
    return float(np.nanmean(metrics.scores(sum(metrics.confusion(np.zeros_like(m), m, n_classes)
                                               for m in masks))["iou"]))


def test_pipeline_outputs(tiny_run):
    run = tiny_run / "results" / "tiny"
    table = metrics.read(run / "metrics.csv")
    assert list(table.columns) == ["stage", "method", "split", "metric", "class", "value"]
    # Quality floors, against labelling everything background (train split: 0.13). TINY trains the CAM network
    # long enough to localise (20 epochs on 128 px images; measured 2026-12-07: CAM 0.47, IR labels 0.46 on the
    # 64 % confident pixels, random-walk labels 0.32 after IRNet's 2 iterations); the segmentation networks train
    # 2 iterations and have no floor here (their own tests check that they learn).
    trivial = all_background_miou(tiny_run / "data" / "tiny", "train", len(TINY["dataset"]["class_names"]))
    mean = table[(table["class"] == "") & (table.split == "train")].set_index(["stage", "method", "metric"]).value
    assert mean["cam", "cam", "iou"] >= 2 * trivial, (mean["cam", "cam", "iou"], trivial)
    assert mean["ir_label", "irnet_crf", "iou"] >= 2 * trivial and 0.3 < mean["ir_label", "irnet_crf", "coverage"] < 1
    assert mean["sem_seg", "irnet_rw", "iou"] >= 1.5 * trivial and mean["sem_seg", "irnet_rw", "coverage"] == 1
    page = (run / "report" / "summary.html").read_text()
    assert page.count("<h3>") == len(set(table.stage)) + 2  # a table per stage, a gallery per split
    assert (run / "report" / "loss_curves.png").stat().st_size > 0
    for net in ("cam", "irn", "seg_irnet", "dsrg", "dsrg_nogrowth", "dsrg_retrain", "psi", "cdsp"):
        log = pd.read_csv(run / net / "train_log.csv")
        assert list(log.columns) == ["iteration", "epoch", "loss", "lr", "seconds"] and len(log) > 0, net
    seg = table[(table.stage == "seg") & (table.metric == "iou") & (table["class"] == "")]
    assert {"psi", "psi_ms"} <= set(seg.method)  # rule all: the full PSI only, single- and multi-scale
    assert not {"psi_baseline", "psi_cpp", "psi_sld"} & set(seg.method)
    steps = sorted(p.name for p in (run / "psi" / "supervision").iterdir() if not p.name.startswith("."))
    assert steps == ["t0", "t1", "t2", "t3"]
    assert list(run.glob("**/.*.tmp-*")) == []  # no leftover temporary files
    assert planned_jobs(tiny_run, TINY) == set()


def edited(path: str, value, base=TINY) -> dict:
    config = copy.deepcopy(base)
    *parents, key = path.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[key] = value
    return config


# What follows each stage in the DAG (rule names; a rule with several jobs counts once). One shard: no
# gather_shards jobs (issue 24).
TAIL = {"metrics", "report", "all"}
SEG = {"infer_seg", "eval_seg"} | TAIL
LABELS = {"make_sem_seg_labels", "make_ins_seg_labels", "eval_sem_seg", "eval_ins_seg", "train_seg"} | SEG
IRN = {"cam_to_ir_label", "train_irn", "eval_boundary"} | LABELS  # eval_boundary scores the trained IRNet
DSRG = {"train_dsrg", "train_seg"} | SEG
CDSP = {"cdsp_distance_maps", "train_cdsp"} | SEG
AFTER_CAMS = {"eval_cam", "dsrg_seeds", "cdsp_pseudo_labels"} | IRN | DSRG | CDSP
PSI = {"train_psi", "psi_fig2"} | SEG  # PSI starts from the CAM network (the demo's stand-in for ImageNet weights)


@pytest.mark.parametrize("path, value, expected", [
    ("demo.n_val", 5, {"demo_dataset", "validate_data", "train_cam", "make_cam"} | AFTER_CAMS | PSI),
    ("cam.lr", 0.05, {"train_cam", "make_cam"} | AFTER_CAMS | PSI),
    ("cam.scales", [1.0], {"make_cam"} | AFTER_CAMS),
    ("cam.eval_thresholds", [0.15, 0.25], {"eval_cam"} | TAIL),
    ("irn.crf_bi_sxy", 40, IRN),  # the CRF of the relation labels: cam_to_ir_label and everything after it
    ("irn.lr", 0.05, {"train_irn", "eval_boundary"} | LABELS),
    # beta drives both random walks (semantic and instance labels, IRNet Sec. 5), nothing upstream
    ("irn.beta", 8, LABELS),
    ("irn.centroid_thres", 2.0, {"make_ins_seg_labels", "eval_ins_seg"} | TAIL),
    ("dsrg.fg_fraction", 0.15, {"dsrg_seeds"} | DSRG),
    ("dsrg.th_fg", 0.8, DSRG),
    ("seg.iterations", 3, {"train_seg"} | SEG),
    ("seg.infer_crf", False, {"train_seg"} | SEG),  # dsrg_retrain learns the DSRG model's predictions
    ("dsrg.infer_flip", True, {"train_seg"} | SEG),  # the DSRG networks' predictions, and so the retrain
    ("dsrg.retrain_batch_size", 4, {"train_seg"} | SEG),  # dsrg_retrain only
    ("psi.k", 10, PSI),  # an SLD key: PSI's training and what follows, nothing of IRNet or DSRG
    ("psi.infer_scales", [1.0], {"infer_seg", "eval_seg"} | TAIL),  # psi_ms only
    ("report.n_overlays", 1, {"psi_fig2", "report", "all"}),  # PSI Fig. 2 draws as many images
    ("cdsp.lambda_c", 5.0, CDSP),
    ("cdsp.cam_threshold", 0.3, {"cdsp_pseudo_labels"} | CDSP),
])
def test_only_stale_stages_rerun(tiny_run, path, value, expected):
    assert planned_jobs(tiny_run, edited(path, value)) == expected


def test_unused_keys_rerun_nothing(tiny_run):
    """With `dataset.demo: false` the data set on disk is the user's and the `demo` section is unused."""
    config = edited("dataset.demo", False)
    config["methods"] = ["irnet", "dsrg"]  # no scribbles declared: PSI and CDSP cannot run (plan.check)
    planned = planned_jobs(tiny_run, config)  # the metrics and report only
    config["demo"]["n_train"] = 7
    assert planned_jobs(tiny_run, config) == planned == {"metrics", "report", "all"}


def test_gpu_count_reruns_nothing(tiny_run):
    """A training rule's GPU count is a resource, not a param: DDP over N GPUs trains the same network."""
    assert planned_jobs(tiny_run, TINY, "--set-resources", "train_seg:gpu=2", "train_cam:gpu=4") == set()


def test_editing_stage_code_reruns_that_stage_and_what_follows(tiny_run, tmp_path):
    """The Snakefile hashes each stage's code and the project modules it imports (wsss/provenance.py): a
    change of code reruns the stages that import it; a comment or a docstring reruns nothing (issue 24)."""
    copy = tmp_path / "repo"
    for folder in ("wsss", "kernels", "workflow"):
        shutil.copytree(REPO / folder, copy / folder)
    env = {**_env(), "PYTHONPATH": str(copy)}

    def plan():
        (tiny_run / "config.yaml").write_text(yaml.safe_dump(TINY))
        result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(copy / "workflow" / "Snakefile"),
                                 "--directory", str(tiny_run), "--dry-run"], capture_output=True, text=True, env=env,
                                cwd=copy)  # `python -m` puts the working directory first on sys.path
        assert result.returncode == 0, result.stderr
        return _jobs(result.stdout + result.stderr)

    assert plan() == set()
    io = copy / "wsss" / "io.py"  # imported by every stage
    io.write_text(io.read_text().replace('"""', '"""A reworded docstring. ', 1).replace("\n\n\n", "\n\n\n\n")
                  + "\n# a note\n")
    assert plan() == set()
    with open(copy / "wsss" / "cam" / "eval_cam.py", "a") as f:
        f.write("\n_EDIT = 1\n")
    assert plan() == {"eval_cam"} | TAIL
    with open(copy / "kernels" / "region_grow.py", "a") as f:
        f.write("\n_EDIT = 1\n")
    assert plan() == {"eval_cam"} | DSRG


def test_sharded_run_equals_unsharded(tiny_run, tmp_path):
    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_run, sharded, symlinks=True)
    config = edited("shards", 3)
    assert planned_jobs(sharded, config) == {"make_cam", "gather_shards"} | AFTER_CAMS
    result = snakemake(sharded, config)
    assert result.returncode == 0, result.stderr[-5000:]
    before, after = (w / "results" / "tiny" for w in (tiny_run, sharded))
    files = sorted(p.name for p in (before / "cam" / "maps").glob("*.npz"))
    assert files == sorted(p.name for p in (after / "cam" / "maps").glob("*.npz")) and len(files) == 10
    for name in files:
        with np.load(before / "cam" / "maps" / name) as a, np.load(after / "cam" / "maps" / name) as b:
            assert all(np.array_equal(a[k], b[k]) for k in ("keys", "cam", "high_res"))
    for png in (before / "irn" / "sem_seg").glob("*.png"):  # a sharded stage downstream of a sharded stage
        assert png.read_bytes() == (after / "irn" / "sem_seg" / png.name).read_bytes()
    assert (before / "metrics.csv").read_bytes() == (after / "metrics.csv").read_bytes()
    shard_benchmarks = {p.name for p in (after / "benchmarks" / "make_cam").glob("*.tsv")}
    assert {"1-of-3.tsv", "2-of-3.tsv", "3-of-3.tsv"} <= shard_benchmarks


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


def test_touch_keeps_results_after_a_cosmetic_edit(tiny_run, tmp_path):
    """README: `snakemake --touch` accepts the existing outputs under the edited config."""
    work = tmp_path / "touched"
    shutil.copytree(tiny_run, work, symlinks=True)
    config = edited("cam.eval_thresholds", [0.1, 0.2, 0.3, 0.4])
    assert planned_jobs(work, config) == {"eval_cam"} | TAIL
    result = snakemake(work, config, "--touch")
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(work, config) == set()


def test_pipeline_outputs_in_snakemake_report(tiny_run):
    """`snakemake --report` of the run: each rule's code panel shows its command, every job a positive run
    time (run: rules showed empty panels and negative times)."""
    result = snakemake(tiny_run, TINY, "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tiny_run / "report.html").read_text()
    code = html.unescape(re.sub(r"<[^>]*>", "", page))  # the panels are pygments-highlighted
    for rule in ("train_cam", "eval_cam", "report"):
        assert f"-m wsss.cli {rule} --params {{params.json}}" in code, rule
    runtimes = [float(s) for s in re.findall(r'"runtime": (-?[\d.e-]+)', page)]
    assert runtimes and min(runtimes) > 0


# RPNet: IRNet's chain made a second time (workflow/rules/chain.smk) next to the plain one; its own fixture, so
# the matrix above (TINY without rpnet) is unchanged.
RPNET_TINY = {**TINY, "methods": ["irnet", "rpnet"],
              "cam": {**TINY["cam"], "rpnet": {"crop": 64, "resize_long": [48, 80], "batch_size": 5, "epochs": 1,
                                              "lr": 0.1, "neck_channels": 16}}}
RPNET_TARGETS = ["rpnet", "results/tiny/metrics/eval_cam.csv"]
RP_SEG = {"infer_seg", "eval_seg", "rpnet"}
RP_LABELS = {"rpnet_make_sem_seg_labels", "rpnet_eval_sem_seg", "train_seg"} | RP_SEG
RP_CHAIN = {"rpnet_train_cam", "rpnet_make_cam", "rpnet_eval_cam", "rpnet_cam_to_ir_label", "rpnet_train_irn",
            *RP_LABELS}


@pytest.fixture(scope="module")
def rpnet_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wf_rpnet")
    result = snakemake(workdir, RPNET_TINY, *RPNET_TARGETS)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_rpnet_chain_writes_its_own_rows(rpnet_run):
    run = rpnet_run / "results" / "tiny"
    methods = {name: set(metrics.read(run / folder / f"{name}.csv").method)
               for folder, name in (("rpnet/metrics", "eval_cam"), ("rpnet/metrics", "sem_seg"),
                                    ("metrics", "seg_seg_rpnet"))}
    assert methods == {"eval_cam": {"rpnet"}, "sem_seg": {"rpnet_rw"}, "seg_seg_rpnet": {"seg_rpnet"}}
    assert set(metrics.read(run / "metrics" / "eval_cam.csv").method) == {"cam"}
    assert torch.load(run / "rpnet" / "cam" / "model.pt", weights_only=True)["params"]["method"] == "rpnet"


@pytest.mark.parametrize("path, value, expected", [
    ("cam.rpnet.keep", 0.7, RP_CHAIN),  # an RPNet key: the RPNet branch only
    ("cam.rpnet.epochs", 2, RP_CHAIN),
    ("cam.lr", 0.05, {"train_cam", "make_cam", "eval_cam"}),  # the plain branch only
    ("cam.scales", [1.0], {"make_cam", "eval_cam"} | RP_CHAIN - {"rpnet_train_cam"}),
    ("irn.lr", 0.05, {"rpnet_train_irn"} | RP_LABELS),
])
def test_rpnet_key_reruns_only_its_branch(rpnet_run, path, value, expected):
    assert planned_jobs(rpnet_run, edited(path, value, RPNET_TINY), *RPNET_TARGETS) == expected
