"""What a job's log holds: a header (command, params, commit, versions, device) and readable progress.

`wsss.cli` runs a stage inside `job(stage, argv, params)`: it prints the header to stderr (the
rule's log) and, when stderr is not a terminal, turns tqdm's carriage-return redraws into plain lines
(a log is read with less/tail, not redrawn); wsss/__init__.py has already made tqdm redraw at most
every 10 s there (TQDM_MININTERVAL, read when tqdm is imported)."""
import contextlib
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def job(stage: str, argv: list[str], params: dict):
    stderr = sys.stderr
    if not stderr.isatty():
        sys.stderr = LineStream(stderr)
    print(header(stage, argv, params), file=sys.stderr, flush=True)
    try:
        yield
    finally:
        sys.stderr = stderr


def header(stage: str, argv: list[str], params: dict) -> str:
    lines = [
        f"== wsss {stage}: {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node()}",
        "command: " + shlex.join([sys.executable, "-m", "wsss.cli", *argv]),
        "params: " + json.dumps(params, sort_keys=True),
        f"commit: {git_commit()}",
        "versions: " + ", ".join(f"{name} {_version(name)}" for name in ("torch", "numba", "numpy")) +
        f", python {platform.python_version()}",
        f"device: {device_summary(params.get('device', 'auto'))}",
        f"kernels: {kernel_backends(params.get('device', 'auto'))}",
        f"threads: {thread_summary()}",
        "==",
    ]
    return "\n".join(lines)


def git_commit() -> str:
    """The checkout's commit, `+changes` when tracked files differ from it; "unknown" outside git."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + (" +changes" if dirty else "")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def device_summary(preference: str) -> str:
    """The requested device, the CUDA build and the GPUs this job sees."""
    import torch  # after wsss.gpu_slots has set CUDA_VISIBLE_DEVICES
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    if not torch.cuda.is_available():
        return f"{preference}; CUDA build {torch.version.cuda}, no GPU visible (CUDA_VISIBLE_DEVICES={visible})"
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return f"{preference}; CUDA {torch.version.cuda}, GPUs {names} (CUDA_VISIBLE_DEVICES={visible})"


def kernel_backends(preference: str, on_gpu: bool | None = None) -> str:
    """The backend the kernels (kernels/: line_max_affinity, random_walk, region_grow, neighborhood_aggregate)
    run on this job's device, as kernels._backend.pick chooses it, and why when a GPU job falls back to torch."""
    import torch
    from kernels import _backend
    if on_gpu is None:
        on_gpu = preference != "cpu" and torch.cuda.is_available()
    probe = types.SimpleNamespace(is_cuda=on_gpu)  # what pick reads of a tensor
    forced = os.environ.get("WSSS_KERNEL_BACKEND")
    choice = _backend.pick(probe)
    names = {"cuda": "numba.cuda kernels", "numba": "numba CPU kernels", "torch": "torch"}
    line = f"{names[choice]} on the {'GPU' if on_gpu else 'CPU'}" + (" (WSSS_KERNEL_BACKEND)" if forced else "")
    if on_gpu and choice == "torch" and not forced:
        line += (f"; numba cannot compile CUDA kernels ({_backend.numba_cuda_problem()}): install the [cuda] extra "
                 "(make env CUDA=1, or pip install -e '.[cuda]')")
    return line
def thread_summary() -> str:
    """The CPU threads torch and numba compute on (wsss.runtime.use_threads set both to the job's)."""
    import numba
    import torch
    return f"{torch.get_num_threads()} (torch), {numba.get_num_threads()} (numba)"


class LineStream:
    """A text stream that writes each of tqdm's carriage-return redraws as a line of its own."""

    def __init__(self, stream):
        self.stream, self.after_bar = stream, False

    def write(self, text: str) -> int:
        if "\r" not in text:
            if text == "\n" and self.after_bar:  # the newline tqdm ends a closed bar with: already written
                text = ""
            self.after_bar = False
            self.stream.write(text)
            return len(text)
        lines = [part.rstrip() for part in text.split("\r") if part.strip()]  # tqdm.write's clear is blank
        self.after_bar = self.after_bar or bool(lines)
        self.stream.write("".join(line + "\n" for line in lines))
        return len(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)
