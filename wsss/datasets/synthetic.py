"""Writers shared by the generated data sets (demo_dataset, photos_dataset): the PASCAL VOC 2012 /
ScribbleSup files of one sample, the split loop, and the small morphology the labels need.

A sample is a dict: `image` uint8 [S, S, 3], `classes` and `instances` uint8 [S, S] (255 void),
`objects` (each with `.label`, 1..K), `visible` (each object's boolean mask before the void band) and
`strokes` [(label, [(x, y), ...])].
"""
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from wsss import io
from wsss.datasets.voc import LAYOUT, path, rasterise_scribbles, voc_palette
from wsss.errors import DataError

SCRIBBLE_WIDTH = 3  # px; wsss.datasets.voc.load_scribble_xml's default, so PNG and XML agree (runs assumes 3)


MARKER = ".wsss-demo"  # written into a root a generator owns: the generator's params, as JSON
DEMO_ID = re.compile(r"(train|val)_\d{5}")


def write_dataset(root, splits: dict, params: dict, make_sample, class_names, desc: str):
    """Writes `splits` {split: count} of samples `make_sample(rng)` into folder `root`. Image i of split s
    draws from its own stream [params["seed"], s, i], so changing n_val leaves the train images as they were.

    The set is generated next to `root`, then each of the generator's folders (JPEGImages, ...) replaces
    the one in `root`. `root` must be missing, empty or a generated root (it holds MARKER, or only files a
    generator writes): anything else is someone's data set and is refused, never deleted."""
    root = Path(root)
    _check_owned(root)
    with io.scratch(root) as tmp:
        for folder in FOLDERS:
            (tmp / folder).mkdir(parents=True)
        bar = tqdm(total=sum(splits.values()), desc=desc)
        for split_index, (split, count) in enumerate(splits.items()):
            ids = [f"{split}_{i:05d}" for i in range(count)]
            for i, image_id in enumerate(ids):
                rng = np.random.default_rng([params["seed"], split_index, i])
                write_sample(tmp, image_id, make_sample(rng), class_names)
                bar.update()
            path(tmp, "split", split).write_text("".join(f"{i}\n" for i in ids))
        bar.close()
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n")  # first: a killed run leaves it ours
        for top in sorted({folder.split("/")[0] for folder in FOLDERS}):
            io.remove(root / top)
            os.replace(tmp / top, root / top)


# The generator's folders under a root (LAYOUT's), and their top-level names: all it ever replaces.
FOLDERS = sorted({str(Path(pattern).parent) for pattern in LAYOUT.values()})


def _check_owned(root: Path):
    """DataError unless `root` is missing, empty or the generator's: it holds MARKER or only files a generator
    writes, and its generator's folders (which a run replaces) hold nothing else, marker or not."""
    if not root.exists():
        return
    if not root.is_dir():
        raise DataError(f"{root}: generated data set root exists and is not a folder; refusing to replace it")
    marked = (root / MARKER).is_file()
    tops = {folder.split("/")[0] for folder in FOLDERS}
    foreign = [] if marked else [f for f in sorted(root.iterdir()) if f.name not in tops]
    for top in sorted(tops):
        if (root / top).exists() or (root / top).is_symlink():
            foreign += [f for f in [root / top, *sorted((root / top).rglob("*"))] if not _generated(root, f)]
    if foreign and marked:
        raise DataError(f"{root}: holds {foreign[0]}, which the generator did not write, in a folder it replaces; "
                        "move it out, or set dataset.root to a new folder")
    if foreign:
        raise DataError(f"{root}: not a generated data set root (no {MARKER}; it holds {foreign[0]}), so the generator "
                        "will not write there: set dataset.root to a new folder, or dataset.demo to false to use "
                        "this data set")


def _generated(root: Path, entry: Path) -> bool:
    """Whether `entry` (below `root`) is one the generator writes: one of its folders, or a sample's file or a
    split list in one of them."""
    relative = entry.relative_to(root)
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return any(folder == str(relative) or folder.startswith(f"{relative}/") for folder in FOLDERS)
    return str(relative.parent) in FOLDERS and bool(DEMO_ID.fullmatch(entry.stem) or entry.name in ("train.txt",
                                                                                                   "val.txt"))


def background_strokes(rng, classes, n_strokes, size):
    """`n_strokes` wobbly 4-segment strokes starting on background (label 0), each cut to its runs there."""
    strokes = []
    ys, xs = np.nonzero(erode(classes == 0, math.sqrt(2)))
    for _ in range(n_strokes if len(xs) else 0):
        k = rng.integers(len(xs))  # start on background, so a stroke rarely ends up empty
        start = np.array([xs[k], ys[k]], float)
        heading = np.cumsum(rng.uniform(-0.6, 0.6, 4)) + rng.uniform(0, 2 * np.pi)
        steps = rng.uniform(0.06, 0.14, (4, 1)) * size * np.stack([np.cos(heading), np.sin(heading)], 1)
        strokes += runs(rng, np.vstack([start, start + np.cumsum(steps, 0)]), classes == 0, 0)
    return strokes


def runs(rng, polyline, region, label):
    """Densifies and wobbles `polyline` (image px), keeping the runs of >= 4 points whose 3x3 neighbourhood
    lies in `region`, so the 3 px line stays on it; each run becomes one stroke of every other point."""
    seg = np.diff(polyline, axis=0)
    length = np.hypot(*seg.T)
    along = np.concatenate([[0], np.cumsum(length)])
    t = np.arange(0, along[-1], 1.0)
    pts = np.stack([np.interp(t, along, polyline[:, k]) for k in range(2)], 1)
    normal = np.gradient(pts, axis=0)[:, ::-1] * [1, -1]
    pts += normal * (1.2 * np.sin(t / rng.uniform(4, 9) + rng.uniform(0, 2 * np.pi)))[:, None]
    pts = np.round(pts).astype(int)
    h, w = region.shape
    allowed = erode(region, math.sqrt(2))  # the 3x3 square: a 3 px line's pixels around each point
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    inside[inside] = allowed[pts[inside, 1], pts[inside, 0]]
    cuts = np.flatnonzero(np.diff(inside.astype(np.int8))) + 1
    found = []
    for chunk, ok in zip(np.split(pts, cuts), np.split(inside, cuts)):
        if ok[0] and len(chunk) >= 4:
            kept = np.vstack([chunk[::2], chunk[-1:]]) if len(chunk) % 2 == 0 else chunk[::2]
            found.append((label, [tuple(int(c) for c in q) for q in kept]))
    return found


def _shifted(array, radius, fill):
    """Every view of `array` moved by (dy, dx) with dy^2 + dx^2 <= radius^2 (a disc, so a band is as wide
    on diagonals as on straight edges); pixels from outside read `fill`, or the nearest edge when None."""
    h, w = array.shape
    r = int(radius)
    padded = np.pad(array, r, constant_values=fill) if fill is not None else np.pad(array, r, "edge")
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= radius * radius:
                yield padded[r + dy:r + dy + h, r + dx:r + dx + w]


def erode(mask, radius):
    out = mask.copy()
    for view in _shifted(mask, radius, False):
        out &= view
    return out


def dilate(mask, radius):
    out = mask.copy()
    for view in _shifted(mask, radius, False):
        out |= view
    return out


def border(ids, radius):
    """Pixels with a different id within `radius`: the VOC-style void band, about 2 * radius px wide."""
    band = np.zeros(ids.shape, bool)
    for view in _shifted(ids, radius, None):
        band |= view != ids
    return band


def write_sample(root, image_id, sample, class_names):
    palette = voc_palette()
    size = sample["image"].shape[0]
    Image.fromarray(sample["image"]).save(path(root, "image", image_id), quality=95, subsampling=0)
    io.save_png(path(root, "mask", image_id), sample["classes"], palette)
    io.save_png(path(root, "instances", image_id), sample["instances"], palette)
    io.save_png(path(root, "scribble", image_id),
                rasterise_scribbles(sample["strokes"], (size, size), SCRIBBLE_WIDTH))
    _write_xml(path(root, "annotation", image_id), _voc_annotation(image_id, size, sample, class_names))
    _write_xml(path(root, "scribble_xml", image_id), _scribble_annotation(image_id, size, sample, class_names))


def _header(image_id, size):
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "demo"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    box = ET.SubElement(root, "size")
    for key, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(box, key).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    return root


def _voc_annotation(image_id, size, sample, class_names):
    root = _header(image_id, size)
    for obj, visible in zip(sample["objects"], sample["visible"]):
        ys, xs = np.nonzero(visible)
        node = ET.SubElement(root, "object")
        truncated = xs.min() == 0 or ys.min() == 0 or xs.max() == size - 1 or ys.max() == size - 1
        for key, value in (("name", class_names[obj.label]), ("pose", "Unspecified"),
                           ("truncated", int(truncated)), ("difficult", 0)):
            ET.SubElement(node, key).text = str(value)
        box = ET.SubElement(node, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (xs.min(), ys.min(), xs.max(), ys.max())):
            ET.SubElement(box, key).text = str(int(value) + 1)  # VOC boxes are 1-based
    return root


def _scribble_annotation(image_id, size, sample, class_names):
    root = _header(image_id, size)
    for label, points in sample["strokes"]:
        polygon = ET.SubElement(root, "polygon")
        ET.SubElement(polygon, "tag").text = class_names[label]
        for x, y in points:
            point = ET.SubElement(polygon, "point")
            ET.SubElement(point, "X").text = str(x)
            ET.SubElement(point, "Y").text = str(y)
    return root


def _write_xml(file, root):
    ET.indent(root)
    Path(file).write_text(ET.tostring(root, encoding="unicode") + "\n")
