"""Stage photos_dataset: objects cut from real photographs, pasted on other real photographs, in PASCAL VOC 2012 layout.

The shapes demo's objects are flat-coloured shapes; these are photographs that scikit-image and matplotlib
ship (nothing is downloaded), cut out with masks that are exact by construction:
  coin    the coins of skimage's coins.png: Otsu threshold, holes filled, single round components only
  horse   skimage's horse.png silhouette, filled with a crop of the chelsea photograph (real fur texture)
  logo    skimage's logo.png: the convex hull of its non-white pixels (the logo is a disc on white)
  retina  skimage's retina.jpg: the fundus disc, everything brighter than the black surround, holes filled
  gift    matplotlib's Minduka_Present_Blue_Pack.png: its alpha channel
Each object is scaled (premultiplied by its mask, so no halo of its old background comes along), flipped
and placed on a random crop of another photograph (grass, gravel, brick, moon, Hubble deep field, the
cameraman, astronaut, coffee, rocket, motorcycle, IHC, Grace Hopper); its pasted pixels ARE its mask.
Later objects may overlap earlier ones but leave each MIN_VISIBLE of the pixels it still shows. Each object gets a
scribble along its main axis, the background a few strokes (wsss.datasets.synthetic writes every file,
as for the demo: JPEGImages, SegmentationClass, SegmentationObject, Annotations, pascal_2012_scribble,
scribble_annotation, ImageSets).
"""
import functools
import math
from pathlib import Path

import matplotlib
import numpy as np
import skimage.data
from PIL import Image
from scipy import ndimage
from skimage import filters, measure, morphology

from wsss.datasets.synthetic import background_strokes, border, runs, write_dataset
from wsss.params import Param, resolve

SKIMAGE = Path(skimage.data.__file__).parent
MPL = Path(matplotlib.get_data_path()) / "sample_data"
BACKGROUNDS = ["grass.png", "gravel.png", "brick.png", "moon.png", "hubble_deep_field.jpg", "camera.png",
               "astronaut.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "ihc.png", MPL / "grace_hopper.jpg"]
TEMPLATE_SIDE = 160  # px: sources are shrunk to this long side once; objects are pasted at most ~0.6 x 128 px
MIN_VISIBLE = 0.6
PLACEMENT_TRIES = 30

PARAMS = {
    "seed": Param(int, 0, "the data set's seed"),
    "n_train": Param(int, 200, "train images"),
    "n_val": Param(int, 60, "val images"),
    "size": Param(int, 128, "image side in pixels"),
    "class_names": Param(list, ["background", "coin", "horse", "logo", "retina", "gift"],
                         "background, then objects from: coin, horse, logo, retina, gift"),
    "max_objects": Param(int, 3, "objects per image drawn uniformly from 1..max_objects"),
    "min_extent": Param(float, 0.3, "an object's longer side, fraction of the image side: lower end"),
    "max_extent": Param(float, 0.6, "upper end of the object's longer side"),
    "void_radius": Param(int, 1, "void band: pixels within this distance of a border between regions"),
    "bg_strokes": Param(int, 3, "background scribbles per image"),
}


def run(params, *, root):
    """Writes the photo data set in PASCAL VOC layout into folder `root` (wsss.datasets.synthetic.write_dataset:
    only a missing, empty or generated root is written to).

    params: PARAMS (missing ones take the default)."""
    p = check_params(params)
    write_dataset(root, {"train": p["n_train"], "val": p["n_val"]}, p,
                  lambda rng: _sample(rng, p), p["class_names"], "photos dataset")


def check_params(params) -> dict:
    """The resolved params; ValueError naming the one that makes no sense."""
    p = resolve(params, PARAMS, "photos_dataset")
    names = p["class_names"]
    if not names or names[0] != "background" or len(names) < 2:
        raise ValueError(f"photos: class_names must start with 'background' and name a class, got {names}")
    if any(n not in CUTOUTS for n in names[1:]) or len(set(names)) != len(names):
        raise ValueError(f"photos: class names {names} must be distinct and drawn from {sorted(CUTOUTS)}")
    if p["n_train"] < 1 or p["n_val"] < 1 or p["size"] < 32 or p["max_objects"] < 1:
        raise ValueError("photos: n_train, n_val and max_objects must be >= 1 and size >= 32")
    if not 0 < p["min_extent"] <= p["max_extent"] <= 1:
        raise ValueError("photos: need 0 < min_extent <= max_extent <= 1")
    return p


# Cut-outs: each returns [(rgb float32 [h, w, 3], mask bool [h, w])], cropped to the mask's box.

def _open(file, mode="RGB"):
    return Image.open(file if isinstance(file, Path) else SKIMAGE / file).convert(mode)


def _shrunk(rgb, mask):
    """Crops to the mask's box and shrinks to TEMPLATE_SIDE (mask-premultiplied, so edges keep object colour)."""
    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    rgb, mask = rgb[box].astype(np.float32), mask[box]
    scale = min(1.0, TEMPLATE_SIDE / max(mask.shape))
    return _resize(rgb, mask, (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale))))


def _resize(rgb, mask, size):
    """(rgb, mask) resized to size (w, h): colour premultiplied by the mask, mask = coverage > 0.5."""
    alpha = _resize_plane(mask.astype(np.float32), size)
    colour = np.stack([_resize_plane(rgb[..., k] * mask, size) for k in range(3)], -1)
    return colour / np.maximum(alpha, 1e-6)[..., None], alpha > 0.5


def _resize_plane(plane, size):
    return np.asarray(Image.fromarray(np.ascontiguousarray(plane, np.float32), "F").resize(size, Image.BILINEAR))


def _coins():
    gray = np.asarray(_open("coins.png", "L"))
    filled = ndimage.binary_fill_holes(gray > filters.threshold_otsu(gray))
    labels = measure.label(ndimage.binary_opening(filled, morphology.disk(2)))  # no 1-px bridges or spurs
    rgb = np.repeat(gray[..., None], 3, -1)
    # single coins only: merged pairs are not convex, specks are small
    return [_shrunk(rgb, labels == r.label) for r in measure.regionprops(labels)
            if 800 <= r.area <= 5000 and r.solidity > 0.93]


def _horse():
    # the silhouette's dark pixels; its texture is a fresh crop of the chelsea photograph per sample
    silhouette = np.asarray(_open("horse.png", "L")) < 128
    ys, xs = np.nonzero(silhouette)
    return [(None, silhouette[ys.min():ys.max() + 1, xs.min():xs.max() + 1])]


def _logo():
    rgb = np.asarray(_open("logo.png"))
    return [_shrunk(rgb, morphology.convex_hull_image(rgb.min(-1) < 235))]


def _retina():
    rgb = np.asarray(_open("retina.jpg").reduce(4))
    disc = ndimage.binary_fill_holes(rgb.max(-1) > 30)
    labels = measure.label(disc)
    largest = labels == 1 + np.argmax(np.bincount(labels.ravel())[1:])
    return [_shrunk(rgb, largest)]


def _gift():
    rgba = np.asarray(_open(MPL / "Minduka_Present_Blue_Pack.png", "RGBA"))
    return [_shrunk(rgba[..., :3], rgba[..., 3] > 127)]


CUTOUTS = {"coin": _coins, "horse": _horse, "logo": _logo, "retina": _retina, "gift": _gift}


@functools.cache
def _cutouts(name):
    return CUTOUTS[name]()


@functools.cache
def _photo(file):
    return np.asarray(_open(file), np.float32)


def _crop(rng, photo, shape):
    """A random crop of `photo` with the aspect of `shape` (h, w), 30-100 % of the largest such crop, resized
    to `shape`: float32 [h, w, 3]."""
    h, w = shape
    side = rng.uniform(0.3, 1.0) * min(photo.shape[0] * w / h, photo.shape[1])
    cw, ch = max(2, int(side)), max(2, int(side * h / w))
    y, x = rng.integers(0, photo.shape[0] - ch + 1), rng.integers(0, photo.shape[1] - cw + 1)
    crop = photo[y:y + ch, x:x + cw]
    return np.stack([_resize_plane(crop[..., k], (w, h)) for k in range(3)], -1)


# One sample

def _sample(rng, p):
    size = p["size"]
    image = _crop(rng, _photo(BACKGROUNDS[rng.integers(len(BACKGROUNDS))]), (size, size))
    if rng.random() < 0.5:
        image = image[:, ::-1]
    instances = np.zeros((size, size), np.uint8)
    objects = []
    for _ in range(rng.integers(1, p["max_objects"] + 1)):
        label = int(rng.integers(1, len(p["class_names"])))
        placed = _place(rng, p, label, instances, len(objects) + 1)
        if placed is not None:
            image[placed.mask] = placed.rgb[placed.mask]
            instances[placed.mask] = len(objects) + 1
            objects.append(placed)
    classes = np.zeros((size, size), np.uint8)
    for n, obj in enumerate(objects, 1):
        classes[instances == n] = obj.label
    visible = [instances == n for n in range(1, len(objects) + 1)]
    void = border(instances, p["void_radius"])
    classes[void] = instances[void] = 255
    image = image + rng.normal(0, 2, image.shape)
    strokes = background_strokes(rng, classes, p["bg_strokes"], size)
    for n, obj in enumerate(objects, 1):
        strokes += runs(rng, _main_axis(visible[n - 1]), instances == n, obj.label)
    return dict(image=np.clip(image, 0, 255).astype(np.uint8), classes=classes, instances=instances,
                objects=objects, visible=visible, strokes=strokes)


class Placed:
    """An object of class `label`: its colour and mask on the whole image grid (before later occlusion)."""

    def __init__(self, label, rgb, mask):
        self.label, self.rgb, self.mask = label, rgb, mask


def _place(rng, p, label, instances, n):
    """A scaled, flipped, jittered cut-out of class `label` at a random place where it leaves every earlier
    object MIN_VISIBLE of its pixels and stays 3/4 inside the image; None when no place is found."""
    size = p["size"]
    name = p["class_names"][label]
    choices = _cutouts(name)
    rgb, mask = choices[rng.integers(len(choices))]
    extent = rng.uniform(p["min_extent"], p["max_extent"]) * size
    scale = extent / max(mask.shape)
    w, h = max(2, round(mask.shape[1] * scale)), max(2, round(mask.shape[0] * scale))
    if rgb is None:  # the horse: fur from a crop of chelsea at the silhouette's aspect
        rgb = _crop(rng, _photo("chelsea.png"), mask.shape)
    rgb, mask = _resize(rgb, mask, (w, h))
    if rng.random() < 0.5:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    rgb = rgb * rng.uniform(0.8, 1.2) + rng.uniform(-15, 15)  # exposure of the photo it came from
    for _ in range(PLACEMENT_TRIES):
        y, x = rng.integers(-h // 4, size - 3 * h // 4 + 1), rng.integers(-w // 4, size - 3 * w // 4 + 1)
        full_rgb, full_mask = np.zeros((size, size, 3), np.float32), np.zeros((size, size), bool)
        ys, xs = slice(max(y, 0), min(y + h, size)), slice(max(x, 0), min(x + w, size))
        inner = (slice(ys.start - y, ys.stop - y), slice(xs.start - x, xs.stop - x))
        full_rgb[ys, xs], full_mask[ys, xs] = rgb[inner], mask[inner]
        if full_mask.sum() >= 0.75 * mask.sum() and _leaves_visible(instances, full_mask, n):
            return Placed(label, full_rgb, full_mask)
    return None


def _leaves_visible(instances, mask, n):
    """Whether `mask` leaves each earlier object MIN_VISIBLE of the pixels it still shows."""
    return all(((instances == k) & ~mask).sum() >= MIN_VISIBLE * (instances == k).sum() for k in range(1, n))


def _main_axis(region):
    """The object's principal axis through its centroid, 1.6 standard deviations each way ([2, 2] x, y)."""
    ys, xs = np.nonzero(region)
    points = np.stack([xs, ys], 1).astype(float)
    centre = points.mean(0)
    values, vectors = np.linalg.eigh(np.cov(points.T) + 1e-6 * np.eye(2))
    reach = 1.6 * math.sqrt(values[-1]) * vectors[:, -1]
    return np.stack([centre - reach, centre + reach])
