"""The GPU slot allocator with fake device ids: distinct GPUs per job, released on crash."""
import os
import subprocess
import sys
import textwrap

import pytest

from wsss import gpu_slots

HOLD = textwrap.dedent("""
    import os, sys, time
    from wsss import gpu_slots
    held = gpu_slots.acquire(int(sys.argv[1]), poll_seconds=0.05)
    print(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), flush=True)
    if sys.argv[2] == "crash":
        os._exit(3)
    time.sleep(float(sys.argv[2]))
""")


@pytest.fixture
def fake_gpus(tmp_path):
    env = {**os.environ, "WSSS_GPU_IDS": "0,1,2", "WSSS_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("SLURM_JOB_ID", None)
    return env


def job(env, n, hold):
    return subprocess.Popen([sys.executable, "-c", HOLD, str(n), str(hold)], env=env, stdout=subprocess.PIPE, text=True)


def test_concurrent_jobs_get_distinct_gpus(fake_gpus):
    jobs = [job(fake_gpus, 1, 1.5) for _ in range(3)]
    devices = [j.stdout.readline().strip() for j in jobs]
    for j in jobs:
        j.wait()
    assert sorted(devices) == ["0", "1", "2"]


def test_a_job_waits_for_a_free_gpu_and_a_crash_releases_it(fake_gpus):
    holder = job(fake_gpus, 3, 1.0)
    assert holder.stdout.readline().strip() == "0,1,2"
    waiter = job(fake_gpus, 2, 0)
    assert waiter.stdout.readline().strip() == "0,1"  # only after the holder exits
    holder.wait(), waiter.wait()
    crasher = job(fake_gpus, 3, "crash")
    assert crasher.stdout.readline().strip() == "0,1,2"
    assert crasher.wait() == 3
    after = job(fake_gpus, 3, 0)
    assert after.stdout.readline().strip() == "0,1,2"
    after.wait()


def test_noop_without_gpus_or_inside_slurm(fake_gpus, monkeypatch):
    monkeypatch.setenv("WSSS_GPU_IDS", "")
    assert gpu_slots.acquire(1) == []
    monkeypatch.setenv("WSSS_GPU_IDS", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    assert gpu_slots.acquire(1) == [] and os.environ["CUDA_VISIBLE_DEVICES"] == "7"


def test_asking_for_more_gpus_than_visible_is_an_error(fake_gpus, monkeypatch):
    monkeypatch.setenv("WSSS_GPU_IDS", "0,1")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(RuntimeError, match="needs 3 GPUs"):
        gpu_slots.acquire(3)
