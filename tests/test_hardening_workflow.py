"""Issue 11 at the workflow level, on a copy of the tiny set (dataset.demo false): a bad setting stops the run at
start naming its key, validate_data runs before the first training and evaluation job and its error shows on the
console, and SIGTERM to Snakemake ends the running stage."""
import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from wsss import jobs
from wsss.datasets import voc

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # three small Snakemake runs: about 20 s
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--cores", "2"]
CONFIG = {
    "run_dir": "results/tiny", "seed": 0, "device": "cpu",
    "dataset": {"demo": False, "train_split": "train", "label_split": "train",
                "class_names": ["background", "disc", "square", "triangle", "ring", "cross"]},
    "model": {"backbone": "small", "pretrained": None},
    "seg": {"backbone": "small"},
    "cam": {"crop": 64, "resize_long": [48, 80], "batch_size": 4, "epochs": 1, "scales": [1.0]},
}
CAM_MODEL = "results/tiny/cam/model.pt"


@pytest.fixture
def workdir(tiny_voc, tmp_path):
    root, _ = tiny_voc
    config = copy.deepcopy(CONFIG)
    config["dataset"]["root"] = str(root)
    return tmp_path, root, config


def _popen(workdir: Path, config: dict, *args) -> subprocess.Popen:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([*SNAKEMAKE, "--directory", str(workdir), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _snakemake(workdir: Path, config: dict, *args) -> subprocess.CompletedProcess:
    proc = _popen(workdir, config, *args)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_contradicting_settings_stop_the_workflow_at_start(workdir):
    folder, _, config = workdir
    config["cam"]["resize_long"] = [80, 48]
    result = _snakemake(folder, config, "--dry-run", CAM_MODEL)
    assert result.returncode != 0
    assert "cam.resize_long: the lower end 80 is above the upper end 48" in result.stderr + result.stdout


def test_bad_data_stop_the_run_before_training_with_the_error_on_the_console(workdir):
    folder, root, config = workdir
    planned = _snakemake(folder, config, "--dry-run", f"{config['run_dir']}/metrics/eval_cam.csv")
    assert "validate_data" in planned.stdout
    mask = voc.path(root, "mask", "val_00001")
    Image.open(mask).crop((0, 0, 32, 32)).save(mask)
    result = _snakemake(folder, config, CAM_MODEL)
    assert result.returncode != 0
    # the job's own output goes to its log; the CLI repeats the error line on Snakemake's console
    assert f"wsss validate_data: error: {mask}: label PNG is 32x32 (HxW) but its image is 64x64" in result.stderr
    assert "rule train_cam" not in result.stdout + result.stderr  # never started
    assert not (folder / CAM_MODEL).exists()


def test_sigterm_to_snakemake_ends_the_running_stage(workdir):
    folder, _, config = workdir
    config["cam"]["epochs"] = 10000  # runs until stopped
    proc = _popen(folder, config, CAM_MODEL)
    try:
        stage = _wait_for_stage(proc.pid, "train_cam", timeout=120)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)  # Snakemake alone would wait for the job to finish
    finally:  # whatever happened, leave no process behind
        jobs.terminate_descendants(proc.pid, signal.SIGKILL)
        proc.kill()
    assert proc.returncode != 0
    assert not Path(f"/proc/{stage}").exists() or _zombie(stage)
    assert not (folder / CAM_MODEL).exists()
    rerun = _snakemake(folder, {**config, "cam": CONFIG["cam"]}, "--dry-run", CAM_MODEL)
    assert "train_cam" in rerun.stdout  # planned again, not taken as done


def _wait_for_stage(pid: int, stage: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in jobs.descendants(pid):
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if command[:4] == [sys.executable.encode(), b"-m", b"wsss.cli", stage.encode()]:
                time.sleep(3)  # well into its work
                return child
        time.sleep(0.2)
    raise AssertionError(f"{stage} did not start within {timeout} s")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
