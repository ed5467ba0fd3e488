"""line_max_affinity against IRNet's method: gather every path point through a precomputed path index,
then take the max over each path (misc/indexing.py, PathIndex + edge_to_affinity).

The reference is also the float64 oracle of tests/test_kernels_affinity.py."""
import torch
import torch.nn.functional as F

from kernels.line_max_affinity import line_max_affinity
from kernels.bench._harness import Case
from kernels.offsets import neighbor_paths

REFERENCE = "gather-max (IRNet)"


def path_index(radius: int, height: int, width: int, device=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """IRNet's precomputed index, grouped by path length: (pairs [n], flat indices [n, L, H * W]) into the
    boundary padded by r - 1 columns on both sides and r - 1 rows below (the partner is never above)."""
    points, starts = neighbor_paths(radius)
    r1 = radius - 1
    padded_w = width + 2 * r1
    pixels = (torch.arange(height)[:, None] * padded_w + torch.arange(width) + r1).view(-1)
    lengths = starts.diff()
    groups = []
    for length in lengths.unique().tolist():
        pairs = torch.nonzero(lengths == length).view(-1)
        pts = points[starts[pairs, None] + torch.arange(length)]  # [n, L, 2]
        groups.append((pairs.to(device), (pixels + (pts[..., 0] * padded_w + pts[..., 1])[..., None]).to(device)))
    return groups


def gather_max_affinity(boundary: torch.Tensor, radius: int, index) -> torch.Tensor:
    """IRNet Eq. 7 the way IRNet computes it (edge_to_affinity): pad with 1 (a partner outside the image gets
    affinity 0), gather [n, L, H * W] values per path length, max_pool2d over L (its gradient goes to the
    first max in path order)."""
    b, h, w = boundary.shape
    r1 = radius - 1
    flat = F.pad(boundary, (r1, r1, 0, r1), value=1.0).view(b, -1)
    parts, order = [], []
    for pairs, idx in index:
        values = flat[:, idx.view(-1)].view(b, *idx.shape)
        parts.append(1 - F.max_pool2d(values, (idx.shape[1], 1)).squeeze(2))
        order.append(pairs)
    out = torch.cat(parts, 1)[:, torch.argsort(torch.cat(order))]
    return out.view(b, -1, h, w)


def cases(device: torch.device, quick: bool) -> list[Case]:
    sizes = [(5, 32, 32)] if quick else [(5, 128, 128), (10, 128, 128)]
    impls = ["cuda", "torch"] if device.type == "cuda" else ["numba", "torch"]
    out = []
    for radius, h, w in sizes:
        boundary = torch.rand(1, h, w, device=device)
        index = path_index(radius, h, w, device)
        size = f"{h}x{w} r={radius}"
        out.append(Case("line_max_affinity", size, REFERENCE,
                        lambda b=boundary, r=radius, i=index: gather_max_affinity(b, r, i)))
        out += [Case("line_max_affinity", size, impl,
                     lambda b=boundary, r=radius, impl=impl: line_max_affinity(b, r, backend=impl),
                     reference=REFERENCE, repeat=5)
                for impl in impls]
    return out
