"""Fault injection: every training and per-image stage is killed (SIGKILL) in the middle of its work, then run
again; the outputs must equal those of an uninterrupted run bit for bit, and no temporary (or checkpoint) may be
left.

Each stage runs as the workflow runs it (`python -m wsss.cli <stage>` in its own process, one thread: results
are bit-identical between processes of the same thread count, docs/reliability.md) on the tiny demo set, chained
as in the workflow: train_cam -> make_cam -> cam_to_ir_label -> train_irn -> make_sem_seg_labels /
make_ins_seg_labels -> train_seg -> infer_seg, and make_cam -> dsrg_seeds -> train_dsrg. The kill is placed by
the stage's progress, not by wall clock: a trainer (checkpointing every iteration) dies once it has written its
k-th checkpoint, a per-image stage once it has written its k-th image, k in KILL_AT; the test asserts that the
signal killed it (it had not finished) and that a trainer's rerun said it resumed from a checkpoint."""
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from wsss import cli
from wsss.datasets import demo_dataset

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # stages in subprocesses, killed and rerun: about 2 minutes
KILL_AT = [1, 2]  # x 10 stages: killed after the 1st / 2nd checkpoint or image (each trainer has 4 iterations)
CRF = dict(crf_gt_prob=0.7, crf_gauss_sxy=3, crf_gauss_compat=3, crf_bi_sxy=50, crf_bi_srgb=5, crf_bi_compat=10,
           crf_iterations=2)
NET = dict(seed=0, device="cpu", backbone="small", pretrained=None, split="train", num_workers=0, weight_decay=1e-4)
# stage -> (params, inputs {option: earlier stage's output or "root"}, outputs {option: file name})
STAGES = {
    "train_cam": (dict(NET, crop=64, resize_long=[48, 80], batch_size=4, epochs=2, lr=0.1, checkpoint_every=1),
                  {}, {"out": "cam.pt"}),
    "make_cam": (dict(split="train", device="cpu", scales=[1.0, 0.5]), {"model": "train_cam"}, {"out": "cams"}),
    "cam_to_ir_label": (dict(split="train", conf_fg_thres=0.3, conf_bg_thres=0.05, **CRF), {"cams": "make_cam"},
                        {"out": "ir_label"}),
    "train_irn": (dict(NET, irn_backbone="cam", crop=64, scale=[0.5, 1.5], batch_size=4, epochs=2, lr=0.1, radius=5,
                       checkpoint_every=1),
                  {"ir_labels": "cam_to_ir_label", "cam_model": "train_cam"}, {"out": "irn.pt"}),
    "make_sem_seg_labels": (dict(split="train", device="cpu", beta=10, steps=8, radius=5, bg_thres=0.25),
                            {"cams": "make_cam", "irn_model": "train_irn"}, {"out": "sem_seg"}),
    "make_ins_seg_labels": (dict(split="train", device="cpu", beta=10, steps=8, radius=5, bg_thres=0.25,
                                 dp_iterations=5, centroid_thres=2.5), {"cams": "make_cam", "irn_model": "train_irn"},
                            {"out": "ins_seg"}),
    "train_seg": (dict(NET, crop=48, scale=[0.5, 1.5], batch_size=4, iterations=4, lr=0.01, checkpoint_every=1),
                  {"labels": "make_sem_seg_labels"}, {"out": "seg.pt"}),
    "infer_seg": (dict(split="val", device="cpu", scales=[1.0], flip=False, crf=False), {"model": "train_seg"},
                  {"out": "pred"}),
    "dsrg_seeds": (dict(split="train", fg_rule="top_fraction", fg_fraction=0.2, bg_cam=0.05, bg_saliency=0.06),
                   {"cams": "make_cam"}, {"out": "seeds"}),
    "train_dsrg": (dict(NET, crop=48, batch_size=4, iterations=4, lr=0.001, lr_policy="step", lr_step=2000,
                        lr_gamma=0.1, crf_scale=12, th_fg=0.85, th_bg=0.99, checkpoint_every=1),
                   {"seeds": "dsrg_seeds"}, {"out": "dsrg.pt", "supervision": "supervision.csv", "plot": "sup.png"}),
}


def _command(stage, root, class_names, refs, folder):
    params, inputs, outputs = STAGES[stage]
    params = {**params, "class_names": class_names} if "class_names" in _declared(stage) else params
    paths = {"root": root, **{k: refs[v] for k, v in inputs.items()}, **{k: folder / v for k, v in outputs.items()}}
    return [sys.executable, "-m", "wsss.cli", stage, "--params", json.dumps(params),
            *[a for k, v in paths.items() for a in (f"--{k}", str(v))]]


def _declared(stage):
    return importlib.import_module(cli.STAGES[stage]).PARAMS


ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _run(command) -> str:
    """Runs a stage to its end; returns its output (stdout and stderr)."""
    done = subprocess.run(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    return done.stdout


def _trainer(stage) -> bool:
    return "checkpoint_every" in STAGES[stage][0]


def _progress(stage, folder: Path) -> int:
    """How far a running stage has got: a trainer's checkpoints (it rewrites train_log.csv, one row per
    iteration, right after each), a per-image stage's images in its temporary output folder."""
    if _trainer(stage):
        log = folder / "train_log.csv"
        return max(len(log.read_text().splitlines()) - 1, 0) if log.is_file() else 0
    return sum(len([f for f in tmp.iterdir() if not f.name.startswith(".")])
               for tmp in folder.glob(f".{STAGES[stage][2]['out']}.wsss.tmp-*"))


def _run_killed(stage, command, folder: Path, kill_at: int) -> int:
    """Runs a stage and SIGKILLs it as soon as `_progress` reaches `kill_at`; fails if the stage ends before
    (finished, or failed). Returns the progress at the kill."""
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while (done := _progress(stage, folder)) < kill_at and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (f"{stage} ended (exit {proc.returncode}) before the kill, at "
                                                f"progress {done} of {kill_at}: {proc.stderr.read()[-2000:]}")
    assert done >= kill_at, f"{stage} did not reach progress {kill_at} in 300 s"
    assert not (folder / STAGES[stage][2]["out"]).exists(), "the killed stage left an output that looks finished"
    return done


class Reference:
    """The uninterrupted outputs of each stage, made on first use (with the stages it reads from); later stages
    read their inputs from here."""

    def __init__(self, root, names, folder):
        self.root, self.names, self.folder = root, names, folder
        self.outputs = {}

    def __getitem__(self, stage) -> Path:
        if stage not in self.outputs:
            refs = {earlier: self[earlier] for earlier in STAGES[stage][1].values()}
            _run(_command(stage, self.root, self.names, refs, self.folder))
            self.outputs[stage] = self.folder / STAGES[stage][2]["out"]
        return self.outputs[stage]


@pytest.fixture(scope="module")
def reference(tiny_voc_master, tmp_path_factory):
    return Reference(tiny_voc_master, list(demo_dataset.PARAMS["class_names"].default),
                     tmp_path_factory.mktemp("reference"))


def _same(a: Path, b: Path):
    if a.is_dir():
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        for f in a.iterdir():
            _same(f, b / f.name)
    elif a.suffix == ".pt":
        x, y = (torch.load(f, weights_only=True) for f in (a, b))
        assert x["history"]["loss"] == y["history"]["loss"]
        assert x["state_dict"].keys() == y["state_dict"].keys()
        for k, v in x["state_dict"].items():  # bit for bit: a rerun computes exactly what the first run did
            assert torch.equal(y["state_dict"][k], v), f"{a.name} {k}: off by {(y['state_dict'][k] - v).abs().max()}"
    elif a.suffix == ".npz":
        x, y = np.load(a), np.load(b)
        assert x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files), a.name
    elif a.suffix == ".csv":  # the supervision log: its timing columns differ between runs
        x, y = pd.read_csv(a), pd.read_csv(b)
        columns = ["epoch", "precision", "recall", "iou", "labelled"]
        pd.testing.assert_frame_equal(x[columns], y[columns], check_exact=True)
    elif a.suffix == ".png" and a.name != "sup.png":
        assert a.read_bytes() == b.read_bytes(), a.name


@pytest.mark.parametrize("kill_at", KILL_AT)
@pytest.mark.parametrize("stage", list(STAGES))
def test_killed_stage_reruns_to_the_uninterrupted_result(reference, stage, kill_at, tmp_path):
    expected = reference[stage]
    refs = {earlier: reference[earlier] for earlier in STAGES[stage][1].values()}
    command = _command(stage, reference.root, reference.names, refs, tmp_path)
    done = _run_killed(stage, command, tmp_path, kill_at)
    log = _run(command)
    if _trainer(stage):  # it went on from its last checkpoint, not from scratch
        resumed = re.search(r"resuming at iteration (\d+)", log)
        assert resumed and int(resumed.group(1)) >= done, log[-2000:]
    for name in STAGES[stage][2].values():
        _same(expected.parent / name, tmp_path / name)
    leftovers = [p.name for p in tmp_path.rglob("*") if ".tmp-" in p.name or p.name.endswith(".ckpt")]
    assert leftovers == []
