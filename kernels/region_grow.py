"""DSRG seeded region growing (Huang et al., CVPR 2018, Eq. 3 and Sec. 3.3).

`region_grow(probs, seeds, present, th_fg, th_bg, mode)` returns the grown seeds; class 0 is background,
seeds are never removed.

mode="components" is the authors' released implementation (speedinghzl/DSRG, pylayers.py,
`generate_seed_step` with th1 = th_bg, th2 = th_fg):
  (a) argmax (first on ties) and max of the probabilities over the image's present classes;
  (b) a label map: every seeded pixel gets its seed class (the highest one when it has several, as the
      authors' `label_map[index1[1], index1[2]] = index1[0] + 1` keeps the last write); then every pixel
      whose max is > th_fg with a foreground argmax, or > th_fg and > th_bg with the background argmax (the
      authors' nested test; with th_bg >= th_fg this is "> th_bg"), gets its argmax;
  (c) per present class c: the 8-connected components of (label map == c); a component holding a pixel
      seeded for c becomes seeded for c, except its pixels seeded for exactly one class other than c
      (they still connect the component).
mode="bfs" is the paper's text read literally: per present class c, breadth-first from its seeds over
8-neighbours; an unseeded pixel joins when its argmax is c and its probability of c is >= th_c (Eq. 3),
th_0 = th_bg, th_c = th_fg otherwise.

In both modes a pixel can only join the class of its label map (components) or its argmax (bfs), so the
classes touch disjoint pixel sets and can be grown at once: the per-class visiting order ("later classes
see earlier seeds") never changes the result. Every backend computes, per pixel, a `region` class (the
label map in "components", the argmax of an eligible unseeded pixel in "bfs"; -1 for none), a `touch`
flag (the pixel is seeded for its region class; in "bfs": it has a seeded 8-neighbour of that class) and
an `exempt` flag, then seeds every non-exempt pixel of a component (8-connected, equal region >= 0) that
holds a touch pixel. Components: numba.cuda lock-free union-find, numba CPU flood fill per image, torch
min-label propagation. Thresholds are compared in float64, so a float32 probability meets the exact
threshold, as numpy compares the authors' float64 CRF output.
"""
import math

import numba
import numpy as np
import torch
import torch.nn.functional as F
from numba import cuda

from kernels._backend import as_cuda_array, launch, pick

MODES = ("components", "bfs")
_PARALLEL_PIXELS = 1 << 20
# (dy, dx) of the 8-neighbourhood
_NEIGHBOURS8 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def region_grow(probs: torch.Tensor, seeds: torch.Tensor, present: torch.Tensor, th_fg: float = 0.85,
                th_bg: float = 0.99, mode: str = "components", backend: str | None = None) -> torch.Tensor:
    """Grown seeds, bool [B,C,H,W].

    probs: float [B,C,H,W] class probabilities; seeds: bool [B,C,H,W]; present: bool [B,C] (the classes the
    image holds, background included when it takes part). See the module docstring for the definitions."""
    _check(probs, seeds, present, mode)
    grow = {"torch": _grow_torch, "numba": _grow_numba, "cuda": _grow_cuda}[pick(probs, backend)]
    return grow(probs, seeds, present, float(th_fg), float(th_bg), mode == "bfs")


def _check(probs, seeds, present, mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if probs.dim() != 4 or not probs.is_floating_point():
        raise ValueError(f"probs must be a float [B,C,H,W] tensor, got {probs.dtype} {tuple(probs.shape)}")
    if seeds.shape != probs.shape or seeds.dtype != torch.bool:
        raise ValueError(f"seeds must be bool {tuple(probs.shape)}, got {seeds.dtype} {tuple(seeds.shape)}")
    if present.shape != probs.shape[:2] or present.dtype != torch.bool:
        raise ValueError(f"present must be bool {tuple(probs.shape[:2])}, got {present.dtype} "
                         f"{tuple(present.shape)}")


# --- torch: vectorised rules, min-label propagation ------------------------------------------------------

def _grow_torch(probs, seeds, present, th_fg, th_bg, bfs):
    top, arg = _present_max(probs, present)
    region, touch, exempt = _bfs_rule(top, arg, seeds, th_fg, th_bg) if bfs else \
        _components_rule(top, arg, seeds, present, th_fg, th_bg)
    add = _grown_torch(region, touch) & ~exempt
    index = region.clamp(min=0).unsqueeze(1)
    grown = seeds.clone()
    return grown.scatter_(1, index, grown.gather(1, index) | add.unsqueeze(1))


def _present_max(probs, present):
    """(a): float64 max and first argmax over the present classes; argmax -1 where none is present."""
    C = probs.shape[1]
    masked = probs.masked_fill(~present[:, :, None, None], -math.inf)
    top = masked.amax(1)
    classes = torch.arange(C, device=probs.device).view(1, C, 1, 1)
    arg = torch.where(masked == top.unsqueeze(1), classes, C).amin(1)
    arg = arg.masked_fill(~present.any(1)[:, None, None], -1)
    return top.double(), arg


def _at(mask, index):
    """mask[b, index[b,y,x], y, x] (False where index < 0) for a [B,C,H,W] mask and a [B,H,W] index."""
    return mask.gather(1, index.clamp(min=0).unsqueeze(1)).squeeze(1) & (index >= 0)


def _components_rule(top, arg, seeds, present, th_fg, th_bg):
    """(b) the authors' label map and (c)'s seed test and exemption."""
    C = seeds.shape[1]
    classes = torch.arange(C, device=seeds.device).view(1, C, 1, 1)
    label = torch.where(seeds, classes, -1).amax(1)
    confident = (top > th_fg) & ((arg > 0) | (top > th_bg))
    label = torch.where(confident, arg, label)
    in_present = present.gather(1, label.clamp(min=0).flatten(1)).view_as(label) & (label >= 0)
    region = label.masked_fill(~in_present, -1)
    own = _at(seeds, region)
    exempt = (seeds.sum(1) == 1) & ~own
    return region, own, exempt


def _bfs_rule(top, arg, seeds, th_fg, th_bg):
    """Eq. 3: unseeded pixels with argmax c and H_c >= th_c; a component grows when it touches a c seed."""
    threshold = torch.full_like(top, th_fg).masked_fill(arg == 0, th_bg)  # float64, like top
    eligible = ~seeds.any(1) & (arg >= 0) & (top >= threshold)
    region = arg.masked_fill(~eligible, -1)
    near = F.max_pool2d(seeds.float(), 3, stride=1, padding=1) > 0
    return region, _at(near, region), torch.zeros_like(eligible)


def _grown_torch(region, touch):
    """Min-label propagation over same-valued 8-neighbours with pointer jumping, to a fixed point."""
    B, H, W = region.shape
    n = region.numel()
    inside = region >= 0
    padded = F.pad(region, (1, 1, 1, 1), value=-1)
    same = [(padded[:, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W] == region) & inside for dy, dx in _NEIGHBOURS8]
    label = torch.arange(n, device=region.device).view(B, H, W).masked_fill(~inside, n)
    while True:
        lp = F.pad(label, (1, 1, 1, 1), value=n)
        new = label
        for (dy, dx), s in zip(_NEIGHBOURS8, same):
            new = torch.minimum(new, torch.where(s, lp[:, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W], n))
        # labels are pixel indices of the same component and never exceed their own index, so following
        # one (pointer jumping) only lowers them; a fixed point is constant on each component
        new = torch.cat([new.flatten(), new.new_tensor([n])])[new]
        if torch.equal(new, label):
            break
        label = new
    hit = torch.zeros(n + 1, dtype=torch.bool, device=region.device)
    hit[label[touch]] = True
    return hit[label] & inside




# --- numba CPU and numba.cuda: one per-pixel rule, compiled for both ---------------------------------------

def _pixel_rule(probs, seeds, present, active, b, y, x, th_fg, th_bg, bfs):
    """(region, touch, exempt) of pixel (b, y, x); the same definitions as the torch rules. Only the
    image's present or seeded classes are visited (active[b]: those ascending, then C): a loop over all C
    classes per pixel was most of the cost."""
    C, H, W = probs.shape[1], probs.shape[2], probs.shape[3]
    best, top, n_seeds, highest = -1, 0.0, 0, -1
    for t in range(C):
        c = active[b, t]
        if c == C:
            break
        if present[b, c]:
            value = float(probs[b, c, y, x])  # float64, also in the simulator (numpy compares float32)
            if best < 0 or value > top:  # strict: the first max wins ties
                best, top = c, value
        if seeds[b, c, y, x]:
            n_seeds, highest = n_seeds + 1, c
    if bfs:
        threshold = th_bg if best == 0 else th_fg
        if n_seeds > 0 or best < 0 or not top >= threshold:
            return -1, False, False
        touch = False
        for yy in range(max(y - 1, 0), min(y + 2, H)):
            for xx in range(max(x - 1, 0), min(x + 2, W)):
                touch = touch or seeds[b, best, yy, xx] != 0
        return best, touch, False
    label = highest
    if best >= 0 and top > th_fg and (best > 0 or top > th_bg):
        label = best
    if label < 0 or not present[b, label]:
        return -1, False, False
    own = seeds[b, label, y, x] != 0
    return label, own, n_seeds == 1 and not own


_rule_cpu = numba.njit(cache=True, inline="always")(_pixel_rule)  # a call per pixel costs as much as the rule
_rule_gpu = cuda.jit(device=True)(_pixel_rule)


@numba.njit(cache=True)
def _any(flat):
    """flat.any() as an OR-reduction, which vectorises (ndarray.any does not)."""
    bits = 0
    for i in range(flat.size):
        bits |= flat[i]
    return bits != 0


def _grow_images(probs, seeds, present, th_fg, th_bg, bfs, out):
    """Per image (in parallel): its active classes, the rule per pixel, then a flood fill from the touch
    pixels through equal region values, then the seeds."""
    B, C, H, W = probs.shape
    active = np.full((B, C), C, np.int64)
    for b in numba.prange(B):
        n = 0
        for c in range(C):
            if present[b, c] or _any(seeds[b, c].ravel()):
                active[b, n] = c
                n += 1
        region = np.empty((H, W), np.int64)
        grown = np.empty((H, W), np.bool_)
        exempt = np.empty((H, W), np.bool_)
        stack = np.empty(H * W, np.int64)
        top = 0
        for y in range(H):
            for x in range(W):
                region[y, x], grown[y, x], exempt[y, x] = _rule_cpu(probs, seeds, present, active, b, y, x,
                                                                    th_fg, th_bg, bfs)
                if grown[y, x]:  # a touch pixel
                    stack[top] = y * W + x
                    top += 1
        while top > 0:
            top -= 1
            y, x = divmod(stack[top], W)
            for yy in range(max(y - 1, 0), min(y + 2, H)):
                for xx in range(max(x - 1, 0), min(x + 2, W)):
                    if region[yy, xx] == region[y, x] and not grown[yy, xx]:
                        grown[yy, xx] = True
                        stack[top] = yy * W + xx
                        top += 1
        for y in range(H):
            for x in range(W):
                if grown[y, x] and not exempt[y, x]:
                    out[b, region[y, x], y, x] = 1


_grow_images_parallel = numba.njit(parallel=True, cache=True)(_grow_images)
_grow_images_serial = numba.njit(cache=True)(_grow_images)


def _grow_numba(probs, seeds, present, th_fg, th_bg, bfs):
    # the copy in numpy: torch would share out these 2 MB over its threads, a round trip that costs more
    # than the whole op when the cores are busy
    out = seeds.contiguous().numpy().copy()
    # the same for the images: shared out over threads only when there is enough work (DSRG's whole
    # 20 x 41 x 41 batch takes under 1 ms on one core)
    parallel = len(probs) > 1 and probs[:, 0].numel() >= _PARALLEL_PIXELS
    grow = _grow_images_parallel if parallel else _grow_images_serial
    grow(probs.detach().contiguous().numpy(), seeds.contiguous().view(torch.uint8).numpy(),
         present.contiguous().numpy(), th_fg, th_bg, bfs, out.view(np.uint8))
    return torch.from_numpy(out)


@cuda.jit(device=True)
def _root(parent, p):
    while parent[p] != p:
        p = parent[p]
    return p


@cuda.jit(device=True)
def _union(parent, a, b):
    """Lock-free union of the sets of a and b: the larger root is linked to the smaller one with an atomic
    min; if another thread relinked it first, retry from what it now points to (Playne & Hawick, IEEE TPDS
    2018)."""
    done = False
    while not done:
        a = _root(parent, a)
        b = _root(parent, b)
        if a == b:
            done = True
        else:
            if a > b:
                a, b = b, a
            old = cuda.atomic.min(parent, b, a)
            done = old == b
            b = old


@cuda.jit
def _rule_cuda(probs, seeds, present, active, th_fg, th_bg, bfs, region, flags, parent):
    """Per pixel: region class, flags (1 = touch, 2 = exempt), and a union-find singleton."""
    p = cuda.grid(1)
    if p < region.size:
        H, W = probs.shape[2], probs.shape[3]
        r, touch, exempt = _rule_gpu(probs, seeds, present, active, p // (H * W), (p // W) % H, p % W,
                                     th_fg, th_bg, bfs)
        region[p] = r
        flags[p] = (1 if touch else 0) + (2 if exempt else 0)
        parent[p] = p


@cuda.jit
def _link_cuda(region, parent, H, W):
    p = cuda.grid(1)
    if p < region.size and region[p] >= 0:
        x = p % W
        y = (p // W) % H
        # the west and the three north neighbours: each 8-adjacent pair once
        for dy, dx in ((0, -1), (-1, -1), (-1, 0), (-1, 1)):
            q = p + dy * W + dx
            if 0 <= y + dy and 0 <= x + dx < W and region[q] == region[p]:
                _union(parent, p, q)


@cuda.jit
def _mark_cuda(region, flags, parent, hit):
    p = cuda.grid(1)
    if p < region.size and region[p] >= 0 and flags[p] & 1:
        hit[_root(parent, p)] = 1


@cuda.jit
def _apply_cuda(region, flags, parent, hit, out):
    p = cuda.grid(1)
    if p < region.size and region[p] >= 0 and not flags[p] & 2 and hit[_root(parent, p)]:
        H, W = out.shape[2], out.shape[3]
        out[p // (H * W), region[p], (p // W) % H, p % W] = 1


def _grow_cuda(probs, seeds, present, th_fg, th_bg, bfs):
    B, C, H, W = probs.shape
    n = B * H * W
    out = seeds.clone()
    region = torch.empty(n, dtype=torch.int64, device=probs.device)
    parent = torch.empty(n, dtype=torch.int64, device=probs.device)
    flags = torch.empty(n, dtype=torch.uint8, device=probs.device)
    hit = torch.zeros(n, dtype=torch.uint8, device=probs.device)
    keep = present | seeds.flatten(2).any(2)  # the present or seeded classes, ascending, then C
    active = torch.where(keep, torch.arange(C, device=probs.device), C).sort(1).values
    probs_d, seeds_d, present_d, active_d, out_d, region_d, parent_d, flags_d, hit_d = map(as_cuda_array, (
        probs.contiguous(), seeds.contiguous().view(torch.uint8), present.contiguous().view(torch.uint8),
        active, out.view(torch.uint8), region, parent, flags, hit))
    grid = launch(n)
    _rule_cuda[grid](probs_d, seeds_d, present_d, active_d, th_fg, th_bg, bfs, region_d, flags_d, parent_d)
    _link_cuda[grid](region_d, parent_d, H, W)
    _mark_cuda[grid](region_d, flags_d, parent_d, hit_d)
    _apply_cuda[grid](region_d, flags_d, parent_d, hit_d, out_d)
    return out
