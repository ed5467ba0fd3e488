"""CDSP's distance maps (Eq. 14, 16) as the authors' scripts store them: uint8 PNGs, read /255 in training.

Definitions (d = Euclidean distance in pixels to the nearest point, l = e^lam):
- `scribble_map`: points = foreground scribble pixels (1..K; background 0 and unlabelled 255 are not points);
  value 255 - floor(min(sqrt(l * dy^2 + l * dx^2), 255)); all 0 without a point (Eq. 16 times 255).
- `pseudo_map`: points = the boundary of the pseudo-label foreground (labels other than 0 and 255): foreground
  pixels with a 4-neighbour that is background or outside the image; value floor(min(sqrt(l * dy^2 +
  l * dx^2), 255)); all 255 without a foreground pixel (Eq. 14 times 255).

The release computes these by brute force over every point (`brute_force`, kept as the definition and the
benchmark's baseline). Here an exact Euclidean distance transform (scipy.ndimage on the CPU,
cupyx.scipy.ndimage for a CUDA tensor when cupy is installed) finds each pixel's nearest point, and the value
is computed from that point's offsets with the release's float64 expression, so the bytes are identical.
Points at the same integer squared distance can differ in the last bit of that expression; only where the
square root lies within 1e-9 of an integer could that change the floor, and those pixels (practically never
for l = e^lam with lam != 0; never for an integer l, where the expression is exact) take the brute force.
"""
import math

import numpy as np
import torch
from numba import njit
from scipy import ndimage

IGNORE = 255
NEAR_INTEGER = 1e-9


def scribble_map(scribble: np.ndarray, lam: float) -> np.ndarray:
    """uint8 [H, W] scribble confidence map (Eq. 16 x 255) of a scribble label map (0, 1..K, 255)."""
    scribble = np.asarray(scribble)
    points = (scribble != 0) & (scribble != IGNORE)
    return (255 - distance_bytes(points, lam)).astype(np.uint8)


def pseudo_map(pseudo: np.ndarray, lam: float) -> np.ndarray:
    """uint8 [H, W] distance to the pseudo-label foreground boundary (Eq. 14 x 255)."""
    return distance_bytes(boundary(pseudo), lam)


def boundary(pseudo: np.ndarray) -> np.ndarray:
    """bool [H, W]: foreground pixels (not 0, not 255) with a 4-neighbour that is not foreground or is outside."""
    pseudo = np.asarray(pseudo)
    fg = (pseudo != 0) & (pseudo != IGNORE)
    padded = np.pad(fg, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return fg & ~interior


def distance_bytes(points, lam: float) -> np.ndarray:
    """uint8 [H, W] floor(min(sqrt(l dy^2 + l dx^2), 255)) to the nearest True pixel of `points`; 255 without
    one. `points`: bool numpy array, or a torch tensor (a CUDA one uses cupy when it is installed)."""
    if isinstance(points, torch.Tensor):
        if points.is_cuda and _cupy() is not None:
            return _distance_bytes_cupy(points, lam)
        points = points.cpu().numpy()
    points = np.asarray(points, bool)
    if not points.any():
        return np.full(points.shape, 255, np.uint8)
    # nearest point of every pixel (scipy measures the distance to the nearest zero)
    iy, ix = ndimage.distance_transform_edt(~points, return_distances=False, return_indices=True)
    return _bytes_from_offsets(points, iy, ix, lam)


def _bytes_from_offsets(points, iy, ix, lam):
    """The release's value from each pixel's nearest point (iy, ix), with the brute force where the floor could
    depend on which of several equally near points it took."""
    coeff = math.exp(lam)  # the release's coefficient e^lam, e.g. 403.428793492735 for lam 6
    dy = iy - np.arange(points.shape[0])[:, None]
    dx = ix - np.arange(points.shape[1])[None, :]
    value = np.sqrt(coeff * (dy * dy) + coeff * (dx * dx))  # the release's expression (distance_map.py)
    out = np.minimum(value, 255.0).astype(np.uint8)  # truncation = floor for these non-negative values
    if coeff != np.floor(coeff):
        risky = (value > 0) & (value < 256) & (np.abs(value - np.rint(value)) < NEAR_INTEGER)  # 0: on a point
        if risky.any():
            ry, rx = np.nonzero(risky)
            out[ry, rx] = brute_force(points, lam, np.stack([ry, rx], 1))
    return out


def brute_force(points: np.ndarray, lam: float, pixels: np.ndarray | None = None) -> np.ndarray:
    """The release's definition (distancemp/distance_map.py): for every pixel the minimum over every point of
    sqrt(l dy^2 + l dx^2), truncated to an integer and capped at 255. uint8 [H, W], or uint8 [n] at `pixels`
    (int [n, 2] rows, columns)."""
    points = np.asarray(points, bool)
    coords = np.argwhere(points)
    if pixels is None:
        return _brute_force_image(points.shape, coords, math.exp(lam)).astype(np.uint8)
    return _brute_force_pixels(np.asarray(pixels, np.int64), coords, math.exp(lam)).astype(np.uint8)


@njit(cache=True)
def _brute_force_image(shape, coords, coeff):
    out = np.full(shape, 255, np.int64)
    for p in range(coords.shape[0]):
        py, px = coords[p, 0], coords[p, 1]
        for y in range(shape[0]):
            for x in range(shape[1]):
                value = math.sqrt(coeff * (y - py) ** 2 + coeff * (x - px) ** 2)
                if value < out[y, x]:
                    out[y, x] = int(value)
    return out


@njit(cache=True)
def _brute_force_pixels(pixels, coords, coeff):
    out = np.full(pixels.shape[0], 255, np.int64)
    for i in range(pixels.shape[0]):
        for p in range(coords.shape[0]):
            value = math.sqrt(coeff * (pixels[i, 0] - coords[p, 0]) ** 2 + coeff * (pixels[i, 1] - coords[p, 1]) ** 2)
            if value < out[i]:
                out[i] = int(value)
    return out


def _cupy():
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def _distance_bytes_cupy(points: torch.Tensor, lam: float) -> np.ndarray:
    """The GPU path: cupyx's exact EDT on the CUDA tensor (shared through DLPack), values as on the CPU."""
    import cupy
    from cupyx.scipy import ndimage as cundimage
    mask = cupy.from_dlpack(points.bool())
    if not bool(mask.any()):
        return np.full(tuple(points.shape), 255, np.uint8)
    indices = cundimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
    iy, ix = cupy.asnumpy(indices)
    return _bytes_from_offsets(cupy.asnumpy(mask), iy, ix, lam)
