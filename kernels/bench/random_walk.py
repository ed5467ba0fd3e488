"""random_walk against IRNet's dense walk and against the same walk as a torch sparse CSR matrix.

IRNet's dense reference (misc/indexing.py, propagate_to_edge) builds the n x n matrix and squares it 8
times: about 16 s at 64 x 64 on a 2-core CPU but 9 minutes and 4 GB at 128 x 128, so at 128 x 128 it runs
only when WSSS_BENCH_DENSE_128=1 (or on a GPU); the CSR walk is the reference there. The dense walk is also
the float64 oracle of tests/test_kernels_random_walk.py."""
import os
import warnings

import torch

from kernels.bench._harness import Case
from kernels.bench.line_max_affinity import gather_max_affinity, path_index
from kernels.line_max_affinity import line_max_affinity
from kernels.offsets import neighbor_offsets
from kernels.random_walk import random_walk

DENSE = "dense (IRNet)"
CSR = "torch CSR"


def _pairs(radius: int, h: int, w: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(d, source pixel, partner pixel) of every pair with both pixels inside the image, flat indices."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ds, src, dst = [], [], []
    for d, (dy, dx) in enumerate(neighbor_offsets(radius).tolist()):
        inside = (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        p = (ys * w + xs)[inside]
        ds.append(torch.full_like(p, d))
        src.append(p)
        dst.append(p + dy * w + dx)
    return tuple(torch.cat(t).to(device) for t in (ds, src, dst))


def dense_walk(scores: torch.Tensor, boundary: torch.Tensor, radius: int = 5, beta: float = 10,
               exp_times: int = 8) -> torch.Tensor:
    """IRNet's propagate_to_edge, image by image: affinities by gather-then-max, the dense symmetric matrix with
    self affinity 1, T = A^beta / column sums, squared exp_times times, x0 @ T."""
    b, c, h, w = scores.shape
    d, src, dst = _pairs(radius, h, w, scores.device)
    affinity = gather_max_affinity(boundary, radius, path_index(radius, h, w, scores.device))
    out = []
    for i in range(b):
        a = torch.eye(h * w, dtype=scores.dtype, device=scores.device)
        s = affinity[i].reshape(len(neighbor_offsets(radius)), -1)[d, src]
        a[src, dst] = s
        a[dst, src] = s
        t = a.pow(beta)
        t = t / t.sum(0, keepdim=True)  # IRNet Eq. 12, normalised per column as IRNet's code does
        for _ in range(exp_times):
            t = t @ t
        out.append((scores[i] * (1 - boundary[i])).view(c, -1) @ t)  # IRNet Eq. 13
    return torch.stack(out).view(b, c, h, w)


def csr_walk(scores: torch.Tensor, boundary: torch.Tensor, radius: int = 5, beta: float = 10,
             steps: int = 256) -> torch.Tensor:
    """The same walk with the transposed transition matrix as a torch sparse CSR matrix, one product a step."""
    b, c, h, w = scores.shape
    n = h * w
    d, src, dst = _pairs(radius, h, w, scores.device)
    affinity = line_max_affinity(boundary, radius).view(b, -1, n)
    diag = torch.arange(n, device=scores.device)
    rows, cols = torch.cat([src, dst, diag]), torch.cat([dst, src, diag])
    out = []
    for i in range(b):
        s = affinity[i, d, src].pow(beta)
        values = torch.cat([s, s, torch.ones(n, dtype=s.dtype, device=s.device)])
        colsum = torch.zeros(n, dtype=s.dtype, device=s.device).index_add_(0, rows, values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            t = torch.sparse_coo_tensor(torch.stack([rows, cols]), values / colsum[rows], (n, n)).to_sparse_csr()
        v = (scores[i] * (1 - boundary[i])).view(c, n).T.contiguous()
        for _ in range(steps):
            v = t @ v
        out.append(v.T)
    return torch.stack(out).view(b, c, h, w)


def cases(device: torch.device, quick: bool) -> list[Case]:
    fast = "cuda" if device.type == "cuda" else "numba"
    if quick:
        plan = [(16, 3, DENSE, [DENSE, CSR, fast, "torch"])]
    else:
        dense_128 = [DENSE] if device.type == "cuda" or os.environ.get("WSSS_BENCH_DENSE_128") == "1" else []
        plan = [(64, 3, DENSE, [DENSE, CSR, fast, "torch"]), (128, 3, CSR, dense_128 + [CSR, fast, "torch"])]
        if device.type == "cuda":
            plan.append((128, 21, "torch", ["torch", fast]))
    walks = {DENSE: dense_walk, CSR: csr_walk}
    out = []
    for n, c, reference, impls in plan:
        scores = torch.rand(1, c, n, n, device=device)
        boundary = torch.rand(1, n, n, device=device) ** 4  # mostly low, some strong boundaries
        flops = 2 * 2 * len(neighbor_offsets(5)) * c * n * n * 256  # one multiply-add per neighbour, class, step
        for impl in impls:
            walk = walks.get(impl, lambda s, b, i=impl: random_walk(s, b, backend=i))
            out.append(Case("random_walk", f"{n}x{n} C={c}", impl, lambda s=scores, b=boundary, f=walk: f(s, b),
                            reference=None if impl == reference else reference,
                            repeat=1 if quick or impl == DENSE else 5, flops=None if impl == DENSE else flops))
    return out
