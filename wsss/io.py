"""Atomic file output: everything is written under a temporary name and renamed when complete, so a
killed stage never leaves a file (or folder) that looks finished.

The temporary of `<folder>/<name>` is `<folder>/.<name>.wsss.tmp-<host>-<pid>`. Before wsss writes `<name>`
it removes the temporaries of `<name>` that dead processes of this host left (a killed job's half-written
CAM folder can be GBs) and nothing else: an entry whose name wsss would not give a temporary of the very
output it is writing is never touched, whatever it looks like (a user's `.holiday.tmp-2024/` beside predict's
outputs). Before the rename, a stage the workflow runs checks that its job still owns the output
(wsss.jobs.check_owner), and a folder is never replaced by a file."""
import contextlib
import errno
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, PngImagePlugin

from wsss import jobs
from wsss.errors import DataError

HOST = socket.gethostname()
TEMPORARY = re.compile(r"\.(?P<name>.+)\.wsss\.tmp-(?P<host>.+)-(?P<pid>\d+)")
_temporaries: dict = {}  # folder -> {output name: [temporary names]}, listed once per folder and process
# Write errors that are the disk's, not the data's: a one-line error naming the output.
FULL = (errno.ENOSPC, errno.EDQUOT)
UNWRITABLE = (errno.EFBIG, errno.EROFS)


def temporary(path) -> Path:
    """The temporary name this process writes `path` under."""
    path = Path(path)
    return path.with_name(f".{path.name}.wsss.tmp-{HOST}-{os.getpid()}")


@contextlib.contextmanager
def scratch(path):
    """Yields a temporary path next to `path` (nothing there yet) and removes it when the block ends,
    however it ends. Temporaries of `path` that killed processes of this host left go first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = temporary(path)
    remove(tmp)
    try:
        yield tmp
    finally:
        remove(tmp)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to `path`; renames it to `path` only if the block succeeds.

    Works for files and folders (the block creates whatever it likes at the temporary path). A full disk
    (or another write error of the disk's) is a DataError naming `path`; a folder at `path` is not replaced
    by a file, and a stage whose job has ended publishes nothing (DataError)."""
    path = Path(path)
    with scratch(path) as tmp:
        try:
            yield tmp
        except OSError as e:
            if e.errno in FULL:
                raise DataError(f"{path}: no space left on device while writing it ({e.strerror})") from e
            if e.errno in UNWRITABLE:
                raise DataError(f"{path}: cannot write it: {e.strerror}") from e
            raise
        if path.is_dir() and not path.is_symlink() and not tmp.is_dir():
            raise DataError(f"{path}: is a folder; wsss never replaces a folder with a file")
        jobs.check_owner(path)
        remove(path)
        os.replace(tmp, path)


def remove_stale(path):
    """Removes the temporaries of `path` left by processes of this host that no longer run; those of live
    processes and of other hosts (a shared disk) stay. The folder is listed once per process."""
    path = Path(path)
    folder = path.parent.resolve()
    if folder not in _temporaries:
        found = {}
        with os.scandir(folder) as entries:
            for entry in entries:
                m = TEMPORARY.fullmatch(entry.name)
                if m and m["host"] == HOST:
                    found.setdefault(m["name"], []).append(entry.name)
        _temporaries[folder] = found
    for name in _temporaries[folder].pop(path.name, []):
        if not _running(int(TEMPORARY.fullmatch(name)["pid"])):
            remove(folder / name)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove(p: Path):
    """Removes a file, link or folder tree at `p` if there is one (a link, not what it points to)."""
    p = Path(p)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def link(path, source):
    """`path` as a symbolic link to `source` (atomically, as any output)."""
    with atomic_path(path) as tmp:
        tmp.symlink_to(source)


def save_npz(path, **arrays):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def save_png(path, array: np.ndarray, palette: np.ndarray | None = None, text: dict | None = None):
    """Saves a uint8 label map (as a palette PNG when `palette` [n, 3] is given) or an RGB image; `text`: PNG
    text chunks (e.g. {"Software": ...})."""
    array = np.ascontiguousarray(array)
    if palette is None:
        img = Image.fromarray(array)
    else:  # indices stored as-is (Image.convert("P") would re-quantise them)
        img = Image.frombytes("P", array.shape[::-1], array.astype(np.uint8).tobytes())
        img.putpalette(np.asarray(palette, np.uint8).reshape(-1).tolist())
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", pnginfo=info)


def save_csv(path, table: pd.DataFrame):
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def save_torch(path, obj):
    """torch.save(obj) to `path` atomically. torch reports a failed write as "unexpected pos ..." and drops
    the OS's reason; writing through a Python file keeps it (a full disk: ENOSPC, named by atomic_path)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        writer = _Writer(f)
        try:
            torch.save(obj, writer)
        except RuntimeError as e:
            if writer.error is None:
                raise
            raise writer.error from e


class _Writer:
    """A file for torch.save that remembers the OSError of a failed write."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        self.file.flush()


def load_torch(path, what: str):
    """`torch.load` on the CPU of a model or weights file; DataError naming the file if it is missing or
    unreadable (`what` says what the file should be)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"{path}: not a readable {what} ({e})") from e
