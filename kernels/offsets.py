"""IRNet's pixel-pair set and the line paths between the two pixels of each pair.

Shared by every backend of line_max_affinity and random_walk, so all of them see one enumeration."""
import functools

import numpy as np
import torch


def _check_radius(radius: int) -> None:
    if not isinstance(radius, (int, np.integer)) or isinstance(radius, bool) or radius < 1:
        raise ValueError(f"radius must be an integer >= 1, got {radius!r}")


@functools.cache
def _offsets(radius: int) -> np.ndarray:
    # IRNet (misc/indexing.py, get_all_dir_paths): each unordered pair once, |offset|^2 < r^2 (Eq. 2)
    dirs = [(0, dx) for dx in range(1, radius)]
    dirs += [(dy, dx) for dy in range(1, radius) for dx in range(-radius + 1, radius)
             if dy * dy + dx * dx < radius * radius]
    out = np.asarray(dirs, dtype=np.int64).reshape(-1, 2)
    out.flags.writeable = False
    return out


def neighbor_offsets(radius: int) -> torch.Tensor:
    """(dy, dx) of IRNet's pairs, LongTensor[D, 2]: `{(0, dx): 1 <= dx < r}` then
    `{(dy, dx): 1 <= dy < r, |dx| < r, dy^2 + dx^2 < r^2}`, in that order. D = 34 for r = 5, 152 for r = 10."""
    _check_radius(radius)
    return torch.from_numpy(_offsets(radius).copy())


def _path(dy: int, dx: int) -> list[tuple[int, int]]:
    # IRNet Eq. 7's Pi_ij: integer points of the box spanned by the two pixels whose distance to the line
    # through both centres is < 1, i.e. (dy*x - dx*y)^2 < dy^2 + dx^2 (exact in integers).
    box = [(y, x) for y in range(min(0, dy), max(0, dy) + 1) for x in range(min(0, dx), max(0, dx) + 1)]
    pts = [(y, x) for y, x in box if (dy * x - dx * y) ** 2 < dy * dy + dx * dx]
    # IRNet's order (farthest from the source first, stable), which decides who gets the gradient on ties
    return sorted(pts, key=lambda p: -abs(p[0]) - abs(p[1]))


@functools.cache
def _paths(radius: int) -> tuple[np.ndarray, np.ndarray]:
    paths = [_path(int(dy), int(dx)) for dy, dx in _offsets(radius)]
    points = np.asarray([p for path in paths for p in path], dtype=np.int64).reshape(-1, 2)
    starts = np.cumsum([0] + [len(path) for path in paths]).astype(np.int64)
    points.flags.writeable = False
    starts.flags.writeable = False
    return points, starts


def neighbor_paths(radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The path of every pair of `neighbor_offsets(radius)`, relative to the pair's first pixel, in CSR form:
    `points` LongTensor[P, 2] of (y, x) and `starts` LongTensor[D + 1]; pair d owns
    `points[starts[d]:starts[d + 1]]`, both endpoints included, the far endpoint first (IRNet's order)."""
    _check_radius(radius)
    points, starts = _paths(radius)
    return torch.from_numpy(points.copy()), torch.from_numpy(starts.copy())
