"""region_grow against a pure-Python union-find like the DSRG authors' `generate_seed_step`.

Sizes from the issue: one 21-class 321x321 image with three present classes (DSRG's crop), and a batch of
20 images at 41x41 (DSRG's training output size). `union_find_reference` is also the tests' oracle.
"""
import numpy as np
import torch
import torch.nn.functional as F

from kernels._backend import numba_cuda_usable
from kernels.bench._harness import Case
from kernels.region_grow import region_grow

REFERENCE = "union-find (Python)"
_LINKS = ((0, -1), (-1, -1), (-1, 0), (-1, 1))  # west and the three north neighbours: 8-connectivity


def union_find_reference(probs, seeds, present, th_fg=0.85, th_bg=0.99):
    """The authors' algorithm on one image, in plain Python: probs float [C,H,W], seeds bool [C,H,W],
    present bool [C] (numpy). Classes are visited in ascending order, one two-pass union-find each, exactly
    as in speedinghzl/DSRG pylayers.py (th1 = th_bg, th2 = th_fg). Returns the grown seeds."""
    C, H, W = probs.shape
    probs, seeds = probs.astype(np.float64).tolist(), seeds.tolist()
    classes = [c for c in range(C) if present[c]]
    label = [[0] * W for _ in range(H)]  # 1-based class, 0 = none
    for c in range(C):
        for y in range(H):
            for x in range(W):
                if seeds[c][y][x]:
                    label[y][x] = c + 1
    for y in range(H):
        for x in range(W):
            values = [probs[c][y][x] for c in classes]
            if not values:
                continue
            value = max(values)
            c = classes[values.index(value)]
            if value > th_fg and (c != 0 or value > th_bg):
                label[y][x] = c + 1
    for c in classes:
        parent = {}

        def find(a):
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for y in range(H):
            for x in range(W):
                if label[y][x] == c + 1:
                    parent[(y, x)] = (y, x)
                    for dy, dx in _LINKS:
                        q = (y + dy, x + dx)
                        if q in parent:
                            parent[find(q)] = find((y, x))
        seeded, excluded = set(), set()
        for p in parent:
            if seeds[c][p[0]][p[1]]:
                seeded.add(find(p))
            elif sum(seeds[k][p[0]][p[1]] for k in range(C)) == 1:
                excluded.add(p)
        for p in parent:
            if p not in excluded and find(p) in seeded:
                seeds[c][p[0]][p[1]] = True
    return np.array(seeds, dtype=bool)


def random_inputs(B, C, H, W, n_present, generator, dtype=torch.float32):
    """Smooth random probabilities (blobs, so components are object-like), the present classes (background
    plus n_present - 1 others) favoured, and seeds at their most confident pixels."""
    coarse = torch.randn(B, C, max(H // 16, 2), max(W // 16, 2), generator=generator) * 6
    logits = F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)
    present = torch.zeros(B, C, dtype=torch.bool)
    present[:, 0] = True
    for b in range(B):
        present[b, 1 + torch.randperm(C - 1, generator=generator)[:n_present - 1]] = True
    probs = (logits - 8 * (~present)[:, :, None, None]).softmax(1).to(dtype)
    seeds = (probs > 0.97) & present[:, :, None, None]
    return probs, seeds, present


def _reference_batch(probs, seeds, present):
    p, s, k = probs.numpy(), seeds.numpy(), present.numpy()
    return [union_find_reference(p[b], s[b], k[b]) for b in range(len(p))]


def cases(device, quick):
    g = torch.Generator().manual_seed(0)
    sizes = [("21x48x48 P=3", (1, 21, 48, 48)), ("4x21x41x41", (4, 21, 41, 41))] if quick else \
        [("21x321x321 P=3", (1, 21, 321, 321)), ("20x21x41x41", (20, 21, 41, 41))]
    backends = ["torch"] + (["cuda"] if device.type == "cuda" and numba_cuda_usable() else
                            ["numba"] if device.type == "cpu" else [])
    out = []
    for size, shape in sizes:
        probs, seeds, present = random_inputs(*shape, n_present=3, generator=g)
        expected = torch.from_numpy(np.stack(_reference_batch(probs, seeds, present)))
        out.append(Case("region_grow", size, REFERENCE,
                        lambda p=probs, s=seeds, k=present: _reference_batch(p, s, k), repeat=1))
        on_device = [t.to(device) for t in (probs, seeds, present)]
        for backend in backends:
            got = region_grow(*on_device, backend=backend).cpu()
            if not torch.equal(got, expected):
                raise AssertionError(f"region_grow {backend} differs from the union-find reference at {size}")
            out.append(Case("region_grow", size, backend,
                            lambda a=on_device, b=backend: region_grow(*a, backend=b), reference=REFERENCE,
                            repeat=3 if backend == "torch" else 20))
    return out
