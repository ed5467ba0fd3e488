"""The gather_shards stage: merges the output folders of a sharded per-image stage (wsss.shards) into one.
Outputs are per-image files, so the gathered folder is identical to an unsharded run's."""
import os
import shutil
from pathlib import Path

from wsss.io import atomic_path
from wsss.params import resolve

PARAMS = {}


def run(params: dict, *, inputs: list, out):
    """Every file of every shard folder, hard-linked (copied across devices);
    hidden files are bookkeeping, not results."""
    resolve(params, PARAMS, "gather_shards")
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
