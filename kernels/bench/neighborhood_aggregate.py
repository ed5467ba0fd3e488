"""neighborhood_aggregate forward + backward against masked dense attention in torch.

Geometry: a 65x65 destination grid, C = 256, PSI's radii (1, 1, 1, 4) over four 65x65 levels (strides 0:
the co-located node on three levels, a 7x7 window on the destination level). The dense reference forms
the full [HW, sum_l H_l W_l] logit matrix and masks it, so its memory grows as (HW)^2; a finer level
(e.g. conv2 at 129x129) would only make it slower. `dense_reference` is also the tests' oracle.
"""
import math

import torch

from kernels._backend import numba_cuda_usable
from kernels.bench._harness import Case
from kernels.neighborhood_aggregate import neighborhood_aggregate

REFERENCE = "masked dense (torch)"
RADII = (1, 1, 1, 4)
STRIDES = (0, 0, 0, 0)


def _neighbour_mask(H, W, h, w, radius, stride, device):
    """[H*W, h*w] bool: level position (jy, jx) is within Chebyshev radius of Eq. 2's p(y), p(x)."""
    def p(i):  # Eq. 2 written out: floor division onto a coarser level, multiplication onto a finer one
        return i // 2 ** stride if stride > 0 else i * 2 ** -stride

    ny = (p(torch.arange(H, device=device))[:, None] - torch.arange(h, device=device)).abs() < radius
    nx = (p(torch.arange(W, device=device))[:, None] - torch.arange(w, device=device)).abs() < radius
    return (ny[:, None, :, None] & nx[None, :, None, :]).reshape(H * W, h * w)


def dense_reference(query, keys, values, radii, strides):
    """Per level, sum_j A_ij values_j with A = softmax over all levels' neighbours of <q_i, k_j>, computed
    densely: [B, HW, sum_l H_l W_l] logits, -inf off the neighbourhoods."""
    B, C, H, W = query.shape
    q = query.flatten(2).transpose(1, 2)
    logits = torch.cat([(q @ k.flatten(2)).masked_fill(
        ~_neighbour_mask(H, W, *k.shape[2:], r, s, query.device), -math.inf)
        for k, r, s in zip(keys, radii, strides)], 2)
    top = logits.amax(2, keepdim=True)
    e = torch.exp(logits - torch.where(torch.isfinite(top), top, 0))
    A = e / e.sum(2, keepdim=True).clamp(min=torch.finfo(e.dtype).tiny)
    outs = []
    for a, v in zip(A.split([k.shape[2] * k.shape[3] for k in keys], 2), values):
        outs.append((a @ v.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(B, v.shape[1], H, W))
    return outs


def random_inputs(B, C, H, W, shapes, generator, dtype=torch.float32, scale=None, Cv=None):
    """query [B,C,H,W] and per-level keys [B,C,h,w] and values [B,Cv,h,w] (Cv = C by default); features
    scaled so that logits are O(1) to O(10)."""
    scale = scale or C ** -0.25
    q = torch.randn(B, C, H, W, generator=generator, dtype=dtype) * scale
    keys = [torch.randn(B, C, h, w, generator=generator, dtype=dtype) * scale for h, w in shapes]
    values = [torch.randn(B, Cv or C, h, w, generator=generator, dtype=dtype) for h, w in shapes]
    return q, keys, values


def _fwd_bwd(fn, inputs):
    def run():
        leaves = [t.detach().requires_grad_() for t in inputs]
        L = (len(leaves) - 1) // 2
        outs = fn(leaves[0], leaves[1:1 + L], leaves[1 + L:], RADII, STRIDES)
        sum(o.sum() * (l + 1) for l, o in enumerate(outs)).backward()
    return run


def cases(device, quick):
    g = torch.Generator().manual_seed(0)
    (H, W), C = ((17, 17), 32) if quick else ((65, 65), 256)
    shapes = [(H, W)] * 4
    q, keys, values = random_inputs(1, C, H, W, shapes, g)
    inputs = [t.to(device) for t in (q, *keys, *values)]
    size = f"{H}x{W} C={C}"
    backends = ["torch"] + (["cuda"] if device.type == "cuda" and numba_cuda_usable() else
                            ["numba"] if device.type == "cpu" else [])
    out = [Case("neighborhood_aggregate", size, REFERENCE, _fwd_bwd(dense_reference, inputs), repeat=1)]
    for backend in backends:
        def fn(*args, b=backend):
            return neighborhood_aggregate(*args, backend=b)
        out.append(Case("neighborhood_aggregate", size, backend, _fwd_bwd(fn, inputs), reference=REFERENCE))
    return out
