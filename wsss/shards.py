"""Sharded per-image stages: shard `i-of-n` (Snakemake's scatteritem) works on every n-th image, and
the `gather_shards` stage (wsss.pipeline.gather_shards) merges the shards' output folders into one."""
from wsss.params import Param

SHARD = Param(str, "1-of-1", "this job's shard i-of-n: every n-th image from the i-th")


def select(ids: list[str], shard: str) -> list[str]:
    """The images of shard `i-of-n` (1-based, as Snakemake numbers scatter items)."""
    i, n = (int(v) for v in shard.split("-of-"))
    if not 1 <= i <= n:
        raise ValueError(f"shard {shard!r}: expected i-of-n with 1 <= i <= n")
    return ids[i - 1::n]
