"""Stage demo_dataset: a synthetic data set in PASCAL VOC 2012 layout, deterministic from a seed.

Each object class is a family of shape, colour and texture with a small discriminative part (a mark of
its own colours). Distractor blobs on the cluttered background share the families' colours and textures
but have neither their shapes nor their parts, so a classifier has to find shapes and parts: its CAMs
peak on the parts and cover the bodies only partly, which leaves the room between CAMs and full masks
that IRNet-style label refinement is meant to close. Objects come 1..max_objects per image, sometimes two
of one class, sometimes touching or overlapping.

Written files (all read back by wsss.datasets.voc):
  JPEGImages/<id>.jpg                     RGB, quality 95, no chroma subsampling (parts keep their colours)
  SegmentationClass/<id>.png              palette PNG, 0 background, 1..K, 255 void band along borders
  SegmentationObject/<id>.png             palette PNG, instance ids 1..N in drawing order, same void band
  Annotations/<id>.xml                    VOC-style objects: name, truncated, 1-based bounding box
  pascal_2012_scribble/<id>.png           L mode, 0 background scribble, 1..K, 255 unlabelled
  scribble_annotation/pascal_2012/<id>.xml  the same strokes as ScribbleSup XML
  ImageSets/Segmentation/{train,val}.txt
  .wsss-demo                              the generator's params: marks the root as the generator's to replace
"""
import colorsys
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from wsss.datasets.synthetic import background_strokes, border, dilate, runs, write_dataset
from wsss.params import Param, resolve

# Every knob, with its default (config.yaml `demo:` mirrors these). Sizes are fractions of the image side.
PARAMS = {
    "seed": Param(int, 0, "the data set's seed"),
    "n_train": Param(int, 400, "train images"),
    "n_val": Param(int, 100, "val images"),
    "size": Param(int, 128, "image side in pixels"),
    "class_names": Param(list, ["background", "disc", "square", "triangle", "ring", "cross"],
                         "background, then shape families: disc, square, triangle, ring, cross, star"),
    "max_objects": Param(int, 4, "objects per image drawn uniformly from 1..max_objects"),
    "min_radius": Param(float, 0.14, "object radius range, fraction of the image side"),
    "max_radius": Param(float, 0.27, "upper end of the object radius range"),
    "same_class_prob": Param(float, 0.25, "chance that a further object repeats a class already in the image"),
    "touch_prob": Param(float, 0.3, "chance that a further object is placed touching / overlapping an earlier one"),
    "part_size": Param(float, 0.3, "discriminative part size, fraction of the object radius"),
    "clutter": Param(int, 12, "small muted shapes (lines, blobs, boxes) on the background"),
    "max_distractors": Param(int, 3, "blobs in object colours and textures, 0..max_distractors per image"),
    "void_radius": Param(int, 1, "void band: pixels within this distance of a border between regions (~2r px wide)"),
    "bg_strokes": Param(int, 3, "background scribbles per image"),
}
MIN_VISIBLE = 0.6  # an object keeps at least this fraction of its pixels when later ones overlap it
PLACEMENT_TRIES = 30
TEXTURE_PERIOD = 6.0  # px, so textures look alike at every object size


@dataclass(frozen=True)
class Family:
    """One object class's look. Geometry is in the object's frame: (u, v) in units of its radius."""
    hue: float  # centre of the body colour family
    texture: Callable  # (u, v, k) -> [-1, 1] brightness modulation; k = radius / texture period
    body: Callable  # (u, v) -> bool shape
    part: Callable  # (u, v, s) -> [(bool mask, rgb)] painted in order over the body; s = part size
    medial: np.ndarray  # [n, 2] polyline roughly along the medial axis, where the scribble goes


# Families. Bodies are about one radius across in their own frame; parts are (mask, rgb) layers painted in
# order and stay inside the body except the ring's gem, which sits on it; textures return values in [-1, 1]
# with k periods per radius; the medial polyline is where the object's scribble goes.

def _wave(x):
    return np.sin(2 * np.pi * x)


def _box(u, v):
    """Chebyshev radius: square level sets."""
    return np.maximum(np.abs(u), np.abs(v))


def _disc_body(u, v):
    return (u / 0.95) ** 2 + v ** 2 < 1


def _disc_part(u, v, s):  # an eye off the centre: a dark ring around a light pupil
    d = np.hypot(u - 0.45, v)
    return [(d < s, (20, 20, 20)), (d < 0.45 * s, (250, 250, 250))]


def _disc_texture(u, v, k):  # dots
    return np.where(_wave(k * u) * _wave(k * v) > 0.4, -1.0, 0.4)


def _square_body(u, v):
    return _box(u, v) < 0.85


def _square_part(u, v, s):  # one corner yellow behind a dark edge
    t = (u + v) * _square_body(u, v)
    return [(t > 1.7 - 1.6 * s, (30, 30, 30)), (t > 1.7 - 1.2 * s, (255, 225, 40))]


def _square_texture(u, v, k):  # stripes
    return np.sign(_wave(k * u))


TRI_IN = 0.6  # the triangle's inradius; each vertex lies 2 * TRI_IN from the centre, opposite an edge normal
TRI_ANGLES = np.pi / 2 + 2 * np.pi * np.arange(3) / 3  # edge normals
TRI_NORMALS = np.stack([np.cos(TRI_ANGLES), np.sin(TRI_ANGLES)], 1)
TRI_TIP = -2 * TRI_IN * TRI_NORMALS[0]


def _triangle_body(u, v):
    return (np.stack([u, v], -1) @ TRI_NORMALS.T < TRI_IN).all(-1)


def _triangle_part(u, v, s):  # a light tip behind a dark band
    d = np.where(_triangle_body(u, v), np.hypot(u - TRI_TIP[0], v - TRI_TIP[1]), np.inf)
    return [(d < 2.6 * s, (30, 30, 30)), (d < 2.0 * s, (245, 245, 235))]


def _triangle_texture(u, v, k):  # checks
    return np.sign(_wave(k * u) * _wave(k * v))


def _ring_body(u, v):
    return np.abs(np.hypot(u, v) - 0.75) < 0.25


def _ring_part(u, v, s):  # a cyan gem with a dark rim
    d = _box(u - 0.75, v)
    return [(d < s, (20, 20, 40)), (d < 0.65 * s, (40, 230, 230))]


def _ring_texture(u, v, k):  # concentric bands
    return np.cos(2 * np.pi * k * np.hypot(u, v))


def _cross_body(u, v):
    return (np.minimum(np.abs(u), np.abs(v)) < 0.32) & (_box(u, v) < 1)


def _cross_part(u, v, s):  # a dark red centre with a white dot
    return [(_box(u, v) < 0.8 * s, (120, 0, 20)), (np.hypot(u, v) < 0.35 * s, (255, 255, 255))]


def _cross_texture(u, v, k):  # diagonal stripes
    return np.sign(_wave(k * (u + v) / math.sqrt(2)))


def _star_body(u, v):
    # five points: the radius swings between 0.45 (valleys) and 1.0 (tips) as a triangle wave of the angle
    phase = (np.arctan2(v, u) / (2 * np.pi / 5)) % 1.0
    return np.hypot(u, v) < 0.45 + 0.55 * np.abs(1 - 2 * phase)


def _star_part(u, v, s):  # a white centre with a black dot
    d = np.hypot(u, v)
    return [(d < 0.9 * s, (250, 250, 250)), (d < 0.4 * s, (0, 0, 0))]


def _star_texture(u, v, k):  # waves
    return _wave(k * u + 0.3 * _wave(0.5 * k * v))


RING_ARC = np.linspace(0.3, 1.6, 12) * np.pi  # most of the way round, along the ring's centre line
RING_MEDIAL = 0.75 * np.stack([np.cos(RING_ARC), np.sin(RING_ARC)], 1)
FAMILIES = {
    "disc": Family(0.0, _disc_texture, _disc_body, _disc_part, np.array([[-0.6, 0.1], [0, -0.05], [0.6, 0.1]])),
    "square": Family(0.6, _square_texture, _square_body, _square_part, np.array([[-0.6, -0.6], [0.5, 0.5]])),
    "triangle": Family(0.33, _triangle_texture, _triangle_body, _triangle_part,
                       np.array([0.55 * TRI_TIP, [0, 0], 0.5 * TRI_IN * TRI_NORMALS[0]])),
    "ring": Family(0.8, _ring_texture, _ring_body, _ring_part, RING_MEDIAL),
    "cross": Family(0.13, _cross_texture, _cross_body, _cross_part, np.array([[0, -0.8], [0, 0.8]])),
    "star": Family(0.5, _star_texture, _star_body, _star_part, np.array([[0.85, 0], [0, 0], [-0.35, 0]])),
}


@dataclass(frozen=True)
class Frame:
    """Where a shape sits: centre (x, y) px, radius px, rotation (radians)."""
    centre: np.ndarray
    radius: float
    angle: float

    def local(self, grid):
        """(u, v): the image grid (y, x) in this frame, in units of the radius."""
        dx, dy = grid[1] - self.centre[0], grid[0] - self.centre[1]
        c, s = math.cos(self.angle), math.sin(self.angle)
        return (c * dx + s * dy) / self.radius, (-s * dx + c * dy) / self.radius

    def to_image(self, uv):
        """[n, 2] frame points -> [n, 2] image (x, y)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.centre + self.radius * uv @ np.array([[c, s], [-s, c]])


@dataclass(frozen=True)
class Placed:
    """An object of class `label` in the image; `mask` is all its pixels before occlusion."""
    label: int
    family: Family
    frame: Frame
    mask: np.ndarray


def run(params, *, root):
    """Writes the demo data set in PASCAL VOC layout into folder `root`.

    The set is generated next to `root`, then each of the generator's folders (JPEGImages, ...) replaces
    the one in `root`. `root` must be missing, empty or a demo root (it holds MARKER, or only files the
    generator writes): anything else is someone's data set and is refused, never deleted.
    params: PARAMS (missing ones take the default)."""
    p = check_params(params)
    families = [FAMILIES[name] for name in p["class_names"][1:]]
    write_dataset(root, {"train": p["n_train"], "val": p["n_val"]}, p,
                  lambda rng: _sample(rng, p, families), p["class_names"], "demo dataset")


def check_params(params) -> dict:
    """The resolved params; ValueError naming the one that makes no sense."""
    p = resolve(params, PARAMS, "demo_dataset")
    names = p["class_names"]
    if not names or names[0] != "background" or len(names) < 2:
        raise ValueError(f"demo: class_names must start with 'background' and name at least one class, got {names}")
    missing = [n for n in names[1:] if n not in FAMILIES]
    if missing or len(set(names)) != len(names):
        raise ValueError(f"demo: class names {names} must be distinct and drawn from {sorted(FAMILIES)}")
    if p["n_train"] < 1 or p["n_val"] < 1 or p["size"] < 32 or p["max_objects"] < 1:
        raise ValueError("demo: n_train, n_val and max_objects must be >= 1 and size >= 32")
    if not 0 < p["min_radius"] <= p["max_radius"] < 0.5:
        raise ValueError("demo: need 0 < min_radius <= max_radius < 0.5")
    return p


def _sample(rng, p, families):
    """One image with its labels and scribbles, as a dict of arrays and stroke lists."""
    size = p["size"]
    grid = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres, (y, x)
    image = _background(rng, p, families, grid)
    objects = _place_objects(rng, p, families, grid)
    classes = np.zeros((size, size), np.uint8)
    instances = np.zeros((size, size), np.uint8)
    for n, obj in enumerate(objects, 1):
        _paint_object(rng, image, obj, grid, p["part_size"])
        classes[obj.mask] = obj.label
        instances[obj.mask] = n
    visible = [instances == n for n in range(1, len(objects) + 1)]  # before the void band
    void = border(instances, p["void_radius"])
    classes[void] = instances[void] = 255
    image += rng.normal(0, 3, image.shape)  # sensor noise, so flat regions are not perfectly flat
    return dict(image=np.clip(image, 0, 255).astype(np.uint8), classes=classes, instances=instances,
                objects=objects, visible=visible,
                strokes=_scribbles(rng, p, objects, classes, instances))


def _hsv(h, s, v):
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255


def _background(rng, p, families, grid):
    """A smooth muted colour field with fine texture, small clutter shapes and colour-sharing distractors."""
    size = p["size"]
    cells = np.stack([_hsv(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.85)) for _ in range(16)])
    field = Image.fromarray(cells.reshape(4, 4, 3).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(p["clutter"]):
        _clutter_shape(rng, draw, size)
    image = np.asarray(field, np.float32).copy()
    fine = Image.fromarray(rng.integers(0, 256, (size // 4, size // 4), dtype=np.uint8))
    image += (np.asarray(fine.resize((size, size), Image.BILINEAR), np.float32)[..., None] - 128) * 0.15
    for _ in range(rng.integers(0, p["max_distractors"] + 1)):
        _paint_distractor(rng, image, families[rng.integers(len(families))], grid, p)
    return image


def _clutter_shape(rng, draw, size):
    colour = tuple(int(c) for c in _hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.95)))
    x, y = rng.uniform(0, size, 2)
    w, h = rng.uniform(0.02, 0.08, 2) * size
    kind = rng.integers(3)
    if kind == 0:
        angle = rng.uniform(0, 2 * np.pi)
        end = (x + 3 * w * math.cos(angle), y + 3 * w * math.sin(angle))
        draw.line([(x, y), end], fill=colour, width=int(rng.integers(1, 4)))
    elif kind == 1:
        draw.ellipse((x - w, y - h, x + w, y + h), fill=colour)
    else:
        draw.rectangle((x - w, y - h, x + w, y + h), fill=colour)


def _paint_distractor(rng, image, family, grid, p):
    """An elongated blob or a thick curved band in `family`'s colours and texture, without its part."""
    size = p["size"]
    mask_img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask_img)
    centre = rng.uniform(0.1, 0.9, 2) * size
    reach = rng.uniform(0.5, 1.0) * p["max_radius"] * size
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        bend = rng.uniform(-1, 1)
        t = np.linspace(-1, 1, 8)
        pts = np.stack([t, bend * (t ** 2 - 0.5)], 1) * reach
        c, s = math.cos(angle), math.sin(angle)
        pts = centre + pts @ np.array([[c, -s], [s, c]]).T
        draw.line([tuple(q) for q in pts], fill=1, width=max(3, int(reach * rng.uniform(0.25, 0.45))), joint="curve")
    else:
        for _ in range(rng.integers(2, 4)):  # a lumpy union of small ellipses, never a clean shape
            cx, cy = centre + rng.uniform(-0.5, 0.5, 2) * reach
            w, h = rng.uniform(0.15, 0.45, 2) * reach
            draw.ellipse((cx - w, cy - h, cx + w, cy + h), fill=1)
    mask = np.asarray(mask_img, bool)
    image[mask] = _body_colour(rng, family, Frame(centre, reach / 2, rng.uniform(0, 2 * np.pi)), grid)[mask]


def _place_objects(rng, p, families, grid):
    """Objects in drawing order; later ones may overlap earlier ones but leave each MIN_VISIBLE of it."""
    objects = []
    for _ in range(rng.integers(1, p["max_objects"] + 1)):
        label = _pick_class(rng, p, objects, len(families))
        for _ in range(PLACEMENT_TRIES):
            frame, touching = _propose(rng, p, objects)
            u, v = frame.local(grid)
            obj = Placed(label, families[label - 1], frame, _shape_mask(families[label - 1], u, v, p["part_size"]))
            if _fits(obj, objects, touching, p["size"]):
                objects.append(obj)
                break
    return objects


def _pick_class(rng, p, objects, n_families):
    if objects and rng.random() < p["same_class_prob"]:
        return objects[rng.integers(len(objects))].label
    return int(rng.integers(1, n_families + 1))


def _propose(rng, p, objects):
    """A candidate frame, and whether it is meant to touch an earlier object."""
    size = p["size"]
    radius = rng.uniform(p["min_radius"], p["max_radius"]) * size
    angle = rng.uniform(0, 2 * np.pi)
    if objects and rng.random() < p["touch_prob"]:
        other = objects[rng.integers(len(objects))].frame
        direction = rng.uniform(0, 2 * np.pi)
        gap = (other.radius + radius) * rng.uniform(0.7, 0.95)
        return Frame(other.centre + gap * np.array([math.cos(direction), math.sin(direction)]), radius, angle), True
    return Frame(rng.uniform(0.7 * radius, size - 0.7 * radius, 2), radius, angle), False


def _shape_mask(family, u, v, part_size):
    mask = family.body(u, v)
    for part, _ in family.part(u, v, part_size):
        mask |= part  # a part may stick out of the body (the ring's gem): it belongs to the object
    return mask


def _fits(obj, objects, touching, size):
    """A touching object must meet an earlier one, a free one must keep 2 px from all; both must keep
    their centre 0.7 radius inside the image and leave every earlier object MIN_VISIBLE of its pixels."""
    frame = obj.frame
    if not ((frame.centre >= 0.7 * frame.radius) & (frame.centre <= size - 0.7 * frame.radius)).all():
        return False
    grown = dilate(obj.mask, 2)
    if touching != any((grown & o.mask).any() for o in objects):
        return False
    cover = obj.mask.copy()
    for o in reversed(objects):  # later objects (and the new one) hide earlier ones
        if (o.mask & ~cover).sum() < MIN_VISIBLE * o.mask.sum():
            return False
        cover |= o.mask
    return True


def _body_colour(rng, family, frame, grid):
    """HxWx3 float colour of `family`: a jittered hue with the family texture laid out in `frame`."""
    base = _hsv(family.hue + rng.uniform(-0.04, 0.04), rng.uniform(0.55, 0.9), rng.uniform(0.55, 0.95))
    u, v = frame.local(grid)
    shade = 1 + 0.25 * family.texture(u, v, frame.radius / TEXTURE_PERIOD)
    return base * shade[..., None]


def _paint_object(rng, image, obj, grid, part_size):
    image[obj.mask] = _body_colour(rng, obj.family, obj.frame, grid)[obj.mask]
    u, v = obj.frame.local(grid)
    for part, rgb in obj.family.part(u, v, part_size):
        image[part] = rgb


def _scribbles(rng, p, objects, classes, instances):
    """[(label, [(x, y), ...])]: a wobbly stroke along each object's medial axis, kept where its 3 px line
    stays on the object's visible non-void pixels, and a few background strokes likewise."""
    strokes = background_strokes(rng, classes, p["bg_strokes"], p["size"])
    for n, obj in enumerate(objects, 1):
        strokes += runs(rng, obj.frame.to_image(obj.family.medial), instances == n, obj.label)
    return strokes
