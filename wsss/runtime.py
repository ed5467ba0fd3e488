"""Process-wide run settings shared by every stage: device choice and seeding."""
import os
import random

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
