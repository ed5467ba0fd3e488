"""One GPU per job on a shared machine.

`snakemake --resources gpu=4` only caps how many GPU jobs run at once; it never tells a job which GPU
to use. `acquire(n)` takes n free slots (one file lock per visible GPU, held by this process, so a
crashed job releases its GPUs with its last file descriptor) and sets CUDA_VISIBLE_DEVICES to them.
It does nothing inside a SLURM allocation (SLURM sets the variable itself) or where no GPU is visible.

The GPU ids come from WSSS_GPU_IDS (comma-separated; tests use fake ids), else from
CUDA_VISIBLE_DEVICES, else from `nvidia-smi -L`. Locks live in WSSS_GPU_LOCK_DIR (default
/tmp/wsss-gpu-locks-<user>), shared by every job of every run on the machine."""
import fcntl
import getpass
import os
import subprocess
import time
from pathlib import Path


def visible_gpus() -> list[str]:
    for var in ("WSSS_GPU_IDS", "CUDA_VISIBLE_DEVICES"):
        if var in os.environ:
            return [g.strip() for g in os.environ[var].split(",") if g.strip()]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def lock_dir() -> Path:
    return Path(os.environ.get("WSSS_GPU_LOCK_DIR", f"/tmp/wsss-gpu-locks-{getpass.getuser()}"))


def acquire(n: int, poll_seconds: float = 1.0) -> list:
    """Blocks until `n` GPUs are free, sets CUDA_VISIBLE_DEVICES and returns the held lock files
    (keep them referenced for the life of the job; closing them releases the GPUs)."""
    gpus = visible_gpus()
    if n <= 0 or "SLURM_JOB_ID" in os.environ or not gpus:
        return []
    if n > len(gpus):
        raise RuntimeError(f"job needs {n} GPUs but only {len(gpus)} are visible: {gpus}")
    lock_dir().mkdir(parents=True, exist_ok=True)
    while True:
        held = []
        for gpu in gpus:
            f = open(lock_dir() / f"gpu-{gpu}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            held.append((gpu, f))
            if len(held) == n:
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(g for g, _ in held)
                return [f for _, f in held]
        for _, f in held:  # not enough free: give back what we took so two jobs cannot deadlock
            f.close()
        time.sleep(poll_seconds)
