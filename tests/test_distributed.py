"""DDP training on the CPU (wsss.distributed): every trainer run as two gloo processes, each with half of
every batch, ends with the weights of one process that sees whole batches.

BatchNorm statistics are per rank on the CPU (SyncBatchNorm needs GPUs), so the networks here use fixed
BN statistics from an ImageNet-format file, as with real pretrained weights; IRNet's branches use GroupNorm."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from wsss import distributed
from wsss.cam import net as cam_net
from wsss.cam import train_cam
from wsss.cdsp import cdsp_distance_maps, train_cdsp
from wsss.dsrg import train_dsrg
from wsss.irnet import train_irn
from wsss.models import resnet
from wsss.params import resolve
from wsss.seg import train_seg

COMMON = dict(seed=0, device="cpu", split="train", backbone="small", weight_decay=0.0001,
              num_workers=0)


@pytest.fixture
def imagenet_file(tmp_path):
    torch.manual_seed(1)
    file = tmp_path / "imagenet.pth"
    torch.save(resnet("small").state_dict(), file)
    return file


def _train_both_ways(monkeypatch, tmp_path, trainer, params, **paths):
    """Runs `trainer` in one process and as two DDP processes; returns both saved networks."""
    saved = []
    for world in ("1", "2"):
        monkeypatch.setenv("WSSS_WORLD_SIZE", world)
        out = tmp_path / f"world{world}"
        trainer.run(params, **{k: (v(out) if callable(v) else v) for k, v in paths.items()}, out=out / "model.pt")
        saved.append(torch.load(out / "model.pt", weights_only=True))
    return saved


def _assert_same_training(one, two, initial: dict):
    """Equal weights up to float32 summation order, and they did move during training."""
    moved = 0.0
    for key, value in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][key], value, rtol=1e-4, atol=2e-6, msg=key)
        if key in initial and value.is_floating_point():
            moved = max(moved, (value - initial[key]).abs().max().item())
    assert moved > 1e-3
    np.testing.assert_allclose(two["history"]["loss"], one["history"]["loss"], rtol=1e-5)


def _initial(build, params) -> dict:
    torch.manual_seed(params["seed"])
    return {k: v.clone() for k, v in build(params).state_dict().items()}


def test_world_size_comes_from_the_override_then_the_gpus(monkeypatch):
    monkeypatch.delenv("WSSS_WORLD_SIZE", raising=False)
    monkeypatch.setenv("WSSS_GPUS", "4")
    assert distributed.world_size("cpu") == 1  # GPUs given to a CPU run train nothing
    monkeypatch.setenv("WSSS_WORLD_SIZE", "3")
    assert distributed.world_size("cpu") == 3


def test_train_cam_on_two_ranks(tiny_voc, tmp_path, monkeypatch, imagenet_file):
    root, names = tiny_voc
    params = {**COMMON, "class_names": names, "tags_from": "masks", "pretrained": str(imagenet_file), "crop": 48,
              "resize_long": [40, 64], "batch_size": 4, "epochs": 2, "lr": 0.1}
    one, two = _train_both_ways(monkeypatch, tmp_path, train_cam, params, root=root)
    _assert_same_training(one, two, _initial(cam_net.build, resolve(params, train_cam.PARAMS, "train_cam")))


def test_train_irn_on_two_ranks(tiny_voc, tmp_path, monkeypatch):
    root, names = tiny_voc
    cam_params = {"backbone": "small", "class_names": names, "pretrained": None}
    torch.manual_seed(0)
    torch.save({"state_dict": cam_net.build(cam_params).state_dict(), "params": cam_params}, tmp_path / "cam_net.pt")
    params = {**COMMON, "class_names": names, "pretrained": None, "irn_backbone": "cam", "crop": 48,
              "scale": [0.7, 1.3], "input_scale": 1.0, "batch_size": 4, "epochs": 2, "lr": 0.1, "momentum": 0.9,
              "radius": 5}
    # the ground-truth masks stand in for IR labels (same format: 255 = unsure)
    one, two = _train_both_ways(monkeypatch, tmp_path, train_irn, params, root=root,
                                ir_labels=root / "SegmentationClass", cam_model=tmp_path / "cam_net.pt")
    _assert_same_training(one, two, _initial(lambda p: train_irn.init_model(p, tmp_path / "cam_net.pt"), params))
    assert one["state_dict"]["mean_displacement"].abs().sum() > 0


SEG = {**COMMON, "arch": "deeplab_v2", "crop": 48, "batch_size": 4, "lr": 0.01, "momentum": 0.9,
       "head_lr_mult": 10}


def test_train_seg_on_two_ranks(tiny_voc, tmp_path, monkeypatch, imagenet_file):
    root, names = tiny_voc
    params = {**SEG, "class_names": names, "pretrained": str(imagenet_file), "scale": [0.5, 2.0], "iterations": 4,
              "checkpoint_every": 2}
    one, two = _train_both_ways(monkeypatch, tmp_path, train_seg, params, root=root,
                                labels=root / "SegmentationClass")
    _assert_same_training(one, two, _initial(train_seg.deeplab.build, params))


def test_train_cdsp_on_two_ranks(tiny_voc, tmp_path, monkeypatch, imagenet_file):
    """Every CDSP term (partial and smoothed CE, LoRM, both distance entropies) divides by counts of all ranks."""
    root, names = tiny_voc
    maps = dict(dist_scribble=tmp_path / "ds", dist_pseudo=tmp_path / "dc")
    cdsp_distance_maps.run(dict(class_names=names, split="train"), root=root, pseudo=root / "SegmentationClass",
                           out_scribble=maps["dist_scribble"], out_pseudo=maps["dist_pseudo"])
    params = {**SEG, "class_names": names, "pretrained": str(imagenet_file), "epochs": 2, "warmup_epochs": 1}
    one, two = _train_both_ways(monkeypatch, tmp_path, train_cdsp, params, root=root,
                                pseudo=root / "SegmentationClass", **maps)
    _assert_same_training(one, two, _initial(train_cdsp.deeplab.build, params))


def test_train_dsrg_on_two_ranks(tiny_voc, tmp_path, monkeypatch, imagenet_file):
    root, names = tiny_voc
    params = {**SEG, "class_names": names, "tags_from": "masks", "pretrained": str(imagenet_file), "scale": None,
              "iterations": 4,
              "lr_policy": "step", "lr_step": 2000, "lr_gamma": 0.1, "th_fg": 0.85, "th_bg": 0.99, "crf_scale": 12,
              "crf_log_unary": True, "growth": True}
    one, two = _train_both_ways(monkeypatch, tmp_path, train_dsrg, params, root=root,
                                seeds=root / "SegmentationClass", supervision=lambda out: out / "supervision.csv",
                                plot=lambda out: out / "supervision.png")
    _assert_same_training(one, two, _initial(train_dsrg.deeplab.build, params))
    # the supervision log sums both ranks' confusion matrices: the same quality figures as one process
    quality = ["epoch", "precision", "recall", "iou", "labelled"]
    tables = [pd.read_csv(tmp_path / f"world{w}" / "supervision.csv")[quality] for w in (1, 2)]
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_the_cli_trains_on_two_ranks(tiny_voc, tmp_path):
    """`wsss train_cam` as the workflow runs it: the spawned ranks import the console script's module."""
    root, names = tiny_voc
    params = {**COMMON, "class_names": names, "pretrained": None, "crop": 48, "resize_long": [40, 64],
              "batch_size": 4, "epochs": 1, "lr": 0.1}
    wsss = Path(sys.executable).parent / "wsss"
    result = subprocess.run([str(wsss), "train_cam", "--params", json.dumps(params), "--root", str(root),
                             "--out", str(tmp_path / "m.pt")], capture_output=True, text=True,
                            env={**os.environ, "WSSS_WORLD_SIZE": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DDP: training on 2 processes (gloo)" in result.stderr
    assert len(torch.load(tmp_path / "m.pt", weights_only=True)["history"]["loss"]) == 1


SLEEPER = '''
import os, time
from pathlib import Path

def train(params, *, out):
    Path(out, f"{os.getpid()}.pid").write_text("")
    time.sleep(300)
'''


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_ranks_die_with_a_killed_launcher(tmp_path):
    """SIGKILL to the job (Snakemake giving up) must not leave ranks that go on to write outputs."""
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    script = ("import sleeper; from wsss import distributed; "
              f"distributed.launch(sleeper.train, {{'device': 'cpu'}}, out={str(tmp_path)!r})")
    env = {**os.environ, "WSSS_WORLD_SIZE": "2", "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    launcher = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: len(list(tmp_path.glob("*.pid"))) == 2, 120), launcher.stderr.read1().decode()
    finally:
        launcher.kill()
        launcher.wait()
    ranks = [int(f.stem) for f in tmp_path.glob("*.pid")]
    assert _wait_for(lambda: not any(_alive(pid) for pid in ranks), 30)
