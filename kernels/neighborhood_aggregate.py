"""PSI contextual pattern propagation (Xu et al., ICCV 2021, Sec. 3.2, Eq. 2-4): multi-level neighbourhood
attention with one softmax over the union of all levels' neighbours.

For a destination position i = (y, x) of the query grid and a level l, p_l maps i onto level l's grid by
Eq. 2, per axis: floor(i / 2^s) when level l is coarser (s = strides[l] > 0), i * 2^-s when it is finer or
the same (s <= 0). The neighbours of i on level l are the positions j of that level with Chebyshev
distance |p_l(i) - j| < radii[l], clipped at the level's borders (Eq. 3). The edge weights are the plain
inner products <query_i, key_j> (no scaling), normalised by ONE softmax over the neighbours of all levels
together; level l's output is sum_{j on level l} A_ij value_j, so each level's 1x1 projection W^(l), b^(l)
of Eq. 4 can be applied afterwards. A position with no neighbour at all gets 0.

Neighbour n of every position is fixed once per geometry in a table J[HW, N] of packed level positions
(-1 outside), N = sum_l (2 radii[l] - 1)^2, and inverted to a CSR list of (i, n) per level position so the
key/value gradients are gathered, not scattered (no atomics, deterministic). Memory is O(HW N) for J, the
attention A and its gradient, never O((HW)^2). Backends: numba.cuda (one thread per position), numba CPU
(prange over positions) - both compiled from the same per-position functions - and torch (one gather per
neighbour offset). Every backend is a torch.autograd.Function with its own backward.
"""
import functools
import math

import numba
import torch
from numba import cuda

from kernels._backend import as_cuda_array, launch, pick

# reassociation lets LLVM vectorise the channel reductions; no finite-math flags, -inf marks "no logit"
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def neighborhood_aggregate(query: torch.Tensor, keys: list, values: list, radii: list, strides: list,
                           backend: str | None = None) -> list:
    """Per level l, sum_j A_ij values[l]_j as [B,Cv,H,W] (see the module docstring).

    query: [B,C,H,W], the destination grid; keys[l]: [B,C,H_l,W_l]; values[l]: [B,Cv,H_l,W_l] (one Cv for
    all levels); radii[l] >= 1: neighbour window radius rho^(l) of Eq. 3 (1 = the co-located node only,
    4 = a 7x7 window); strides[l]: log2 of level l's stride over the query grid's, i.e. S_k - S_l in Eq. 2
    where S is the paper's scale exponent (a finer map has a larger S): level l's grid is the query grid
    scaled by 2^-strides[l]. PSI (destination conv5 at output stride 16, levels conv2..conv5 at strides
    4, 8, 16, 16): radii (1, 1, 1, 4), strides (-2, -1, 0, 0). float16 / bfloat16 inputs (autocast) are
    computed in float32 and give float32 outputs."""
    _check(query, keys, values, radii, strides)
    if any(t.dtype in (torch.float16, torch.bfloat16) for t in (query, *keys, *values)):
        # under autocast: one softmax over all levels in float32 (autocast runs softmax in float32 too); the
        # kernels take float32 and float64, and the casts carry the gradients back
        query, keys, values = query.float(), [k.float() for k in keys], [v.float() for v in values]
    impl = _IMPLS[pick(query, backend)]
    radii, strides = tuple(int(r) for r in radii), tuple(int(s) for s in strides)
    return list(_Aggregate.apply(impl, radii, strides, query, *keys, *values))


def _check(query, keys, values, radii, strides):
    L = len(keys)
    if not (L == len(values) == len(radii) == len(strides) and L >= 1):
        raise ValueError("keys, values, radii and strides need one entry per level, at least one level")
    if query.dim() != 4 or not query.is_floating_point():
        raise ValueError(f"query must be a float [B,C,H,W] tensor, got {query.dtype} {tuple(query.shape)}")
    B, C = query.shape[:2]
    Cv = values[0].shape[1] if values[0].dim() == 4 else -1
    for l, (k, v, r) in enumerate(zip(keys, values, radii)):
        if k.dim() != 4 or k.shape[:2] != (B, C):
            raise ValueError(f"keys[{l}] must be [{B},{C},H_l,W_l], got {tuple(k.shape)}")
        if v.dim() != 4 or v.shape != (B, Cv) + k.shape[2:]:
            raise ValueError(f"values[{l}] must be [{B},{Cv},{k.shape[2]},{k.shape[3]}], got {tuple(v.shape)}")
        if k.dtype != query.dtype or v.dtype != query.dtype or k.device != query.device or v.device != query.device:
            raise ValueError(f"keys[{l}] and values[{l}] must match the query's dtype and device")
        if int(r) != r or r < 1:
            raise ValueError(f"radii[{l}] must be an integer >= 1, got {r}")
    if any(int(s) != s for s in strides):
        raise ValueError(f"strides must be integers (log2 of the stride ratio), got {strides}")


@functools.lru_cache(maxsize=32)
def _plan(H, W, shapes, radii, strides, device):
    """(J [HW, N] packed level position of neighbour n of position i or -1, level [N] of each neighbour,
    CSR start [P+1] and entry [E] = i * N + n of the valid (i, n) per packed level position j)."""
    tables, level, offset = [], [], 0
    for l, ((h, w), r, s) in enumerate(zip(shapes, radii, strides)):
        window = torch.arange(1 - r, r, device=device)
        jy = _project(torch.arange(H, device=device), s)[:, None] + window  # [H, 2r-1]
        jx = _project(torch.arange(W, device=device), s)[:, None] + window  # [W, 2r-1]
        inside = ((jy >= 0) & (jy < h))[:, None, :, None] & ((jx >= 0) & (jx < w))[None, :, None, :]
        j = offset + jy[:, None, :, None] * w + jx[None, :, None, :]
        tables.append(torch.where(inside, j, -1).reshape(H * W, -1))
        level += [l] * (2 * r - 1) ** 2
        offset += h * w
    J = torch.cat(tables, 1)
    flat = J.flatten()
    valid = (flat >= 0).nonzero().squeeze(1)
    entry = valid[torch.argsort(flat[valid], stable=True)]
    start = torch.zeros(offset + 1, dtype=torch.int64, device=device)
    start[1:] = torch.cumsum(torch.bincount(flat[valid], minlength=offset), 0)
    return J, torch.tensor(level, device=device), start, entry


def _project(i, s):
    """Eq. 2 on one axis: floor(i / 2^s) onto a coarser level, i * 2^-s onto a finer or equal one."""
    return i >> s if s > 0 else i << -s


class _Aggregate(torch.autograd.Function):
    """Packs every tensor channels-last ([B, positions, C], levels concatenated) for the backends; each
    backend returns A [B, HW, N] and out [B, L, HW, Cv] and takes g [B, L, HW, Cv] in backward."""

    @staticmethod
    def forward(ctx, impl, radii, strides, query, *tensors):
        L = len(radii)
        keys, values = tensors[:L], tensors[L:]
        B, _, H, W = query.shape
        shapes = tuple(tuple(k.shape[2:]) for k in keys)
        J, level, start, entry = _plan(H, W, shapes, radii, strides, query.device)
        q, k, v = _pack([query]), _pack(keys), _pack(values)
        A, out = impl.forward(q, k, v, J, level)
        ctx.save_for_backward(q, k, v, A)
        ctx.impl, ctx.plan, ctx.shapes, ctx.grid = impl, (J, level, start, entry), shapes, (H, W)
        return tuple(_unpack(out[:, l], H, W) for l in range(L))

    @staticmethod
    def backward(ctx, *grads):
        q, k, v, A = ctx.saved_tensors
        (H, W), shapes = ctx.grid, ctx.shapes
        g = q.new_zeros(q.shape[0], len(grads), q.shape[1], v.shape[2])
        for l, gl in enumerate(grads):
            if gl is not None:  # an output that takes no part in the loss
                _copy_channels_last(g[:, l], gl)
        dq, dk, dv = ctx.impl.backward(q, k, v, A, g, *ctx.plan)
        sizes = [h * w for h, w in shapes]
        dkeys = [_unpack(t, h, w) for t, (h, w) in zip(dk.split(sizes, 1), shapes)]
        dvalues = [_unpack(t, h, w) for t, (h, w) in zip(dv.split(sizes, 1), shapes)]
        return (None, None, None, _unpack(dq, H, W), *dkeys, *dvalues)


def _pack(maps):
    """[B, sum_l H_l W_l, C]: the maps channels-last, one after the other (one copy)."""
    B, C = maps[0].shape[:2]
    packed = maps[0].new_empty(B, sum(m.shape[2] * m.shape[3] for m in maps), C)
    offset = 0
    for m in maps:
        _copy_channels_last(packed[:, offset:offset + m.shape[2] * m.shape[3]], m)
        offset += m.shape[2] * m.shape[3]
    return packed


def _copy_channels_last(dst, m):
    """dst [B, h*w, C] (a view) <- m [B, C, h, w]."""
    dst.view(m.shape[0], m.shape[2], m.shape[3], m.shape[1]).copy_(m.permute(0, 2, 3, 1))


def _unpack(t, h, w):
    return t.reshape(t.shape[0], h, w, t.shape[-1]).permute(0, 3, 1, 2).contiguous()


# --- torch: one gather per neighbour ----------------------------------------------------------------------

class _Torch:
    @staticmethod
    def forward(q, k, v, J, level):
        B, HW, _ = q.shape
        logits = q.new_empty(B, HW, J.shape[1])
        for n in range(J.shape[1]):
            logits[:, :, n] = (q * k[:, J[:, n].clamp(min=0)]).sum(2).masked_fill(J[:, n] < 0, -math.inf)
        A = _softmax(logits)
        out = q.new_zeros(B, int(level.max()) + 1, HW, v.shape[2])
        for n, l in enumerate(level.tolist()):
            out[:, l] += A[:, :, n, None] * v[:, J[:, n].clamp(min=0)]
        return A, out

    @staticmethod
    def backward(q, k, v, A, g, J, level, start, entry):
        levels = level.tolist()
        dA = torch.stack([(g[:, l] * v[:, J[:, n].clamp(min=0)]).sum(2) for n, l in enumerate(levels)], 2)
        D = A * (dA - (A * dA).sum(2, keepdim=True))  # softmax backward; 0 outside (A = 0 there)
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for n, l in enumerate(levels):
            j = J[:, n].clamp(min=0)
            dq += D[:, :, n, None] * k[:, j]
            dk.index_add_(1, j, D[:, :, n, None] * q)
            dv.index_add_(1, j, A[:, :, n, None] * g[:, l])
        return dq, dk, dv


def _softmax(logits):
    """Softmax over the last dim where -inf marks a missing neighbour; all missing gives 0, not NaN."""
    top = logits.amax(-1, keepdim=True)
    e = torch.exp(logits - torch.where(torch.isfinite(top), top, 0))
    total = e.sum(-1, keepdim=True)
    return e / torch.where(total > 0, total, 1)


# --- numba CPU and numba.cuda: per-position functions compiled for both ----------------------------------

def _forward_position(b, i, q, k, v, J, level, A, out):
    """A[b,i,:] = softmax of <q_i, k_j> over the neighbours, out[b,l,i] = sum over level l of A v_j.
    Rows are taken as 1-d views: the channel loops vectorise (4-d indexing there does not)."""
    qi = q[b, i]
    top = -math.inf
    for n in range(J.shape[1]):
        if J[i, n] >= 0:
            kj = k[b, J[i, n]]
            dot = 0.0
            for c in range(qi.size):
                dot += qi[c] * kj[c]
            A[b, i, n] = dot
            top = max(top, A[b, i, n])
    total = 0.0
    for n in range(J.shape[1]):
        e = math.exp(A[b, i, n] - top) if J[i, n] >= 0 else 0.0
        A[b, i, n] = e
        total += e
    for n in range(J.shape[1]):
        if J[i, n] >= 0:
            A[b, i, n] /= total
            a, vj, o = A[b, i, n], v[b, J[i, n]], out[b, level[n], i]
            for c in range(o.size):
                o[c] += a * vj[c]


def _backward_position(b, i, k, v, J, level, A, g, D, dq):
    """D = dL/dlogits (softmax backward) and dq[b,i] = sum_n D_n k_j."""
    weighted = 0.0
    for n in range(J.shape[1]):
        dot = 0.0
        if J[i, n] >= 0:
            gi, vj = g[b, level[n], i], v[b, J[i, n]]
            for c in range(gi.size):
                dot += gi[c] * vj[c]
        D[b, i, n] = dot
        weighted += A[b, i, n] * dot
    dqi = dq[b, i]
    for n in range(J.shape[1]):
        D[b, i, n] = A[b, i, n] * (D[b, i, n] - weighted)
        if J[i, n] >= 0:
            d, kj = D[b, i, n], k[b, J[i, n]]
            for c in range(dqi.size):
                dqi[c] += d * kj[c]


def _backward_level_position(b, j, q, g, A, D, level, start, entry, dk, dv):
    """dk[b,j] = sum D_in q_i and dv[b,j] = sum A_in g_i over the (i, n) that have j as neighbour."""
    N = A.shape[2]
    dkj, dvj = dk[b, j], dv[b, j]
    for t in range(start[j], start[j + 1]):
        i, n = entry[t] // N, entry[t] % N
        d, qi = D[b, i, n], q[b, i]
        for c in range(dkj.size):
            dkj[c] += d * qi[c]
        a, gi = A[b, i, n], g[b, level[n], i]
        for c in range(dvj.size):
            dvj[c] += a * gi[c]


_cpu = functools.partial(numba.njit, fastmath=_FASTMATH, cache=True)
_forward_cpu_position = _cpu(_forward_position)
_backward_cpu_position = _cpu(_backward_position)
_backward_cpu_level_position = _cpu(_backward_level_position)


@numba.njit(parallel=True, cache=True)
def _forward_cpu(q, k, v, J, level, A, out):
    B, HW = q.shape[0], q.shape[1]
    for t in numba.prange(B * HW):
        _forward_cpu_position(t // HW, t % HW, q, k, v, J, level, A, out)


@numba.njit(parallel=True, cache=True)
def _backward_cpu(q, k, v, A, g, J, level, start, entry, D, dq, dk, dv):
    B, HW, P = q.shape[0], q.shape[1], k.shape[1]
    for t in numba.prange(B * HW):
        _backward_cpu_position(t // HW, t % HW, k, v, J, level, A, g, D, dq)
    for t in numba.prange(B * P):
        _backward_cpu_level_position(t // P, t % P, q, g, A, D, level, start, entry, dk, dv)


_forward_gpu_position = cuda.jit(device=True)(_forward_position)
_backward_gpu_position = cuda.jit(device=True)(_backward_position)
_backward_gpu_level_position = cuda.jit(device=True)(_backward_level_position)


@cuda.jit
def _forward_gpu(q, k, v, J, level, A, out):
    t = cuda.grid(1)
    if t < q.shape[0] * q.shape[1]:
        _forward_gpu_position(t // q.shape[1], t % q.shape[1], q, k, v, J, level, A, out)


@cuda.jit
def _backward_gpu_query(k, v, J, level, A, g, D, dq):
    t = cuda.grid(1)
    if t < dq.shape[0] * dq.shape[1]:
        _backward_gpu_position(t // dq.shape[1], t % dq.shape[1], k, v, J, level, A, g, D, dq)


@cuda.jit
def _backward_gpu_level(q, g, A, D, level, start, entry, dk, dv):
    t = cuda.grid(1)
    if t < dk.shape[0] * dk.shape[1]:
        _backward_gpu_level_position(t // dk.shape[1], t % dk.shape[1], q, g, A, D, level, start, entry, dk, dv)


def _buffers(q, k, v, J, level):
    """Zeroed A [B,HW,N] and outputs [B,L,HW,Cv]: the kernels accumulate into them."""
    B, HW, _ = q.shape
    return q.new_zeros(B, HW, J.shape[1]), q.new_zeros(B, int(level.max()) + 1, HW, v.shape[2])


class _Numba:
    @staticmethod
    def forward(q, k, v, J, level):
        A, out = _buffers(q, k, v, J, level)
        _forward_cpu(*(t.detach().numpy() for t in (q, k, v, J, level, A, out)))
        return A, out

    @staticmethod
    def backward(q, k, v, A, g, J, level, start, entry):
        D, dq, dk, dv = torch.empty_like(A), torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        _backward_cpu(*(t.detach().numpy() for t in (q, k, v, A, g, J, level, start, entry, D, dq, dk, dv)))
        return dq, dk, dv


class _Cuda:
    @staticmethod
    def forward(q, k, v, J, level):
        A, out = _buffers(q, k, v, J, level)
        _forward_gpu[launch(q.shape[0] * q.shape[1])](*map(as_cuda_array, (q, k, v, J, level, A, out)))
        return A, out

    @staticmethod
    def backward(q, k, v, A, g, J, level, start, entry):
        D, dq, dk, dv = torch.empty_like(A), torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        q_, k_, v_, A_, g_, J_, level_, start_, entry_, D_, dq_, dk_, dv_ = map(
            as_cuda_array, (q, k, v, A, g, J, level, start, entry, D, dq, dk, dv))
        _backward_gpu_query[launch(q.shape[0] * q.shape[1])](k_, v_, J_, level_, A_, g_, D_, dq_)
        _backward_gpu_level[launch(k.shape[0] * k.shape[1])](q_, g_, A_, D_, level_, start_, entry_, dk_, dv_)
        return dq, dk, dv


_IMPLS = {"torch": _Torch, "numba": _Numba, "cuda": _Cuda}
