"""One GPU per job on a shared machine.

`snakemake --resources gpu=4` only caps how many GPU jobs run at once; it never tells a job which GPU
to use. `acquire(n)` takes n free slots (one file lock per visible GPU, held by this process, so a
crashed job releases its GPUs with its last file descriptor) and sets CUDA_VISIBLE_DEVICES to them.
It does nothing inside a SLURM allocation (SLURM sets the variable itself) or where no GPU is visible.

The GPU ids come from WSSS_GPU_IDS (comma-separated; tests use fake ids), else from
CUDA_VISIBLE_DEVICES, else from `nvidia-smi -L`. Locks live in WSSS_GPU_LOCK_DIR (an absolute path; default
/tmp/wsss-gpu-locks-<user>, the name of the process's uid in the password database, never $USER, which any
shell can set to `../..`), shared by every job of every run of the user on the machine. The folder
must be the user's own, not writable by others and not a link (another user could otherwise hold the locks
or plant links); it is created 0700, and lock files are opened without following links or truncating.
A job that waits longer than WSSS_GPU_WAIT_WARN seconds (default 600) says so in its log, once;
WSSS_GPU_TIMEOUT (seconds, default: none) makes it give up with an error."""
import fcntl
import os
import pwd
import stat
import subprocess
import sys
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
    # not $XDG_RUNTIME_DIR: a shell without it (cron, some ssh) would lock in another folder, the same GPUs
    folder = os.environ.get("WSSS_GPU_LOCK_DIR")
    if folder is None:
        return Path(f"/tmp/wsss-gpu-locks-{_user()}")
    if not os.path.isabs(folder):  # empty or relative: each job's working directory would hold other locks
        raise RuntimeError(f"WSSS_GPU_LOCK_DIR={folder!r}: must be an absolute folder path (unset: "
                           f"/tmp/wsss-gpu-locks-{_user()})")
    return Path(folder)


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without an entry (containers)
        return str(os.getuid())


def private_dir(folder: Path) -> Path:
    """Creates `folder` mode 0700, or checks an existing one is a real folder of this user that nobody
    else can write to; RuntimeError naming it otherwise."""
    try:
        folder.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeError(f"{folder}: GPU lock folder is not a folder (a link?); remove it or set WSSS_GPU_LOCK_DIR")
    if info.st_uid != os.getuid():
        raise RuntimeError(f"{folder}: GPU lock folder belongs to user id {info.st_uid}, not to you; "
                           "remove it or set WSSS_GPU_LOCK_DIR to a folder of your own")
    if info.st_mode & 0o022:
        raise RuntimeError(f"{folder}: GPU lock folder is writable by others (mode {oct(info.st_mode & 0o777)}); "
                           "chmod 700 it")
    return folder


def _open_lock(file: Path) -> int:
    """The lock file's descriptor: created 0600 if missing, never truncated, never through a link."""
    return os.open(file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def acquire(n: int, poll_seconds: float = 1.0) -> list:
    """Blocks until `n` GPUs are free, sets CUDA_VISIBLE_DEVICES and returns the held lock descriptors
    (keep them for the life of the job; closing them releases the GPUs)."""
    gpus = visible_gpus()
    if n <= 0 or "SLURM_JOB_ID" in os.environ or not gpus:
        return []
    if n > len(gpus):
        raise RuntimeError(f"job needs {n} GPUs but only {len(gpus)} are visible: {gpus}")
    folder = private_dir(lock_dir())
    warn_after = float(os.environ.get("WSSS_GPU_WAIT_WARN", 600))
    timeout = float(os.environ["WSSS_GPU_TIMEOUT"]) if os.environ.get("WSSS_GPU_TIMEOUT") else None
    started, warned = time.monotonic(), False
    while True:
        held = _try_take(folder, gpus, n)
        if held:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(g for g, _ in held)
            return [fd for _, fd in held]
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise RuntimeError(f"no {n} free GPUs of {gpus} after {waited:.0f} s (WSSS_GPU_TIMEOUT); their locks "
                               f"are in {folder}")
        if not warned and waited >= warn_after:
            print(f"wsss: waiting {waited:.0f} s for {n} free GPUs of {gpus}; other jobs hold the locks in "
                  f"{folder} (`fuser {folder}/*` shows them); WSSS_GPU_TIMEOUT sets a limit", file=sys.stderr,
                  flush=True)
            warned = True
        time.sleep(poll_seconds)


def _try_take(folder: Path, gpus: list, n: int) -> list:
    """[(gpu, descriptor)] of n GPUs whose locks this process now holds, or [] (holding none)."""
    held = []
    for gpu in gpus:
        fd = _open_lock(folder / f"gpu-{gpu}.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held.append((gpu, fd))
        if len(held) == n:
            return held
    for _, fd in held:  # not enough free: give back what we took so two jobs cannot deadlock
        os.close(fd)
    return []
