"""The workflow on a real SLURM: the repo's profile (workflow/profiles/slurm) with `--executor slurm`.

Starts a one-node SLURM with fake GPUs (tests/slurm/start.sh: munged, slurmctld, slurmd inside a
network namespace that has only loopback), runs the CAM slice of the tiny demo DAG (demo_dataset ->
train_cam -> make_cam -> eval_cam) through it (the cheap rule eval_cam runs locally; one shard: no
gather_shards job), and checks the outputs equal a local run's: the metrics
and sweep CSVs byte for byte, every CAM array exactly. Every daemon is stopped afterwards
(tests/slurm/stop.sh), also when the test fails.

Needs root and Debian's slurm-wlm / munge packages; installs them with apt-get when missing and skips
only where they cannot be installed (no root, no package mirror). About 3-4 minutes on 2 cores."""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_workflow import REPO, SNAKEMAKE, TINY, _env

SLURM_DIR = Path(__file__).resolve().parent / "slurm"
PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge", "iproute2"]
TOOLS = ["slurmctld", "slurmd", "sbatch", "munged", "ip"]
TARGET = f"{TINY['run_dir']}/metrics/eval_cam.csv"  # the slice: demo_dataset .. eval_cam

pytestmark = pytest.mark.slow


def _install_packages():
    """apt-get installs the SLURM packages, or returns why it could not (then the test skips)."""
    if all(shutil.which(t) for t in TOOLS):
        return None
    if os.geteuid() != 0:
        return "not root, cannot apt-get install " + " ".join(PACKAGES)
    if not shutil.which("apt-get"):
        return "no apt-get to install " + " ".join(PACKAGES)
    # policy-rc.d: the packages' postinst must not start system daemons that listen on all addresses
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "--no-install-recommends",
               *PACKAGES]
    try:
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=420)
        if result.returncode != 0:  # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-q"], capture_output=True,
                           env=env, timeout=300)
            result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=420)
    except subprocess.TimeoutExpired:
        return "apt-get install " + " ".join(PACKAGES) + " timed out"
    finally:
        if made_policy:
            policy.unlink()
    if result.returncode != 0:
        return "apt-get install " + " ".join(PACKAGES) + " failed:\n" + (result.stderr or result.stdout)[-2000:]
    missing = [t for t in TOOLS if not shutil.which(t)]
    return f"installed, but {missing} still not on PATH" if missing else None


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running one-node test cluster: yields the command prefix that enters it (STATE/exec)."""
    why = _install_packages()
    if why:
        pytest.skip(f"SLURM packages cannot be installed: {why}")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'")
    state = tmp_path_factory.mktemp("slurm")
    try:
        start = subprocess.run(["bash", str(SLURM_DIR / "start.sh"), str(state), "4"], capture_output=True,
                               text=True, timeout=120)
        assert start.returncode == 0, f"start.sh failed:\n{start.stdout}\n{start.stderr}"
        yield [str(state / "exec")]
    finally:
        stop = subprocess.run(["bash", str(SLURM_DIR / "stop.sh"), str(state)], capture_output=True, text=True,
                              timeout=120)
        assert stop.returncode == 0, f"stop.sh failed:\n{stop.stdout}\n{stop.stderr}"


def test_profile_sends_every_gpu_rule_to_a_gpu_partition(tmp_path):
    """Each rule of the demo DAG that declares `gpu` has a set-resources entry (partition, gpu) in the
    profile; no global `gpu` cap (it would serialise the GPU jobs)."""
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert "gpu" not in str(profile.get("resources", ""))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    dry = subprocess.run([*SNAKEMAKE, "--directory", str(tmp_path), "--cores", "1", "--dry-run", "--forceall"],
                         capture_output=True, text=True, env=_env())
    assert dry.returncode == 0, dry.stderr[-3000:]
    gpu_rules = set(re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: .*\bgpu=[1-9]", dry.stdout, re.M))
    assert {"train_cam", "make_cam"} <= gpu_rules
    for rule in gpu_rules:
        settings = profile["set-resources"].get(rule, {})
        assert settings.get("gpu", 0) >= 1 and settings.get("slurm_partition"), f"profile: set-resources {rule}"


def _test_profile(tmp_path: Path) -> Path:
    """The repo's profile with the cluster-specific values (EDIT lines) set for the test cluster:
    partitions cpu / gpu, no account, jobs sized to a 2-CPU node; squeue for status (no accounting)
    and short polling intervals."""
    profile = yaml.safe_load(PROFILE.read_text())
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        resources.pop("slurm_account", None)
        if "slurm_partition" in resources:
            resources["slurm_partition"] = "gpu" if resources.get("gpu") else "cpu"
        resources.update(mem_mb=500, cpus_per_task=1, runtime=15)
    profile.update({
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "seconds-between-status-checks": 2,
        "latency-wait": 10,
    })
    folder = tmp_path / "profile"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def _snakemake(prefix: list[str], workdir: Path, *args) -> subprocess.Popen:
    """Starts Snakemake on the slice in `workdir`; its output goes to `workdir`.log."""
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    # one torch thread in both runs: same arithmetic, and 2 shared cores
    env = {**_env(), "OMP_NUM_THREADS": "1"}
    with open(f"{workdir}.log", "w") as log:
        return subprocess.Popen([*prefix, *SNAKEMAKE, "--directory", str(workdir), *args, TARGET],
                                stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait(run: subprocess.Popen, workdir: Path, timeout: float) -> str:
    try:
        run.wait(timeout=timeout)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    return Path(f"{workdir}.log").read_text()


def _compare(local: Path, remote: Path):
    run = TINY["run_dir"]
    for csv in ("metrics/eval_cam.csv", "cam/threshold_sweep.csv"):
        assert (remote / run / csv).read_bytes() == (local / run / csv).read_bytes(), csv
    maps = sorted(p.name for p in (local / run / "cam" / "maps").glob("*.npz"))
    assert maps and maps == sorted(p.name for p in (remote / run / "cam" / "maps").glob("*.npz"))
    for name in maps:
        with np.load(local / run / "cam" / "maps" / name) as a, np.load(remote / run / "cam" / "maps" / name) as b:
            assert sorted(a.files) == sorted(b.files), name
            for key in a.files:
                assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), f"{name}:{key}"


def test_cam_slice_on_slurm_equals_local(slurm_cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    t0 = time.monotonic()
    # both at once: the SLURM run mostly waits between status checks
    local_run = _snakemake([], local, "--cores", "1")
    try:
        slurm_run = _snakemake(slurm_cluster, remote, "--profile", str(_test_profile(tmp_path)))
        log = _wait(slurm_run, remote, timeout=420)
        t1 = time.monotonic()
    finally:
        local_log = _wait(local_run, local, timeout=300)
    assert local_run.returncode == 0, local_log[-5000:]
    assert slurm_run.returncode == 0, log[-8000:] + "".join(
        f"\n--- {p}\n{p.read_text()[-3000:]}" for p in (remote / ".snakemake" / "slurm_logs").rglob("*.log"))
    print(f"SLURM run {t1 - t0:.0f} s", file=sys.stderr)

    # the cheap rules (`localrule: True`) ran in Snakemake's process, every other job went through sbatch;
    # the GPU rules to the gpu partition with --gpus=1
    local_jobs = re.findall(r"^localrule (\w+):", log, re.M)
    assert sorted(local_jobs) == ["eval_cam"], local_jobs
    n_jobs = int(re.findall(r"(\d+) of \1 steps \(100%\) done", log)[-1]) - len(local_jobs)
    gpu_rules = {rule for rule, res in yaml.safe_load(PROFILE.read_text())["set-resources"].items() if res.get("gpu")}
    jobs = subprocess.run([*slurm_cluster, "scontrol", "show", "job", "--oneliner"], capture_output=True,
                          text=True, check=True).stdout.splitlines()
    assert len(jobs) == n_jobs, jobs
    seen = set()
    for line in jobs:
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        rule = re.fullmatch(r"rule_(\w+?)(_wildcards_.*)?", fields["Comment"]).group(1)
        seen.add(rule)
        assert fields["JobState"] == "COMPLETED", line
        assert fields["Partition"] == ("gpu" if rule in gpu_rules else "cpu"), line
        assert (fields.get("TresPerJob") == "gres:gpu:1") == (rule in gpu_rules), line
    assert seen == {"demo_dataset", "validate_data", "train_cam", "make_cam"}, seen

    _compare(local, remote)
