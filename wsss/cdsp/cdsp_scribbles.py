"""Stage cdsp_scribbles: scribble sets for the robustness protocol of CDSP Fig. 7 (URSS's scribble-drop and
scribble-shrink, which exist only as data), derived from the originals, seeded, in the same PNG format.

A stroke is an 8-connected component of one label value in the scribble PNG (0 background, 1..K; 255 is
unlabelled): the PNG is what every method reads, and the 3 px wide polylines of the XML become one component
each unless two strokes of one class cross (then they count as one). Its path coordinate t is the geodesic
distance (8-neighbour steps inside the stroke) from one end, the end being the stroke pixel farthest from its
first pixel in raster order; L = max t.
- drop r: each object stroke (label 1..K) is removed with probability r; background strokes are kept.
- shrink r < 1: each stroke (background too) keeps the pixels with |t - L/2| <= (1 - r) L / 2 and its centre
  pixel (the first, in raster order, of those with t nearest L/2): r = 0 keeps the stroke; r = 1 leaves only
  the centre pixel.
Randomness: numpy's generator seeded with (seed, crc32(image id)), so an image's result does not depend on the
split's other images.
"""
import zlib
from collections import deque

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from wsss import IGNORE
from wsss.datasets import voc
from wsss.io import atomic_path, save_png
from wsss.params import Param, resolve

MODES = ("drop", "shrink")
EIGHT = np.ones((3, 3), bool)

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "split": voc.SPLIT,
    "mode": Param(str, help="drop | shrink"),
    "ratio": Param(float, help="drop probability or shrink ratio, in [0, 1]"),
    "seed": Param(int, 0, "seeds the drops"),
}


def run(params: dict, *, root, out):
    """Writes `<out>/<id>.png` for every image of `split` from the root's pascal_2012_scribble PNGs."""
    params = resolve(params, PARAMS, "cdsp_scribbles")
    if params["mode"] not in MODES or not 0 <= params["ratio"] <= 1:
        raise ValueError(f"cdsp_scribbles: mode must be one of {MODES} and ratio in [0, 1], got "
                         f"{params['mode']!r}, {params['ratio']}")
    n_classes = len(params["class_names"])
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for image_id in tqdm(voc.read_ids(root, params["split"]), desc=f"cdsp_scribbles {params['mode']}"):
            scribble = voc.load_scribble(voc.path(root, "scribble", image_id), n_classes)
            rng = np.random.default_rng([params["seed"], zlib.crc32(image_id.encode())])
            edit = drop if params["mode"] == "drop" else shrink
            save_png(tmp / f"{image_id}.png", edit(scribble, params["ratio"], rng))


def strokes(scribble: np.ndarray):
    """(label, bool mask) of every stroke: 8-connected components of each label value but 255."""
    for label in np.unique(scribble):
        if label == IGNORE:
            continue
        components, n = ndimage.label(scribble == label, EIGHT)
        for i in range(1, n + 1):
            yield int(label), components == i


def drop(scribble: np.ndarray, ratio: float, rng) -> np.ndarray:
    """Removes each object stroke with probability `ratio` (background strokes stay)."""
    out = scribble.copy()
    for label, mask in strokes(scribble):
        if label != 0 and rng.random() < ratio:
            out[mask] = IGNORE
    return out


def shrink(scribble: np.ndarray, ratio: float, rng=None) -> np.ndarray:
    """Shortens each stroke along its path around its centre to (1 - ratio) of its length (one point at 1)."""
    out = np.full_like(scribble, IGNORE)
    for label, mask in strokes(scribble):
        ys, xs = np.nonzero(mask)
        t = path_coordinate(mask, ys, xs)
        half = t.max() / 2
        keep = np.abs(t - half) <= (1 - ratio) * half if ratio < 1 else np.zeros(len(t), bool)
        keep[np.argmin(np.abs(t - half))] = True  # the centre pixel (argmin: first in raster order)
        out[ys[keep], xs[keep]] = label
    return out


def path_coordinate(mask: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Geodesic distance of each stroke pixel (ys, xs in raster order) from the stroke's end."""
    index = -np.ones(mask.shape, np.int64)
    index[ys, xs] = np.arange(len(ys))
    end = int(np.argmax(_geodesic(index, ys, xs, 0)))
    return _geodesic(index, ys, xs, end)


def _geodesic(index, ys, xs, start):
    """Breadth-first 8-neighbour step counts from pixel `start` to every pixel of the stroke."""
    dist = np.full(len(ys), -1, np.int64)
    dist[start] = 0
    queue = deque([start])
    h, w = index.shape
    while queue:
        p = queue.popleft()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                y, x = ys[p] + dy, xs[p] + dx
                if 0 <= y < h and 0 <= x < w and index[y, x] >= 0 and dist[index[y, x]] < 0:
                    dist[index[y, x]] = dist[p] + 1
                    queue.append(index[y, x])
    return dist
