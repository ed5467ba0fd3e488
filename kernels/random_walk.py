"""IRNet's random walk (Eq. 12-13) on the sparse pair graph, with numba.cuda, numba CPU and torch backends.

IRNet's code builds the dense n x n matrix A (pairs both directions, self affinity 1), T = A^beta normalised
by column sums, squares it exp_times times and returns x0 @ T^(2^exp_times). Here one step is
`v_q <- (v_q + sum_d s_q,q+d v_q+d + s_q,q-d v_q-d) / c_q`, `c_q = 1 + sum_d (s_q,q+d + s_q,q-d)`, over the
offsets d of `neighbor_offsets(radius)`; `steps` steps equal x0 @ T^steps. Memory O((C + D) H W).

Every backend evaluates the step in the equivalent difference form
`v_q <- v_q + (sum_d s_q,q+d (v_q+d - v_q) + s_q,q-d (v_q-d - v_q)) / c_q`: a constant stays exactly constant
whatever the rounding of s and c, so rounding errors do not pile up over 256 steps (float32 error ~1e-6 of
the max; the direct form in float32 drifts to ~1e-4, IRNet's own float32 dense walk to ~5e-5).

Layout shared by the backends: every map is zero-padded by r rows above and below and r - 1 columns left and
right and flattened, so the neighbour q + d of an interior pixel q is q + o_d with one flat offset
o_d = dy * (W + 2r - 2) + dx, and each offset's terms for all pixels are contiguous runs of memory. The
padding columns are computed along (their inverse column sum is 0, so they stay 0).
"""
import numba
import numpy as np
import torch
import torch.nn.functional as F
from numba import cuda, njit, prange

from kernels import _backend
from kernels.line_max_affinity import line_max_affinity
from kernels.offsets import neighbor_offsets



def random_walk(scores: torch.Tensor, boundary: torch.Tensor, radius: int = 5, beta: float = 10,
                steps: int = 256, backend: str | None = None) -> torch.Tensor:
    """IRNet Eq. 12-13: `scores` [B, C, H, W] propagated `steps` steps over the affinities of `boundary`
    [B, H, W] -> [B, C, H, W] (same dtype as `scores`; not differentiable).

    x0 = scores * (1 - boundary); s_pq = line_max_affinity(boundary)_pq ** beta for 0 < |p - q|^2 < r^2 (both
    directions, partners inside the image), s_pp = 1; one step v_q <- sum_p s_pq v_p / sum_p s_pq. Equal to
    IRNet's dense `x0 @ T^(2^exp_times)` with steps = 2^exp_times (256 for exp_times = 8)."""
    if scores.dim() != 4 or boundary.shape != (scores.shape[0], *scores.shape[2:]):
        raise ValueError(f"need scores [B, C, H, W] and boundary [B, H, W], got {tuple(scores.shape)} and "
                         f"{tuple(boundary.shape)}")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be floating point, got {scores.dtype}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (0^beta must vanish outside the disc), got {beta!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    name = _backend.pick(scores, backend)
    b, c, h, w = scores.shape
    with torch.no_grad():
        boundary = boundary.detach().to(scores.dtype)
        weights, inv_colsum, offsets = _graph(line_max_affinity(boundary, radius, backend=name), radius, beta)
        v = _pad(scores * (1 - boundary[:, None]), radius).view(b, c, -1)  # IRNet Eq. 13: x0 = M (.) (1 - B)
        v = _WALK[name](v, torch.zeros_like(v), weights, inv_colsum, offsets, *_span(h, w, radius), steps)
        return v.view(b, c, h + 2 * radius, -1)[..., radius:radius + h, radius - 1:radius - 1 + w].contiguous()


def _pad(t: torch.Tensor, radius: int) -> torch.Tensor:
    return F.pad(t, (radius - 1, radius - 1, radius, radius))


def _span(h: int, w: int, radius: int) -> tuple[int, int]:
    """Start and length of the image's rows in a flattened padded map."""
    wp = w + 2 * radius - 2
    return radius * wp, h * wp


def _graph(affinity: torch.Tensor, radius: int, beta: float):
    """The walk's graph in the flat padded layout: edge weights s = a^beta (IRNet Eq. 12) [B, D, L] with s
    of the pair (q, q + d) stored at q, the inverse column sums 1 / (1 + sum of s over the full disc) [B, L]
    (0 in the padding), and the flat offsets [D]. A partner outside the image has a = 0, so s = 0."""
    b, _, h, w = affinity.shape
    wp = w + 2 * radius - 2
    lo, n = _span(h, w, radius)
    offsets = neighbor_offsets(radius)
    flat = (offsets[:, 0] * wp + offsets[:, 1]).to(affinity.device)
    weights = _pad(affinity.pow_(beta), radius).view(b, len(flat), -1)
    colsum = 1 + weights[..., lo:lo + n].sum(1)  # self weight 1 and the pairs (q, q + d)
    for k, o in enumerate(flat.tolist()):
        colsum += weights[:, k, lo - o:lo - o + n]  # the pairs (q - d, q)
    inv_colsum = _pad(colsum.view(b, h, wp)[..., radius - 1:radius - 1 + w].reciprocal(), radius)
    return weights, inv_colsum.view(b, -1), flat


# ---------------------------------------------------------------------------------------------- numba CPU

@njit(parallel=True, cache=True, nogil=True)  # nogil: loader threads (and the bench's memory sampler) keep running
def _walk_numba_steps(v, spare, weights, inv_colsum, offsets, lo, n, steps):
    nb, nc, _ = v.shape
    # one thread walks one channel through all steps: a single parallel region, no barrier per step (a
    # barrier per step stalls for whole time slices when the cores are shared with other processes)
    for bc in prange(nb * nc):
        b = bc // nc
        src, dst = v[b, bc % nc], spare[b, bc % nc]
        acc = np.empty(n, v.dtype)
        for _ in range(steps):
            centre = src[lo:lo + n]
            acc[:] = 0
            for d in range(0, offsets.shape[0], 2):  # two offsets a pass; D is even (four-fold symmetric disc)
                o, e = offsets[d], offsets[d + 1]
                # runs starting at 0 keep the loop vectorisable (no negative-index checks)
                fwd_o, bwd_o = weights[b, d, lo:lo + n], weights[b, d, lo - o:lo - o + n]
                fwd_e, bwd_e = weights[b, d + 1, lo:lo + n], weights[b, d + 1, lo - e:lo - e + n]
                up_o, down_o = src[lo + o:lo + o + n], src[lo - o:lo - o + n]
                up_e, down_e = src[lo + e:lo + e + n], src[lo - e:lo - e + n]
                for i in range(n):
                    c = centre[i]
                    acc[i] += (fwd_o[i] * (up_o[i] - c) + bwd_o[i] * (down_o[i] - c)
                               + fwd_e[i] * (up_e[i] - c) + bwd_e[i] * (down_e[i] - c))
            out, inv = dst[lo:lo + n], inv_colsum[b, lo:lo + n]
            for i in range(n):
                out[i] = centre[i] + acc[i] * inv[i]
            src, dst = dst, src


def _walk_numba(v, spare, weights, inv_colsum, offsets, lo, n, steps):
    _walk_numba_steps(v.numpy(), spare.numpy(), weights.numpy(), inv_colsum.numpy(), offsets.numpy(), lo, n,
                      steps)
    return v if steps % 2 == 0 else spare


# ---------------------------------------------------------------------------------------------- numba.cuda

@cuda.jit
def _walk_cuda_step(src, dst, weights, inv_colsum, offsets, lo, n):
    i = cuda.grid(1)
    nb, nc, _ = src.shape
    if i >= nb * nc * n:
        return
    q = lo + i % n
    c = (i // n) % nc
    b = i // (n * nc)
    centre = src[b, c, q]
    acc = numba.float32(0)  # widens to float64 for float64 input
    for d in range(offsets.shape[0]):
        o = offsets[d]
        acc += weights[b, d, q] * (src[b, c, q + o] - centre) + weights[b, d, q - o] * (src[b, c, q - o] - centre)
    dst[b, c, q] = centre + acc * inv_colsum[b, q]


def _walk_cuda(v, spare, weights, inv_colsum, offsets, lo, n, steps):
    a = _backend.as_cuda_array
    bufs = (a(v), a(spare))
    fixed = (a(weights), a(inv_colsum), a(offsets), lo, n)
    total = v.shape[0] * v.shape[1] * n
    launch = _walk_cuda_step[_backend.launch(total)]
    for s in range(steps):  # one launch per step: the grid-wide barrier between steps
        launch(bufs[s % 2], bufs[1 - s % 2], *fixed)
    return v if steps % 2 == 0 else spare


# ---------------------------------------------------------------------------------------------- torch

def _walk_torch(v, spare, weights, inv_colsum, offsets, lo, n, steps):
    weights, inv_colsum = weights.unsqueeze(2), inv_colsum[:, None, lo:lo + n]  # broadcast over C
    src, dst = v, spare
    for _ in range(steps):
        centre = src[..., lo:lo + n]
        acc = torch.zeros_like(centre)
        for d, o in enumerate(offsets.tolist()):
            acc.addcmul_(weights[:, d, :, lo:lo + n], src[..., lo + o:lo + o + n] - centre)
            acc.addcmul_(weights[:, d, :, lo - o:lo - o + n], src[..., lo - o:lo - o + n] - centre)
        torch.addcmul(centre, acc, inv_colsum, out=dst[..., lo:lo + n])
        src, dst = dst, src
    return src


_WALK = {"cuda": _walk_cuda, "numba": _walk_numba, "torch": _walk_torch}
