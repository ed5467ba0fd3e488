"""Issues 11 and 25 at the workflow level, on a copy of the tiny set (dataset.demo false): a bad setting stops the
run at start naming its key (a typo in one line), the run never replaces the config file it reads, validate_data
runs before the first training and evaluation job and its error shows on the console, and SIGTERM to Snakemake,
a kill -9 of Snakemake or of the job's shell ends the running stage."""
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
pytestmark = pytest.mark.slow  # small Snakemake runs: 5 min on the shared 2 cores at load ~23 (2026-12-07)
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


# issue 25 item 8: a stage dies with its job, so an orphan never overwrites a newer run's output

def _train_cam_running(folder, config):
    """Snakemake running train_cam for ever (epochs 10000), its console in files (an orphan would hold a pipe
    open), and the stage's process id."""
    config["cam"]["epochs"] = 10000
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with open(folder / "console.txt", "w") as console:
        proc = subprocess.Popen([*SNAKEMAKE, "--directory", str(folder), CAM_MODEL], env=env, stdout=console,
                                stderr=subprocess.STDOUT)
    return proc, _wait_for_stage(proc.pid, "train_cam", timeout=120)


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return True
        time.sleep(0.2)
    return False


def _kill(pid: int):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_killing_snakemake_ends_the_running_stage(workdir):
    folder, _, config = workdir
    proc, stage = _train_cam_running(folder, config)
    try:
        proc.kill()  # kill -9: no handler of Snakemake's runs
        proc.wait(timeout=60)
        assert _gone(stage, timeout=15), "the stage outlived its Snakemake"
    finally:
        _kill(stage)
    assert not (folder / CAM_MODEL).exists()
    assert _snakemake(folder, config, "--unlock").returncode == 0
    rerun = _snakemake(folder, {**config, "cam": CONFIG["cam"]}, "--dry-run", CAM_MODEL)
    assert "train_cam" in rerun.stdout


def test_killing_the_jobs_shell_ends_the_stage(workdir):
    folder, _, config = workdir
    proc, stage = _train_cam_running(folder, config)
    shell = int(Path(f"/proc/{stage}/stat").read_text().rsplit(")", 1)[1].split()[1])
    try:
        _kill(shell)
        assert _gone(stage, timeout=5), "the stage outlived its job's shell"
        proc.wait(timeout=120)
    finally:
        jobs.terminate_descendants(proc.pid, signal.SIGKILL)
        proc.kill()
        _kill(stage)
    assert proc.returncode != 0 and "Error in rule train_cam" in (folder / "console.txt").read_text()
    assert not (folder / CAM_MODEL).exists()


# issue 25 items 2 and 11: config errors are short and come before any job

def test_a_typo_in_a_key_is_a_short_message_at_start(workdir):
    folder, _, config = workdir
    config["cam"]["epoch"] = 3
    result = _snakemake(folder, config, "--dry-run", CAM_MODEL)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "cam.epoch: unknown key (did you mean 'epochs'?)" in text
    assert len(text.strip().splitlines()) < 10, text


def test_the_run_never_replaces_the_config_file_it_reads(workdir):
    folder, _, config = workdir
    mine = folder / config["run_dir"] / "config.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("# my settings\n" + yaml.safe_dump(config))
    result = _snakemake(folder, config, CAM_MODEL, "--configfile", str(mine))
    assert result.returncode != 0
    assert f"{config['run_dir']}/config.yaml: " in result.stdout + result.stderr
    assert mine.read_text().startswith("# my settings\n")
    assert not (folder / CAM_MODEL).exists() and not (folder / config["run_dir"] / "logs").exists()
