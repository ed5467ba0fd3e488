"""Atomic file output: everything is written under a temporary name and renamed when complete, so a
killed stage never leaves a file (or folder) that looks finished."""
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
from PIL import Image

from wsss.errors import DataError

HOST = socket.gethostname()
# `.<name>.tmp-<host>-<pid>` (older wsss: `.<name>.tmp-<pid>`), the temporary name of `<name>`
TEMPORARY = re.compile(r"\..+\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)")
_swept: set = set()  # folders already cleared of dead processes' temporaries by this process


@contextlib.contextmanager
def scratch(path):
    """Yields a temporary path next to `path` (nothing there yet) and removes it when the block ends,
    however it ends. Temporaries that killed processes of this host left in that folder go first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{HOST}-{os.getpid()}")
    remove(tmp)
    try:
        yield tmp
    finally:
        remove(tmp)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to `path`; renames it to `path` only if the block succeeds.

    Works for files and folders (the block creates whatever it likes at the temporary path). A full disk
    is a DataError naming `path`."""
    path = Path(path)
    with scratch(path) as tmp:
        try:
            yield tmp
        except (OSError, RuntimeError) as e:  # torch.save reports a full disk as RuntimeError("... write failed")
            if _disk_full(e, path.parent):
                raise DataError(f"{path}: no space left on device while writing it ({e})") from e
            raise
        remove(path)
        os.replace(tmp, path)


def _disk_full(error, folder) -> bool:
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return "write failed" in str(error) and shutil.disk_usage(folder).free < 2 ** 20


def remove_stale(folder):
    """Removes the temporaries in `folder` of processes of this host that no longer run (a killed job's
    half-written CAM folder can be GBs). Once per folder and process; other hosts' are left alone."""
    folder = Path(folder).resolve()
    if folder in _swept:
        return
    _swept.add(folder)
    with os.scandir(folder) as entries:
        stale = [e.name for e in entries if (m := TEMPORARY.fullmatch(e.name)) and m["host"] in (None, HOST)
                 and not _running(int(m["pid"]))]
    for name in stale:
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


def save_npz(path, **arrays):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def save_png(path, array: np.ndarray, palette: np.ndarray | None = None):
    """Saves a uint8 label map (as a palette PNG when `palette` [n, 3] is given) or an RGB image."""
    array = np.ascontiguousarray(array)
    if palette is None:
        img = Image.fromarray(array)
    else:  # indices stored as-is (Image.convert("P") would re-quantise them)
        img = Image.frombytes("P", array.shape[::-1], array.astype(np.uint8).tobytes())
        img.putpalette(np.asarray(palette, np.uint8).reshape(-1).tolist())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_csv(path, table: pd.DataFrame):
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)



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
