"""Atomic file output: everything is written under a temporary name and renamed when complete, so a
killed stage never leaves a file (or folder) that looks finished."""
import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from wsss.errors import DataError


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to `path`; renames it to `path` only if the block succeeds.

    Works for files and folders (the block creates whatever it likes at the temporary path)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        _remove(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(p: Path):
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
