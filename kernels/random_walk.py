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

Edge weights below eps^2 of the dtype are set to 0 (`_graph`): they cannot change a float result, and on x86
CPUs a product with a subnormal number costs ~100 times a normal one (a^10 of an affinity below 1.6e-4 is
subnormal in float32).
"""
import functools
import os
import warnings

import numba
import torch
import torch.nn.functional as F
from numba import cuda, njit, prange

from kernels import _backend
from kernels._simd import VECTOR_BYTES, lanes, vaccumulate_rows, vload, vload_rows, vstore_step_rows, vzeros_like
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
    weights = affinity.pow_(beta)
    # a weight below eps^2 cannot change a float result, but a subnormal product costs ~100x on x86 CPUs
    weights.masked_fill_(weights < torch.finfo(weights.dtype).eps ** 2, 0)
    weights = _pad(weights, radius).view(b, len(flat), -1)
    colsum = 1 + weights[..., lo:lo + n].sum(1)  # self weight 1 and the pairs (q, q + d)
    for k, o in enumerate(flat.tolist()):
        colsum += weights[:, k, lo - o:lo - o + n]  # the pairs (q - d, q)
    inv_colsum = _pad(colsum.view(b, h, wp)[..., radius - 1:radius - 1 + w].reciprocal(), radius)
    return weights, inv_colsum.view(b, -1), flat


# ---------------------------------------------------------------------------------------------- numba CPU
# The walk is a stencil of 2 D neighbours: per class and pixel, 2 D fused multiply-adds a step. The kernel
# keeps a vector of LANES pixels of G classes in registers across all neighbours (explicit SIMD, kernels/_simd),
# so each weight is loaded once for G classes: 2 + 2 G loads per 2 G multiply-adds. Classes are walked in
# groups of G (`_class_groups`), pixels in chunks (one per thread). Each class's arithmetic is the same
# whatever G and the chunks, so the result does not depend on the thread count or the split.

@njit(cache=True, nogil=True, boundscheck=False)
def _step_block(src, dst, weights, inv_colsum, offsets, plane, start, stop, rows):
    """One step for the pixels [start, stop) of the classes src[:G] -> dst[:G] (G = len(rows)); weights flat
    [D * plane], the pair (q, q + o_d) at d * plane + q."""
    for q in range(start, stop, lanes(weights)):
        centre = vload_rows(src, rows, q)
        fwd, bwd = vzeros_like(centre), vzeros_like(centre)
        for d in range(offsets.shape[0]):
            o, k = offsets[d], d * plane + q
            fwd = vaccumulate_rows(fwd, vload(weights, k), src, q + o, centre)
            bwd = vaccumulate_rows(bwd, vload(weights, k - o), src, q - o, centre)
        vstore_step_rows(dst, q, centre, fwd, bwd, vload(inv_colsum, q))


@njit(parallel=True, cache=True, nogil=True)  # nogil: loader threads (and the bench's memory sampler) keep running
def _walk_split_pixels(v, spare, weights, inv_colsum, offsets, lo, n, steps, rows, chunks):
    """Every class group and every pixel chunk is a task; a barrier after each step (the chunks need their
    neighbours' previous step)."""
    groups = v.shape[0]
    size = -(-n // chunks // lanes(weights)) * lanes(weights)
    plane = inv_colsum.shape[0]
    for s in range(steps):
        src, dst = (v, spare) if s % 2 == 0 else (spare, v)
        for task in prange(groups * chunks):
            g, start = task // chunks, lo + task % chunks * size
            _step_block(src[g], dst[g], weights, inv_colsum, offsets, plane, start, min(start + size, lo + n),
                        rows)


@njit(parallel=True, cache=True, nogil=True)
def _walk_split_groups(v, spare, weights, inv_colsum, offsets, lo, n, steps, rows):
    """Each class group walks all its steps in one task: no barrier (a barrier per step stalls for whole time
    slices when other processes share the cores)."""
    plane = inv_colsum.shape[0]
    for g in prange(v.shape[0]):
        for s in range(steps):
            src, dst = (v[g], spare[g]) if s % 2 == 0 else (spare[g], v[g])
            _step_block(src, dst, weights, inv_colsum, offsets, plane, lo, lo + n, rows)


def _class_groups(c: int) -> int:
    """Classes per group G <= 4: fewest loads per useful multiply-add, (2 + 2 G) / 2 G, with c padded to a
    multiple of G by zero classes (G = 3 for c = 3 or 21, G = 4 for c = 4)."""
    return min((4, 3, 2, 1), key=lambda g: (1 + g) / g * -(-c // g) * g)


def _split_pixels(groups: int, threads: int) -> bool:
    """Split pixels (a barrier a step) only where class groups cannot keep every thread busy and the cores are
    not oversubscribed; WSSS_WALK_SPLIT=pixels|groups overrides. Both give the same result."""
    choice = os.environ.get("WSSS_WALK_SPLIT")
    if choice:
        if choice not in ("pixels", "groups"):
            raise ValueError(f"WSSS_WALK_SPLIT must be pixels or groups, got {choice!r}")
        return choice == "pixels"
    if threads == 1 or groups % threads == 0:
        return False
    return os.getloadavg()[0] <= os.cpu_count()


def _walk_numba(v, spare, weights, inv_colsum, offsets, lo, n, steps):
    b, c, length = v.shape
    per_group = _class_groups(c)
    groups = -(-c // per_group)
    plane = length + VECTOR_BYTES // v.element_size()  # room for the last chunk's last vector
    threads = numba.get_num_threads()
    split_pixels = _split_pixels(groups, threads)
    rows = (0,) * per_group
    for i in range(b):
        x = v.new_zeros(groups * per_group, plane)
        x[:c, :length] = v[i]
        y = torch.zeros_like(x)
        w = weights.new_zeros(weights.shape[1], plane)
        w[:, :length] = weights[i]
        inv = inv_colsum.new_zeros(plane)
        inv[:length] = inv_colsum[i]
        args = (x.view(groups, per_group, plane).numpy(), y.view(groups, per_group, plane).numpy(),
                w.view(-1).numpy(), inv.numpy(), offsets.numpy(), lo, n, steps, rows)
        if split_pixels:
            _walk_split_pixels(*args, threads)
        else:
            numba.set_num_threads(min(groups, threads))  # a thread without a group would spin at the end
            try:
                _walk_split_groups(*args)
            finally:
                numba.set_num_threads(threads)
        v[i] = (x if steps % 2 == 0 else y)[:c, :length]
    return v


# ---------------------------------------------------------------------------------------------- numba.cuda
# Each step needs the whole previous one: either one launch per step (a launch costs ~10-30 us from Python,
# more than a 128 x 128 step's work on a GPU) or one cooperative launch of a grid that is resident at once,
# whose threads stride over the items and synchronise the grid between steps. The second is used where the
# device and the toolchain allow it (grid sync links CUDA's device runtime); else the first, with a warning.

@cuda.jit(device=True)
def _walk_item(src, dst, weights, inv_colsum, offsets, lo, n, i):
    q = lo + i % n
    c = (i // n) % src.shape[1]
    b = i // (n * src.shape[1])
    centre = src[b, c, q]
    acc = numba.float32(0)  # widens to float64 for float64 input
    for d in range(offsets.shape[0]):
        o = offsets[d]
        acc += weights[b, d, q] * (src[b, c, q + o] - centre) + weights[b, d, q - o] * (src[b, c, q - o] - centre)
    dst[b, c, q] = centre + acc * inv_colsum[b, q]


@cuda.jit
def _walk_cuda_step(src, dst, weights, inv_colsum, offsets, lo, n):
    i = cuda.grid(1)
    if i < src.shape[0] * src.shape[1] * n:
        _walk_item(src, dst, weights, inv_colsum, offsets, lo, n, i)


@cuda.jit
def _walk_cuda_steps(v, spare, weights, inv_colsum, offsets, lo, n, steps):
    grid = cuda.cg.this_grid()
    for s in range(steps):
        for i in range(cuda.grid(1), v.shape[0] * v.shape[1] * n, cuda.gridsize(1)):
            if s % 2 == 0:
                _walk_item(v, spare, weights, inv_colsum, offsets, lo, n, i)
            else:
                _walk_item(spare, v, weights, inv_colsum, offsets, lo, n, i)
        grid.sync()


@functools.cache
def _cooperative_problem() -> str | None:
    """Why the one-launch walk cannot run here (None when it can); probed once on a 1 x 1 image."""
    try:
        x = torch.zeros(1, 1, 2, device="cuda" if not _backend.cuda_simulator() else "cpu")
        a = _backend.as_cuda_array
        _walk_cuda_steps.specialize(a(x), a(x), a(x), a(x[0]), a(torch.zeros(1, dtype=torch.int64, device=x.device)),
                                    0, 1, 1)
    except Exception as e:  # a missing libcudadevrt, an old driver, MPS: the per-step launches still work
        warnings.warn(f"random_walk: one cooperative launch for all steps is not possible ({type(e).__name__}: {e}); "
                      "launching once per step", RuntimeWarning, stacklevel=4)
        return str(e)
    return None


def _walk_cuda(v, spare, weights, inv_colsum, offsets, lo, n, steps):
    a = _backend.as_cuda_array
    args = (a(v), a(spare), a(weights), a(inv_colsum), a(offsets), lo, n)
    total = v.shape[0] * v.shape[1] * n
    if steps > 1 and _cooperative_problem() is None:
        kernel = _walk_cuda_steps.specialize(*args, steps)
        overloads = kernel.overloads  # the specialised kernel's one overload (the simulator's fake one)
        resident = (next(iter(overloads.values()), None) or overloads[None]).max_cooperative_grid_blocks(
            _backend.THREADS_PER_BLOCK)
        blocks, threads, stream = _backend.launch(total)
        kernel[min(blocks, resident), threads, stream](*args, steps)
        return v if steps % 2 == 0 else spare
    launch = _walk_cuda_step[_backend.launch(total)]
    bufs = args[:2]
    for s in range(steps):
        launch(bufs[s % 2], bufs[1 - s % 2], *args[2:])
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
