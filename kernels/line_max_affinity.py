"""IRNet's line-max affinity (Eq. 7) with a numba.cuda, a numba CPU and a pure-torch backend.

`affinity[b, d, y, x] = 1 - max(boundary[b] over the path from (y, x) to (y + dy, x + dx))` for the pairs
(dy, dx) of `neighbor_offsets(radius)` and the paths of `neighbor_paths(radius)`; 0 where the partner is
outside the image. Every backend returns, when a gradient is wanted, the flat index of the pixel that
attains the max (the first one in IRNet's path order on ties, as its max_pool2d does), and one shared
backward routes the gradient there.
"""
import functools

import numpy as np
import torch
import torch.nn.functional as F
from numba import cuda, njit, prange

from kernels import _backend
from kernels.offsets import neighbor_offsets, neighbor_paths



def line_max_affinity(boundary: torch.Tensor, radius: int, backend: str | None = None) -> torch.Tensor:
    """IRNet Eq. 7 for the pairs of `neighbor_offsets(radius)`: `boundary` [B, H, W] -> affinity [B, D, H, W].

    The path of a pair is the set of integer points of the box spanned by the two pixels whose distance to
    the line through both pixel centres is < 1, both endpoints included; a pair whose other end lies outside
    the image gets 0. Differentiable in `boundary`: the gradient of an affinity goes to the pixel of its
    path that attains the max (the first in IRNet's path order, far end first, on ties)."""
    if boundary.dim() != 3 or not boundary.is_floating_point():
        raise ValueError(f"boundary must be a floating tensor [B, H, W], got {tuple(boundary.shape)} "
                         f"{boundary.dtype}")
    if not isinstance(radius, int) or radius < 2:
        raise ValueError(f"radius must be an integer >= 2 (radius 1 has no pairs), got {radius!r}")
    return _LineMax.apply(boundary, radius, _backend.pick(boundary, backend))


class _LineMax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boundary, radius, backend):
        want_arg = ctx.needs_input_grad[0]
        affinity, argmax = _FORWARD[backend](boundary.detach().contiguous(), radius, want_arg)
        ctx.save_for_backward(argmax)
        ctx.image = boundary.shape[1:]
        return affinity

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (argmax,) = ctx.saved_tensors
        batch, hw = grad.shape[0], ctx.image.numel()
        # d(1 - max)/d(argmax pixel) = -1; slot hw collects the pairs whose partner is outside (constant 0)
        out = grad.new_zeros(batch, hw + 1)
        out.scatter_add_(1, argmax.view(batch, -1), -grad.reshape(batch, -1))
        return out[:, :hw].view(batch, *ctx.image), None, None


@functools.cache
def _tables(radius: int, device: torch.device):
    """offsets [D, 2], path points [P, 2] and path starts [D + 1] on `device` (cached: kernels reuse them)."""
    points, starts = neighbor_paths(radius)
    return neighbor_offsets(radius).to(device), points.to(device), starts.to(device)


def _outputs(boundary, radius, want_arg):
    b, h, w = boundary.shape
    d = len(neighbor_offsets(radius))
    affinity = boundary.new_empty(b, d, h, w)
    argmax = torch.empty((b, d, h, w) if want_arg else (1, 1, 1, 1), dtype=torch.int64, device=boundary.device)
    return affinity, argmax


# ---------------------------------------------------------------------------------------------- numba CPU

@njit(parallel=True, cache=True, nogil=True)  # nogil: loader threads (and the bench's memory sampler) keep running
def _line_max_rows(bnd, offsets, points, starts, affinity, argmax, want_arg):
    nb, h, w = bnd.shape
    for row in prange(nb * h):
        b = row // h
        y = row % h
        best = np.empty(w, bnd.dtype)
        best_k = np.empty(w, np.int64)
        for d in range(offsets.shape[0]):
            affinity[b, d, y] = 0
            if want_arg:
                argmax[b, d, y] = h * w
            # x0 <= x < x1: the partner (y + dy, x + dx) is inside the image, and then so is the whole path
            x0 = max(0, -offsets[d, 1])
            n = min(w, w - offsets[d, 1]) - x0 if y + offsets[d, 0] < h else 0
            if n <= 0:
                continue
            k0 = starts[d]
            # path point k of all n pixels is one contiguous run of a row (slices keep the loops vectorisable)
            best[:n] = bnd[b, y + points[k0, 0], x0 + points[k0, 1]:x0 + points[k0, 1] + n]
            best_k[:n] = k0
            for k in range(k0 + 1, starts[d + 1]):
                run = bnd[b, y + points[k, 0], x0 + points[k, 1]:x0 + points[k, 1] + n]
                if want_arg:
                    for i in range(n):
                        if run[i] > best[i]:  # strict: the first max in path order wins ties (IRNet)
                            best[i] = run[i]
                            best_k[i] = k
                else:
                    for i in range(n):
                        best[i] = max(best[i], run[i])
            out = affinity[b, d, y, x0:x0 + n]
            for i in range(n):
                out[i] = 1 - best[i]
            if want_arg:
                for i in range(n):
                    k = best_k[i]
                    argmax[b, d, y, x0 + i] = (y + points[k, 0]) * w + x0 + i + points[k, 1]


def _forward_numba(boundary, radius, want_arg):
    affinity, argmax = _outputs(boundary, radius, want_arg)
    offsets, points, starts = (t.numpy() for t in _tables(radius, boundary.device))
    _line_max_rows(boundary.numpy(), offsets, points, starts, affinity.numpy(), argmax.numpy(), want_arg)
    return affinity, (argmax if want_arg else None)


# ---------------------------------------------------------------------------------------------- numba.cuda

@cuda.jit
def _line_max_cuda(bnd, offsets, points, starts, affinity, argmax, want_arg):
    i = cuda.grid(1)
    nb, nd, h, w = affinity.shape
    if i >= nb * nd * h * w:
        return
    x = i % w
    y = (i // w) % h
    d = (i // (w * h)) % nd
    b = i // (w * h * nd)
    if y + offsets[d, 0] >= h or not 0 <= x + offsets[d, 1] < w:
        affinity[b, d, y, x] = 0
        if want_arg:
            argmax[b, d, y, x] = h * w
        return
    k0 = starts[d]
    best = bnd[b, y + points[k0, 0], x + points[k0, 1]]
    best_k = k0
    for k in range(k0 + 1, starts[d + 1]):
        v = bnd[b, y + points[k, 0], x + points[k, 1]]
        if v > best:  # strict: first max in path order wins ties
            best = v
            best_k = k
    affinity[b, d, y, x] = 1 - best
    if want_arg:
        argmax[b, d, y, x] = (y + points[best_k, 0]) * w + x + points[best_k, 1]


def _forward_cuda(boundary, radius, want_arg):
    affinity, argmax = _outputs(boundary, radius, want_arg)
    a = _backend.as_cuda_array
    args = [a(boundary), *(a(t) for t in _tables(radius, boundary.device)), a(affinity), a(argmax), want_arg]
    _line_max_cuda[_backend.launch(affinity.numel())](*args)
    return affinity, (argmax if want_arg else None)


# ---------------------------------------------------------------------------------------------- torch

@functools.cache
def _window_points(radius: int) -> torch.Tensor:
    """Path points per pair, [D, Lmax, 2]; short paths are padded with their first point, which changes
    neither the max nor the first argmax."""
    points, starts = neighbor_paths(radius)
    lengths = starts.diff()
    j = torch.arange(int(lengths.max()))
    return points[starts[:-1, None] + torch.where(j < lengths[:, None], j, 0)]


def _forward_torch(boundary, radius, want_arg):
    b, h, w = boundary.shape
    r1, device = radius - 1, boundary.device
    offsets, points = neighbor_offsets(radius).to(device), _window_points(radius).to(device)
    # every pixel's window, rows y..y+r1 and columns x-r1..x+r1: [B, K, HW] (zero padding is read only by
    # pairs whose partner is outside, which are masked below)
    window = F.unfold(F.pad(boundary[:, None], (r1, r1, 0, r1)), (radius, 2 * r1 + 1))
    pos = points[..., 0] * (2 * r1 + 1) + points[..., 1] + r1  # [D, Lmax] window positions
    best = window[:, pos[:, 0]]
    best_j = torch.zeros(best.shape, dtype=torch.int64, device=device) if want_arg else None
    for j in range(1, pos.shape[1]):
        v = window[:, pos[:, j]]
        if want_arg:
            later = v > best  # strict: the first max in path order wins ties
            best = torch.where(later, v, best)
            best_j.masked_fill_(later, j)
        else:
            torch.maximum(best, v, out=best)
    ys = torch.arange(h, device=device)[:, None]
    xs = torch.arange(w, device=device)
    dy, dx = offsets[:, 0, None, None], offsets[:, 1, None, None]
    valid = (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)  # [D, H, W]
    affinity = best.view(b, -1, h, w).neg_().add_(1).masked_fill_(~valid, 0)  # 1 - max, in place
    if not want_arg:
        return affinity, None
    along = points[None].expand(b, -1, -1, -1)
    py = along[..., 0].gather(2, best_j)
    px = along[..., 1].gather(2, best_j)
    argmax = (torch.arange(h * w, device=device) + py * w + px).view(b, -1, h, w)
    return affinity, torch.where(valid, argmax, h * w)


_FORWARD = {"cuda": _forward_cuda, "numba": _forward_numba, "torch": _forward_torch}
