"""CDSP's distance maps (Eq. 14, 16) as the authors' scripts store them: uint8 PNGs, read /255 in training.

Definitions (d = Euclidean distance in pixels to the nearest point, l = e^lam computed as the release's table
lists it, `coefficient`):
- `scribble_map`: points = foreground scribble pixels (1..K; background 0 and unlabelled 255 are not points);
  value 255 - floor(min(sqrt(l * dy^2 + l * dx^2), 255)); all 0 without a point (Eq. 16 times 255).
- `pseudo_map`: points = the boundary of the pseudo-label foreground (labels other than 0 and 255): foreground
  pixels with a 4-neighbour that is background or outside the image; value floor(min(sqrt(l * dy^2 +
  l * dx^2), 255)); all 255 without a foreground pixel (Eq. 14 times 255). The release draws the contours
  into a 3-channel image, so its 3-d code path runs, which visits only the pixels of a box around each point
  sized for l = e (`release_box`); for l >= e that changes nothing, for l < e (lam < 1) pixels beyond the box
  keep the values of nearer boxes or 255: `pseudo_map` reproduces that.

The release computes these by brute force over every point (`brute_force`, kept as the definition and the
benchmark's baseline). Here an exact Euclidean distance transform gives every pixel's squared distance d^2 to
its nearest point in linear time: `squared_edt` (Felzenszwalb-Huttenlocher, numba) on the CPU, about 6x
faster than scipy.ndimage.distance_transform_edt on a VOC image, and cupyx.scipy.ndimage for a CUDA tensor
when cupy is installed. The value sqrt(l d^2) can differ from the release's float64 expression in the last
bits only, which changes the floor only within 1e-9 of an integer: such pixels take the brute force, so the
bytes are the release's.
"""
import math

import numpy as np
import torch
from numba import njit

from wsss import IGNORE

NEAR_INTEGER = 1e-9


def scribble_map(scribble: np.ndarray, lam: float) -> np.ndarray:
    """uint8 [H, W] scribble confidence map (Eq. 16 x 255) of a scribble label map (0, 1..K, 255)."""
    scribble = np.asarray(scribble)
    points = (scribble != 0) & (scribble != IGNORE)
    return (255 - distance_bytes(points, lam)).astype(np.uint8)


def pseudo_map(pseudo: np.ndarray, lam: float) -> np.ndarray:
    """uint8 [H, W] distance to the pseudo-label foreground boundary (Eq. 14 x 255)."""
    points = boundary(pseudo)
    if coefficient(lam) < math.e and points.any():  # the release's boxes are smaller than its reach
        return _brute_force_boxes(np.argwhere(points), points.shape, coefficient(lam), release_box()).astype(np.uint8)
    return distance_bytes(points, lam)


def coefficient(lam: float) -> float:
    """The release's coefficient e^lam as its scripts take it (the values listed in
    makedistancemap_fromCAM_multiprocessing.py): math.e ** lam, for integer lam != 0, 1 an ulp away from
    math.exp(lam) (e^6: 403.428793492735 vs 403.4287934927351)."""
    return math.e ** lam


def release_box() -> int:
    """R: the release's 3-d path visits, for a point at (py, px), rows max(py - R, 0) .. py + R - 1 and the same
    columns: R is the first offset whose distance with its default coefficient e exceeds 255 (155)."""
    return next(k for k in range(1, 1000) if math.sqrt(math.e * k ** 2) > 255)


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
    points = np.ascontiguousarray(points, bool)
    if not points.any():
        return np.full(points.shape, 255, np.uint8)
    return _bytes_from_squared(points, squared_edt(points), lam)


def _bytes_from_squared(points, squared, lam):
    """The release's value from each pixel's exact squared distance d^2 (float64, integer-valued): sqrt(l d^2)
    agrees with the release's sqrt(l dy^2 + l dx^2) to a few ulps, so the floor agrees unless the value is
    within NEAR_INTEGER of an integer; those pixels (practically never any for l = e^lam, lam != 0; none for
    an integer l, where both expressions are exact) take the brute force."""
    coeff = coefficient(lam)
    out, risky = _values(squared, coeff, NEAR_INTEGER if coeff != math.floor(coeff) else -1.0)
    if risky.any():
        ry, rx = np.nonzero(risky)
        out[ry, rx] = brute_force(points, lam, np.stack([ry, rx], 1))
    return out


@njit(cache=True)
def _values(squared, coeff, tolerance):
    """(uint8 floor(min(sqrt(coeff d^2), 255)), bool: within `tolerance` of an integer, the floor in doubt)."""
    out = np.empty(squared.shape, np.uint8)
    risky = np.zeros(squared.shape, np.bool_)
    for y in range(squared.shape[0]):
        for x in range(squared.shape[1]):
            value = math.sqrt(coeff * squared[y, x])
            out[y, x] = int(min(value, 255.0))  # truncation = floor for these non-negative values
            # 0 is exact (on a point)
            risky[y, x] = 0 < value < 256 and abs(value - round(value)) < tolerance
    return out, risky


@njit(cache=True)
def squared_edt(points):
    """float64 [H, W] exact squared Euclidean distance to the nearest True pixel (at least one), by Felzenszwalb
    and Huttenlocher's separable algorithm: distances along each column, then per row the lower envelope of
    the parabolas (x - q)^2 + g(q). Linear time; integer-valued throughout, so exact."""
    h, w = points.shape
    inf = np.inf
    column = np.empty((h, w))
    for x in range(w):
        last = -1
        for y in range(h):
            if points[y, x]:
                last = y
            column[y, x] = inf if last < 0 else (y - last) ** 2
        last = -1
        for y in range(h - 1, -1, -1):
            if points[y, x]:
                last = y
            if last >= 0:
                column[y, x] = min(column[y, x], (last - y) ** 2)
    out = np.empty((h, w))
    sites = np.empty(w, np.int64)
    bounds = np.empty(w + 1)
    for y in range(h):
        g = column[y]
        k = -1
        for q in range(w):
            if g[q] == inf:
                continue
            s = -inf
            while k >= 0:
                v = sites[k]
                s = ((g[q] + q * q) - (g[v] + v * v)) / (2 * q - 2 * v)
                if s > bounds[k]:
                    break
                k -= 1
            k += 1
            sites[k] = q
            bounds[k] = s if k > 0 else -inf
        bounds[k + 1] = inf
        j = 0
        for x in range(w):
            while bounds[j + 1] < x:
                j += 1
            out[y, x] = (x - sites[j]) ** 2 + g[sites[j]]
    return out


def brute_force(points: np.ndarray, lam: float, pixels: np.ndarray | None = None) -> np.ndarray:
    """The release's definition (distancemp/distance_map.py): for every pixel the minimum over every point of
    sqrt(l dy^2 + l dx^2), truncated to an integer and capped at 255. uint8 [H, W], or uint8 [n] at `pixels`
    (int [n, 2] rows, columns)."""
    points = np.asarray(points, bool)
    coords = np.argwhere(points)
    if pixels is None:
        return _brute_force_image(points.shape, coords, coefficient(lam)).astype(np.uint8)
    return _brute_force_pixels(np.asarray(pixels, np.int64), coords, coefficient(lam)).astype(np.uint8)


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
def _brute_force_boxes(coords, shape, coeff, box):
    """The release's 3-d path (one channel): as _brute_force_image, each point only within its box."""
    out = np.full(shape, 255, np.int64)
    for p in range(coords.shape[0]):
        py, px = coords[p, 0], coords[p, 1]
        for y in range(max(py - box, 0), min(py + box, shape[0])):
            for x in range(max(px - box, 0), min(px + box, shape[1])):
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
    squared = cupy.rint(cundimage.distance_transform_edt(~mask) ** 2)  # exact: integers far below 2^52
    return _bytes_from_squared(cupy.asnumpy(mask), cupy.asnumpy(squared), lam)
