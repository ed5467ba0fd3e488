"""Issue 11 (hardening), one test per item: nothing the project did not write is deleted, a checkpoint of other
inputs is not resumed, GPU locks are private, ids stay inside the run, duplicates and bad data are found before
training, contradicting settings are named, temporaries of dead jobs are swept, a full disk is named, and EXIF
orientation is refused for images and masks alike. The workflow-level parts (the validation rule, the console
message, SIGTERM) are in test_hardening_workflow.py."""
import errno
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from snakemake.utils import validate

from wsss import config_checks, gpu_slots, io, training
from wsss.config_checks import ConfigError
from wsss.datasets import demo_dataset, synthetic, validate_data, voc
from wsss.errors import DataError
from wsss.seg import train_seg

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


# 1. the demo generator never deletes what it did not write

def test_demo_generator_refuses_a_foreign_root_and_deletes_nothing(tmp_path, tiny_demo_params):
    root = tmp_path / "mydata"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "JPEGImages" / "holiday.jpg").write_bytes(b"precious")
    (root / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=f"{root}: not a generated data set root"):
        demo_dataset.run(tiny_demo_params, root=root)
    assert (root / "JPEGImages" / "holiday.jpg").read_bytes() == b"precious"
    assert sorted(p.name for p in root.iterdir()) == ["JPEGImages", "notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["mydata"]  # no temporary left beside it


def test_demo_generator_replaces_only_its_own_folders(tmp_path, tiny_demo_params):
    root = tmp_path / "demo"
    demo_dataset.run(tiny_demo_params, root=root)
    assert (root / synthetic.MARKER).is_file()
    (root / "my_results.csv").write_text("kept")  # beside the generator's folders in a demo root
    (root / "JPEGImages" / "train_00000.jpg").write_bytes(b"damaged")
    demo_dataset.run({**tiny_demo_params, "n_train": 9}, root=root)
    assert (root / "my_results.csv").read_text() == "kept"
    assert len(voc.read_ids(root, "train")) == 9
    voc.load_image(voc.path(root, "image", "train_00000"))  # regenerated
    # a demo root of an older wsss (no marker, only the generator's files) is still recognised
    (root / synthetic.MARKER).unlink()
    (root / "my_results.csv").unlink()
    demo_dataset.run(tiny_demo_params, root=root)
    assert (root / synthetic.MARKER).is_file()


# 2. a checkpoint of other inputs is not resumed

def _seg_params(names, **over):
    return dict(dict(seed=3, device="cpu", class_names=names, split="train", arch="deeplab_v2", backbone="small",
                     pretrained=None, crop=48, scale=[0.5, 2.0], batch_size=2, iterations=4, lr=0.01,
                     lr_policy="poly", power=0.9, momentum=0.9, weight_decay=0.0005, head_lr_mult=10,
                     checkpoint_every=2), **over)


def test_checkpoint_of_other_labels_is_not_resumed(tiny_voc, tmp_path, monkeypatch, capsys, kill_train_seg_at):
    root, names = tiny_voc
    labels = tmp_path / "labels"
    shutil.copytree(root / "SegmentationClass", labels)
    params = _seg_params(names)
    kill_train_seg_at(3)
    with pytest.raises(KeyboardInterrupt):
        train_seg.run(params, root=root, labels=labels, out=tmp_path / "m.pt")
    monkeypatch.undo()
    assert (tmp_path / "m.pt.ckpt").is_file()
    first = voc.read_ids(root, "train")[0]  # the pseudo-labels change (another irn.beta, say)
    mask = np.asarray(Image.open(labels / f"{first}.png")).copy()
    mask[:8] = 1
    io.save_png(labels / f"{first}.png", mask, voc.voc_palette())
    capsys.readouterr()
    train_seg.run(params, root=root, labels=labels, out=tmp_path / "m.pt")
    assert "checkpoint of other inputs" in capsys.readouterr().out
    train_seg.run(params, root=root, labels=labels, out=tmp_path / "clean.pt")
    resumed, clean = (torch.load(tmp_path / f, weights_only=True)["state_dict"] for f in ("m.pt", "clean.pt"))
    assert all(torch.equal(v, clean[k]) for k, v in resumed.items())


def test_run_key_covers_params_code_and_every_input(tmp_path):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.png").write_bytes(b"1")
    (tmp_path / "init.pt").write_bytes(b"w")
    inputs = [tmp_path / "labels", tmp_path / "init.pt", None]
    key = training.run_key({"lr": 1}, "wsss.seg.train_seg", inputs)
    assert key == training.run_key({"lr": 1}, "wsss.seg.train_seg", inputs)
    assert key["code"] != training.run_key({"lr": 1}, "wsss.cam.train_cam", inputs)["code"]
    (tmp_path / "labels" / ".snakemake_timestamp").write_text("")  # hidden files are not inputs
    assert training.run_key({"lr": 1}, "wsss.seg.train_seg", inputs) == key
    for change in (lambda: (tmp_path / "labels" / "a.png").write_bytes(b"2"),
                   lambda: (tmp_path / "labels" / "b.png").write_bytes(b"1"),
                   lambda: (tmp_path / "init.pt").write_bytes(b"v")):
        change()
        assert training.run_key({"lr": 1}, "wsss.seg.train_seg", inputs)["inputs"] != key["inputs"]
        key = training.run_key({"lr": 1}, "wsss.seg.train_seg", inputs)


# 3. GPU lock files

@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSS_GPU_IDS", "0")
    monkeypatch.setenv("WSSS_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("WSSS_GPU_TIMEOUT", raising=False)
    return tmp_path / "locks"


def test_gpu_locks_follow_no_link_and_truncate_nothing(fake_gpus, tmp_path):
    held = gpu_slots.acquire(1)
    assert (os.stat(fake_gpus).st_mode & 0o777) == 0o700
    assert (os.stat(fake_gpus / "gpu-0.lock").st_mode & 0o777) == 0o600
    os.close(held[0])
    (fake_gpus / "gpu-0.lock").write_text("left by a job")
    os.close(gpu_slots.acquire(1)[0])
    assert (fake_gpus / "gpu-0.lock").read_text() == "left by a job"  # opened without truncation
    victim = tmp_path / "victim.txt"
    victim.write_text("important")
    (fake_gpus / "gpu-0.lock").unlink()
    (fake_gpus / "gpu-0.lock").symlink_to(victim)
    with pytest.raises(OSError):
        gpu_slots.acquire(1)
    assert victim.read_text() == "important"


def test_gpu_lock_folder_of_another_user_or_a_link_is_refused(fake_gpus, tmp_path, monkeypatch):
    fake_gpus.mkdir(mode=0o700)
    monkeypatch.setattr(os, "getuid", lambda: os.stat(fake_gpus).st_uid + 1)
    with pytest.raises(RuntimeError, match="belongs to user id"):
        gpu_slots.acquire(1)
    monkeypatch.undo()
    monkeypatch.setenv("WSSS_GPU_IDS", "0")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("WSSS_GPU_LOCK_DIR", str(tmp_path / "link"))
    (tmp_path / "link").symlink_to(fake_gpus)
    with pytest.raises(RuntimeError, match="not a folder"):
        gpu_slots.acquire(1)
    monkeypatch.setenv("WSSS_GPU_LOCK_DIR", str(fake_gpus))
    fake_gpus.chmod(0o777)
    with pytest.raises(RuntimeError, match="writable by others"):
        gpu_slots.acquire(1)


def test_gpu_wait_warns_and_times_out(fake_gpus, monkeypatch, capsys):
    held = gpu_slots.acquire(1)
    script = "from wsss import gpu_slots; gpu_slots.acquire(1, poll_seconds=0.05)"
    env = {**os.environ, "WSSS_GPU_TIMEOUT": "0.5", "WSSS_GPU_WAIT_WARN": "0.2", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    os.close(held[0])
    assert result.returncode != 0
    assert "waiting" in result.stderr and "WSSS_GPU_TIMEOUT" in result.stderr
    assert "no 1 free GPUs of ['0'] after" in result.stderr


# 4 and 5. image ids: one path component, no repeats; run_dir not empty

@pytest.mark.parametrize("bad", ["/tmp/x/pwn", "../escape", "a/b", "..", ".hidden", "-rf", "a\\b"])
def test_an_id_that_is_not_a_plain_file_name_is_refused(tiny_voc, bad):
    root, _ = tiny_voc
    split = voc.path(root, "split", "train")
    split.write_text(split.read_text() + bad + "\n")
    with pytest.raises(DataError, match=f"{split}: line 9: image id"):
        voc.read_ids(root, "train")


def test_a_repeated_id_is_refused_naming_the_file_and_the_id(tiny_voc):
    root, _ = tiny_voc
    split = voc.path(root, "split", "train")
    split.write_text(split.read_text() + "train_00002 extra\n")
    with pytest.raises(DataError, match=f"{split}: line 9: image id 'train_00002' repeats line 3"):
        voc.read_ids(root, "train")


def _config(**over):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, value in over.items():
        section, _, name = key.rpartition(".")
        (config[section] if section else config)[name] = value
    validate(config, str(SCHEMA))  # fills the schema's defaults, as the Snakefile does
    return config


@pytest.mark.parametrize("run_dir", ["", "/", "//"])
def test_run_dir_must_not_be_empty_or_the_root(run_dir):
    with pytest.raises(Exception, match="run_dir"):
        validate({**yaml.safe_load((REPO / "config.yaml").read_text()), "run_dir": run_dir}, str(SCHEMA))


# 6. the data are checked before training

def test_validate_data_names_each_bad_file(tiny_voc, tmp_path):
    root, names = tiny_voc
    params = {"splits": ["train", "val"], "class_names": names, "tags_from": "masks"}
    validate_data.run(params, root=root, out=tmp_path / "ok.txt")
    assert (tmp_path / "ok.txt").read_text() == "train: 8 images, 0 bad\nval: 4 images, 0 bad\n"
    mask = voc.path(root, "mask", "val_00001")
    Image.open(mask).crop((0, 0, 32, 32)).save(mask)
    with pytest.raises(DataError, match=f"{mask}: label PNG is 32x32 \\(HxW\\) but its image is 64x64$"):
        validate_data.run(params, root=root, out=tmp_path / "bad.txt")
    shutil.copy(voc.path(root, "mask", "val_00002"), mask)
    labels = np.asarray(Image.open(mask)).copy()
    labels[0, 0] = 9
    io.save_png(mask, labels, voc.voc_palette())
    voc.path(root, "image", "train_00003").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="train_00003.jpg: unreadable image .*\\(and 1 more problems"):
        validate_data.run(params, root=root, out=tmp_path / "bad.txt")
    assert not (tmp_path / "bad.txt").exists()


# 7. settings that only make sense together

@pytest.mark.parametrize("over, key", [
    ({"cam.resize_long": [160, 96]}, "cam.resize_long"),
    ({"irn.scale": [1.5, 0.5]}, "irn.scale"),
    ({"cam.crop": 200}, "cam.crop"),
    ({"seg.crop": 300}, "seg.crop"),
    ({"dataset.class_names": ["background", "disc", "car"]}, "dataset.class_names"),
    ({"run_dir": "  "}, "run_dir"),
])
def test_contradicting_settings_are_named(over, key):
    config_checks.check(_config())  # the shipped config passes
    with pytest.raises(ConfigError, match=key.replace(".", "\\.")):
        config_checks.check(_config(**over))



def test_a_key_given_twice_in_a_config_file_is_named(tmp_path):
    """YAML keeps the last of two equal keys: the first block's values would be lost without a word."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("psi:\n  lambda_1: 1\nseg:\n  crop: 96\npsi:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=f"{mine} line 5: 'psi' is given twice"):
        config_checks.check(_config(), configfiles=[REPO / "config.yaml", mine])


# 8. leftovers and messages

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_processes_are_swept(tmp_path):
    out = tmp_path / "run" / "cam"
    out.mkdir(parents=True)
    dead, host = _dead_pid(), socket.gethostname()
    stale = out / f".maps.wsss.tmp-{host}-{dead}"  # a killed job's half-written folder
    stale.mkdir()
    (stale / "a.npz").write_bytes(b"x")
    alive = out / f".maps.wsss.tmp-{host}-{os.getppid()}"  # a job still running
    remote = out / f".maps.wsss.tmp-otherhost-{dead}"  # on a shared disk: not ours to judge
    other = out / f".model.pt.wsss.tmp-{host}-{dead}"  # another output's: removed when that one is written
    for keep in (alive, remote, other):
        keep.write_bytes(b"y")
    io.save_npz(out / "maps", a=np.zeros(1))
    assert not stale.exists() and (out / "maps").is_file()
    assert alive.exists() and remote.exists() and other.exists()


def test_full_disk_while_saving_a_network_names_the_file(tiny_voc, tmp_path, monkeypatch):
    root, names = tiny_voc

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(training.torch, "save", full)
    out = tmp_path / "m.pt"
    with pytest.raises(DataError, match=f"{out}: no space left on device"):
        train_seg.run(_seg_params(names, iterations=1, checkpoint_every=0), root=root,
                      labels=root / "SegmentationClass", out=out)
    assert [p.name for p in tmp_path.iterdir()] == ["voc"]  # no model, no temporary



def test_a_diverging_training_stops_naming_the_iteration_and_saves_nothing(tiny_voc, tmp_path):
    """A learning rate far too high makes the loss nan within a few steps: the stage fails saying so, and no
    network of nan weights is published for the next stages to read."""
    root, names = tiny_voc
    out = tmp_path / "m.pt"
    with pytest.raises(FloatingPointError, match=r"train_seg: the loss is nan at iteration \d+ of 6, .* Lower the "
                                                 r"learning rate \(lr 1e\+30\)"):
        train_seg.run(_seg_params(names, iterations=6, checkpoint_every=0, lr=1e30), root=root,
                      labels=root / "SegmentationClass", out=out)
    assert [p.name for p in tmp_path.iterdir()] == ["voc"]  # no model, no log, no temporary

# 9. EXIF orientation

def test_exif_orientation_is_refused_for_images_and_masks(tiny_voc):
    root, names = tiny_voc
    image, mask = voc.path(root, "image", "train_00000"), voc.path(root, "mask", "train_00000")
    exif = Image.Exif()
    exif[voc.EXIF_ORIENTATION] = 6
    Image.open(image).save(image, exif=exif, quality=95)
    with pytest.raises(DataError, match=f"{image}: image has EXIF orientation 6"):
        voc.load_image(image)
    exif[voc.EXIF_ORIENTATION] = 1  # "as stored" is fine
    Image.open(image).save(image, exif=exif, quality=95)
    assert voc.load_image(image).shape == (64, 64, 3)
    exif[voc.EXIF_ORIENTATION] = 3
    Image.open(mask).save(mask, exif=exif)
    with pytest.raises(DataError, match=f"{mask}: label PNG has EXIF orientation 3"):
        voc.load_mask(mask, len(names))
