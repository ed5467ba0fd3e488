"""The hot loops of the pipeline, one public function each.

Behind every function: a numba.cuda kernel (torch CUDA tensors), a numba CPU kernel and a pure-torch
fallback, chosen by `kernels._backend.pick` (override with `backend=` or WSSS_KERNEL_BACKEND)."""
from kernels.offsets import neighbor_offsets
from kernels.line_max_affinity import line_max_affinity
from kernels.random_walk import random_walk
from kernels.region_grow import region_grow
from kernels.neighborhood_aggregate import neighborhood_aggregate

__all__ = ["neighbor_offsets", "line_max_affinity", "random_walk", "region_grow", "neighborhood_aggregate"]
