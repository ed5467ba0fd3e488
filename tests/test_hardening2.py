"""Issue 25 (hardening, round two), one test per item, on tiny inputs: nothing a user wrote is replaced or swept,
no id escapes its folder, a stage whose job has ended publishes nothing, a 16-bit image keeps its pixels, and
each bad input is one line naming the file. Predict's items are in test_predict.py, the converters' in
test_convert.py, the workflow-level ones (a killed Snakemake, a killed job shell, config errors at start) in
test_hardening_workflow.py."""
import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from test_hardening import _config  # config.yaml with overrides, the schema's defaults filled in
from wsss import config_checks, gpu_slots, io, jobs, run_config
from wsss.config_checks import ConfigError
from wsss.datasets import demo_dataset, synthetic, validate_data, voc
from wsss.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# 2. the run's resolved configuration never replaces a user's config file

def test_the_resolved_configuration_never_replaces_a_users_config(tmp_path):
    record = tmp_path / "results" / "exp" / "config.yaml"
    record.parent.mkdir(parents=True)
    mine = "# my experiment: lr halved\nrun_dir: results/exp\ncam: {lr: 0.05}\n"
    record.write_text(mine)
    config = _config(run_dir=str(record.parent))
    with pytest.raises(DataError, match=f"{record}: .*not written by wsss"):
        run_config.write(config, record)
    assert record.read_text() == mine
    fresh = tmp_path / "results" / "new" / "config.yaml"
    run_config.write(config, fresh)  # wsss's own record: written, and rewritten on the next start
    run_config.write({**config, "seed": 5}, fresh)
    assert yaml.safe_load(fresh.read_text())["seed"] == 5
    with pytest.raises(DataError, match=f"{fresh}: .*is a config file this run reads"):
        run_config.write(config, fresh, read=[str(fresh)])  # `--configfile results/new/config.yaml`


# 3. the sweep removes only wsss's own temporaries of what it writes

def _killed_while_writing(target: Path):
    """A process that dies (SIGKILL) inside io.atomic_path(target): what it leaves is wsss's stale temporary."""
    script = ("import sys, time; from wsss import io\n"
              "with io.atomic_path(sys.argv[1]) as tmp:\n"
              "    tmp.write_bytes(b'half'); print('in', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "in\n"
    proc.kill()
    proc.wait()
    left = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    assert len(left) == 1
    return left[0]


def test_the_sweep_removes_only_wsss_temporaries_of_the_output_it_writes(tmp_path):
    out = tmp_path / "predictions"  # a folder of the user's, as predict --out
    out.mkdir()
    holiday = out / ".holiday.tmp-2024"
    holiday.mkdir()
    (holiday / "beach.jpg").write_bytes(b"photo")
    (out / ".draft.tmp-31337").write_text("draft")
    lookalike = out / f".notes.txt.tmp-{socket.gethostname()}-{_dead_pid()}"  # looks like one, names no output
    lookalike.write_text("notes")
    stale = _killed_while_writing(out / "a.png")
    io.save_png(out / "a.png", np.zeros((2, 2), np.uint8))
    assert not stale.exists()  # the dead writer's temporary of a.png is gone
    assert (holiday / "beach.jpg").read_bytes() == b"photo"
    assert (out / ".draft.tmp-31337").read_text() == "draft" and lookalike.read_text() == "notes"


def test_generating_a_data_set_sweeps_nothing_beside_it(tmp_path, tiny_demo_params):
    data = tmp_path / "data"  # the root's parent: the user's folder
    thesis = data / f".thesis.tmp-{_dead_pid()}"
    thesis.mkdir(parents=True)
    (thesis / "chapter1.tex").write_text("text")
    demo_dataset.run({**tiny_demo_params, "n_train": 2, "n_val": 1}, root=data / "demo")
    assert (thesis / "chapter1.tex").read_text() == "text"


# 4. a folder is never replaced by a file

def test_a_folder_is_never_replaced_by_a_file(tmp_path):
    (tmp_path / "a.png" / "sub").mkdir(parents=True)
    (tmp_path / "a.png" / "sub" / "file.txt").write_text("mine")
    with pytest.raises(DataError, match=f"{tmp_path / 'a.png'}: is a folder"):
        io.save_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    assert (tmp_path / "a.png" / "sub" / "file.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# 5. the generator writes only into folders holding nothing but its own files

def test_demo_generator_refuses_a_marked_root_holding_a_users_file(tmp_path, tiny_demo_params):
    root = tmp_path / "demo"
    params = {**tiny_demo_params, "n_train": 2, "n_val": 1}
    demo_dataset.run(params, root=root)
    assert (root / synthetic.MARKER).is_file()
    holiday = root / "JPEGImages" / "my_holiday.jpg"
    holiday.write_bytes(b"precious")
    with pytest.raises(DataError, match=f"{root}: .*{holiday}"):
        demo_dataset.run(params, root=root)
    assert holiday.read_bytes() == b"precious"


# 7. the GPU lock folder

def test_gpu_lock_folder_is_named_by_the_uid_and_never_empty_or_relative(monkeypatch):
    import pwd

    monkeypatch.delenv("WSSS_GPU_LOCK_DIR", raising=False)
    for var in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(var, "x/../../probe/gpu/userdir")
    assert gpu_slots.lock_dir() == Path(f"/tmp/wsss-gpu-locks-{pwd.getpwuid(os.getuid()).pw_name}")
    for bad in ("", "relative/locks"):
        monkeypatch.setenv("WSSS_GPU_LOCK_DIR", bad)
        with pytest.raises(RuntimeError, match="WSSS_GPU_LOCK_DIR"):
            gpu_slots.lock_dir()


# 8. a stage dies with its job and publishes nothing once its job is gone

@pytest.mark.slow  # a stage in a subprocess: about 10 s
def test_a_stage_ends_when_its_job_ends_and_publishes_nothing(tiny_voc, tmp_path):
    root, names = tiny_voc
    owner = subprocess.Popen(["sleep", "300"])  # stands for the job's Snakemake
    params = dict(class_names=names, seed=0, device="cpu", split="train", backbone="small", pretrained=None,
                  crop=32, resize_long=[32, 48], batch_size=4, epochs=10000, lr=0.1, weight_decay=1e-4, num_workers=0,
                  checkpoint_every=1)
    out = tmp_path / "cam" / "model.pt"
    stage = subprocess.Popen([sys.executable, "-m", "wsss.cli", "train_cam", "--params", json.dumps(params),
                              "--root", str(root), "--out", str(out)],
                             env={**ENV, "WSSS_JOB_OWNER": str(owner.pid)}, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: Path(f"{out}.ckpt").exists(), 120)  # training
        owner.kill()
        owner.wait()
        stage.wait(timeout=15)  # on its own: nothing else ends it
    finally:
        stage.kill()
        owner.kill()
    assert stage.returncode != 0
    assert not out.exists()


def _wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_an_output_is_not_published_once_the_job_is_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "OWNERS", jobs.identities([_dead_pid()]))  # the job's Snakemake has ended
    with pytest.raises(DataError, match=f"{tmp_path / 'm.csv'}: not published"):
        io.save_csv(tmp_path / "m.csv", pd.DataFrame({"a": [1]}))
    assert list(tmp_path.iterdir()) == []


# 9. a 16-bit image keeps its pixels

def test_a_16_bit_png_is_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257], [1000, 65535]], np.uint16).repeat(8, 0).repeat(8, 1)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image = voc.load_image(tmp_path / "deep.png")
    assert image.shape == (16, 16, 3)
    np.testing.assert_array_equal(image[::8, ::8, 0], [[0, 1], [4, 255]])


# 10. settings that look valid but are not

@pytest.mark.parametrize("over, key", [
    ({"run_dir": "/."}, "run_dir"),
    ({"run_dir": "/.."}, "run_dir"),
    ({"run_dir": "//./"}, "run_dir"),
    ({"dataset.train_split": "mine+aug"}, "dataset.train_split"),
    ({"dataset.eval_split": "../../val"}, "dataset.eval_split"),
    ({"dataset.demo": False, "dataset.class_names": ["background", "cat", "dog", "cat"]}, "dataset.class_names"),
])
def test_settings_that_pass_the_schema_but_are_wrong_are_named(over, key):
    with pytest.raises(ConfigError, match=key.replace(".", "\\.")):
        config_checks.check(_config(**over))


def test_a_split_file_whose_name_holds_a_plus_is_not_read_as_two_splits(tiny_voc):
    root, _ = tiny_voc
    voc.path(root, "split", "mine+aug").write_text("train_00000\n")
    with pytest.raises(DataError, match="mine\\+aug.txt: .*'\\+'"):
        voc.read_ids(root, "mine+aug")


# 11. one line naming the file

def test_full_disk_while_checkpointing_names_the_checkpoint(tiny_voc, tmp_path, monkeypatch):
    from test_hardening import _seg_params

    from wsss.seg import train_seg
    root, names = tiny_voc

    class FullDisk:
        """A file on a disk that fills up after 1000 bytes (what the OS says then: ENOSPC)."""

        def __init__(self, file, mode="r", *args, **kwargs):
            self.f, self.written = open(file, mode, *args, **kwargs), 0

        def write(self, data):
            self.written += len(data)
            if self.written > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(io, "open", FullDisk, raising=False)
    out = tmp_path / "m.pt"
    with pytest.raises(DataError, match=f"^{out}.ckpt: no space left on device"):
        train_seg.run(_seg_params(names, iterations=2, checkpoint_every=1), root=root,
                      labels=root / "SegmentationClass", out=out)


@pytest.mark.slow  # a stage in a subprocess: about 10 s
def test_a_file_size_limit_while_checkpointing_is_one_line_naming_the_checkpoint(tiny_voc, tmp_path):
    root, names = tiny_voc
    params = dict(seed=0, device="cpu", class_names=names, split="train", arch="deeplab_v2", backbone="small",
                  pretrained=None, crop=48, batch_size=2, iterations=2, lr=0.01, weight_decay=0.0005,
                  checkpoint_every=1, num_workers=0)
    out = tmp_path / "m.pt"

    def limit():  # the OS refuses writes past 200 kB (EFBIG), as a full disk would (ENOSPC)
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    done = subprocess.run([sys.executable, "-m", "wsss.cli", "train_seg", "--params", json.dumps(params), "--root",
                           str(root), "--labels", str(root / "SegmentationClass"), "--out", str(out)], env=ENV,
                          preexec_fn=limit, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == f"wsss train_seg: error: {out}.ckpt: cannot write it: File too large"
    assert not out.exists()


def _png_header_claiming(file: Path, width: int, height: int):
    """A PNG whose header says width x height (its pixel data is a 1x1 image's)."""
    Image.new("RGB", (1, 1)).save(file, format="PNG")
    data = bytearray(file.read_bytes())
    ihdr = struct.pack(">II", width, height) + data[24:29]
    data[16:33] = ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("width, height", [(60000, 60000), (10000, 10000)])
def test_a_huge_image_is_refused_by_its_header_naming_the_file(tmp_path, width, height):
    file = tmp_path / "huge.png"
    _png_header_claiming(file, width, height)
    with pytest.raises(DataError, match=f"^{file}: image is {width}x{height} pixels"):
        voc.load_image(file)


def test_validate_data_lists_a_decompression_bomb_with_the_other_problems(tiny_voc, tmp_path):
    root, names = tiny_voc
    bomb = voc.path(root, "image", "train_00001")
    _png_header_claiming(bomb, 60000, 60000)
    voc.path(root, "image", "val_00002").write_bytes(b"not a jpeg")
    params = {"splits": ["train", "val"], "class_names": names, "tags_from": "masks"}
    with pytest.raises(DataError, match=f"^{bomb}: image is 60000x60000 pixels.*\\(and 1 more problems"):
        validate_data.run(params, root=root, out=tmp_path / "report.txt")


@pytest.mark.parametrize("over, key", [
    ({"dataset.root": ""}, "dataset.root"),
    ({"dataset.root": "data/{demo}"}, "dataset.root"),
    ({"run_dir": "res{x}"}, "run_dir"),
])
def test_paths_snakemake_cannot_use_are_named(over, key):
    with pytest.raises(ConfigError, match=f"^{key}"):
        config_checks.check(_config(**over))


def test_a_run_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "results").write_text("a file")
    with pytest.raises(ConfigError, match="^run_dir: .* is a file"):
        config_checks.check(_config(run_dir=str(tmp_path / "results")))


def test_a_typo_in_a_key_is_a_short_message_with_a_suggestion():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["cam"]["epoch"] = 3
    with pytest.raises(ConfigError) as caught:
        config_checks.validate(config, SCHEMA)
    message = str(caught.value)
    assert message.startswith("cam.epoch: unknown key") and "did you mean 'epochs'" in message
    assert len(message.splitlines()) == 1 and len(message) < 300
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["cam"]["epochs"] = "many"
    with pytest.raises(ConfigError, match="^cam.epochs: 'many' is not of type 'integer'$"):
        config_checks.validate(config, SCHEMA)
