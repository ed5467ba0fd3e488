"""Process-wide run settings shared by every stage: device choice, seeding and CPU threads."""
import os
import random
import sys

import numpy as np
import torch

from wsss.errors import DataError
from wsss.params import Param

DEVICE = Param(str, "auto", "auto (a GPU when one is visible) | cpu | cuda")


def device(preference: str = "auto") -> torch.device:
    """`auto` takes the first visible GPU and falls back to the CPU; `cpu` / `cuda` force one (`cuda` without
    a GPU: a one-line DataError)."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda" and not torch.cuda.is_available():
        raise DataError("device 'cuda' requested but no GPU is visible (CUDA_VISIBLE_DEVICES="
                        f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use device cpu or auto")
    return torch.device(preference)


def seed_everything(seed: int):
    """Same seed, same result on the CPU (cuDNN autotuning still varies on GPUs)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def threads() -> int:
    """CPU threads this job may use: Snakemake sets OMP_NUM_THREADS to the rule's `threads`."""
    return int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))


def use_threads(n: int | None = None) -> int:
    """Makes this process compute on `n` CPU threads (default: the job's, `threads()`) in torch and in numba's
    parallel kernels alike, and returns n. Call it before the first kernel runs (wsss.cli does, at a stage's start).

    numba's `omp` threading layer shares the OpenMP runtime with torch, and when it starts its pool (at the first
    parallel kernel, or here) it calls omp_set_num_threads(NUMBA_NUM_THREADS: all cores unless set) in the calling
    thread, which is torch's intra-op count: one line_max_affinity call took a 1-thread job to 2 threads, and the
    float sums of the iterations after it changed with it (issue 30). So the pool is started here, sized to `n`
    (NUMBA_NUM_THREADS, also every thread's default and inherited by child processes) when numba is not loaded
    yet, and torch's count is set after it."""
    n = n or threads()
    if "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    import numba
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))  # starts numba's pool first
    torch.set_num_threads(n)
    return n
