"""A job's stage lives and writes only while its job does; SIGTERM to Snakemake ends the running stages.

Ownership (issue 25 item 8). A Snakemake killed with SIGKILL, or a job's shell killed alone, used to leave the
stage running: it went on to overwrite the output of a newer run. The job's shell exports WSSS_JOB_OWNER=$PPID
(its Snakemake; the Snakefile's shell prefix) and the CLI calls `adopt()` before the stage runs: the stage then
belongs to that Snakemake and to its shell (its parent), recorded as `pid:start time` in WSSS_JOB_OWNER for the
processes it starts (DDP ranks). It dies with its shell (parent-death signal), a watcher thread kills it and
its children within a second of either's end, and `check_owner` (wsss.io, before every rename) refuses to
publish an output once either has ended. A stage run by hand (no WSSS_JOB_OWNER) is nobody's: none of this.

SIGTERM. Snakemake answers SIGTERM by waiting for the running jobs to finish ("Will exit after finishing currently
running jobs"), which for a trainer can be hours, and a job whose Snakemake is gone runs on unwatched.
`stop_on_sigterm()` (the Snakefile's `onstart`) chains a handler in front of Snakemake's: it sends SIGTERM
to every process below Snakemake (the jobs' shells and the stages they run, DDP workers included), so the
jobs fail at once, Snakemake marks their outputs incomplete and exits; the temporaries the stages leave are
removed when the next run writes those outputs (wsss.io.remove_stale)."""
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

from wsss.errors import DataError

OWNER = "WSSS_JOB_OWNER"
PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/<pid>/stat field 22): with the pid, an identity
    that a reused pid does not share. None for a process that has ended (or is a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def identities(pids) -> list[tuple[int, int | None]]:
    return [(pid, start_time(pid)) for pid in dict.fromkeys(pids)]


def _inherited() -> list:
    """The owners a process started by an adopted stage inherits (`pid:start,...`); [] otherwise."""
    value = os.environ.get(OWNER, "")
    if ":" not in value:
        return []
    return [(int(pid), int(start)) for pid, start in (item.split(":") for item in value.split(","))]


OWNERS = _inherited()  # [(pid, start time)] of the processes whose end ends this job


def owned() -> bool:
    """True while every owner runs (always, for a stage nobody owns)."""
    return all(start is not None and start_time(pid) == start for pid, start in OWNERS)


def check_owner(path):
    """DataError unless this job still owns its outputs (called before `path` replaces what is there)."""
    if not owned():
        raise DataError(f"{path}: not published: the job that made it has ended (its Snakemake or its shell is "
                        "gone), so a newer run may own this output")


def die_with_parent():
    """SIGKILL this process as soon as the thread that started it ends (Linux prctl; elsewhere nothing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def adopt():
    """Makes this stage process its job's (module docstring); nothing outside the workflow."""
    global OWNERS
    value = os.environ.get(OWNER, "")
    if not value.isdigit() or start_time(os.getpid()) is None:  # no /proc (not Linux): nothing to watch by
        return
    snakemake, shell = int(value), os.getppid()
    owners = identities([snakemake, shell])
    if any(start is None for _, start in owners):  # Snakemake outside this pid namespace (a container): unseen
        return
    OWNERS = owners
    os.environ[OWNER] = ",".join(f"{pid}:{start}" for pid, start in OWNERS)
    if shell != snakemake:  # a parent-death signal follows the forking thread: only a one-thread shell's
        die_with_parent()  # without prctl the watcher below still ends the stage
    if not owned() or os.getppid() != shell:
        _end()
    threading.Thread(target=_watch, name="wsss-job-owner", daemon=True).start()


def _watch(seconds: float = 1.0):
    while owned():
        time.sleep(seconds)
    _end()


def _end():
    """Ends this stage and everything it started, at once (SIGKILL: no output can be published after it)."""
    print(f"wsss: this job's Snakemake or shell has ended ({OWNER}={os.environ.get(OWNER)}): stopping the stage",
          file=sys.stderr, flush=True)
    terminate_descendants(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def stop_on_sigterm():
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        terminate_descendants(os.getpid())
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def terminate_descendants(pid: int, sig=signal.SIGTERM) -> list[int]:
    """Sends `sig` to every process below `pid` (read from /proc; nothing elsewhere) and returns their ids."""
    found = descendants(pid)
    for child in found:
        try:
            os.kill(child, sig)
        except ProcessLookupError:
            pass
    return found


def descendants(pid: int) -> list[int]:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
