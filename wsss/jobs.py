"""What the workflow's own process does for its jobs: SIGTERM to Snakemake ends the running stages.

Snakemake answers SIGTERM by waiting for the running jobs to finish ("Will exit after finishing currently
running jobs"), which for a trainer can be hours, and a job whose Snakemake is gone runs on unwatched.
`stop_on_sigterm()` (the Snakefile's `onstart`) chains a handler in front of Snakemake's: it sends SIGTERM
to every process below Snakemake (the jobs' shells and the stages they run, DDP workers included), so the
jobs fail at once, Snakemake marks their outputs incomplete and exits; the temporaries the stages leave are
swept by the next run (wsss.io.remove_stale)."""
import os
import signal
from pathlib import Path


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
