"""Sharded per-image stages: shard `i-of-n` (Snakemake's scatteritem) works on every n-th image, and
the `gather` stage merges the shards' output folders into one. Outputs are per-image files, so the
gathered folder is identical to an unsharded run's."""
import os
import shutil
from pathlib import Path

from wsss.io import atomic_path


def select(ids: list[str], shard: str) -> list[str]:
    """The images of shard `i-of-n` (1-based, as Snakemake numbers scatter items)."""
    i, n = (int(v) for v in shard.split("-of-"))
    if not 1 <= i <= n:
        raise ValueError(f"shard {shard!r}: expected i-of-n with 1 <= i <= n")
    return ids[i - 1::n]


def run(params: dict, *, inputs: list, out):
    """The `gather` stage: every file of every shard folder, hard-linked (copied across devices);
    hidden files are bookkeeping, not results."""
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for folder in inputs:
            for f in Path(folder).iterdir():
                if f.name.startswith("."):  # Snakemake's .snakemake_timestamp of directory outputs
                    continue
                if (tmp / f.name).exists():
                    raise ValueError(f"{f}: {f.name} is in two shards")
                try:
                    os.link(f, tmp / f.name)
                except OSError:
                    shutil.copy2(f, tmp / f.name)
