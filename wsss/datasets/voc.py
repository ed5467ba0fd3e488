"""Reading and validating data in PASCAL VOC 2012 layout (the real VOC 2012, the demo set, any user root).

Every loader checks what it reads and raises `DataError` naming the file and the problem, so a bad file
stops a stage with a message a user can act on instead of a shape error deep inside a trainer.
Class indices are label-space everywhere: 0 = background, 1..K objects, 255 = void / unlabelled."""
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError
from tqdm import tqdm

from wsss.errors import DataError
from wsss.params import Param

IGNORE = 255

# Parameters many stages share.
CLASS_NAMES = Param(list, help="class names, background first, then the K object classes in label order")
SPLIT = Param(str, help="ImageSets/Segmentation/<split>.txt: the images this stage works on")
TAGS_FROM = Param(str, "masks", "image-level labels from: masks (SegmentationClass) | xml (Annotations) | "
                  "scribbles (the classes drawn in pascal_2012_scribble, CDSP)")

# Where each kind of file lives under a root; `{}` is the image id.
LAYOUT = {
    "image": "JPEGImages/{}.jpg",
    "mask": "SegmentationClass/{}.png",
    "instances": "SegmentationObject/{}.png",
    "annotation": "Annotations/{}.xml",
    "scribble": "pascal_2012_scribble/{}.png",
    "scribble_xml": "scribble_annotation/pascal_2012/{}.xml",
    "split": "ImageSets/Segmentation/{}.txt",
}

# ScribbleSup tags use short names for five VOC classes.
SCRIBBLESUP_ALIASES = {"plane": "aeroplane", "bike": "bicycle", "table": "diningtable",
                       "plant": "pottedplant", "monitor": "tvmonitor"}
# ScribbleSup annotated PASCAL-Context: its other 39 classes are background in VOC's label space.
SCRIBBLESUP_CONTEXT = frozenset(
    "sky grass ground road building tree water mountain wall floor track keyboard ceiling bag bed "
    "bedclothes bench book cabinet cloth computer cup curtain door fence flower food mouse plate "
    "platform rock shelves sidewalk sign snow truck window wood light".split())


def path(root, kind: str, image_id: str) -> Path:
    """The file of `kind` (a LAYOUT key) for `image_id` under `root`."""
    return Path(root) / LAYOUT[kind].format(image_id)


def voc_palette(n: int = 256) -> np.ndarray:
    """The standard PASCAL VOC colour map: bit 3j, 3j+1, 3j+2 of the index set bit 7-j of R, G, B."""
    index = np.arange(n)
    palette = np.zeros((n, 3), np.int64)
    for j in range(8):
        for channel in range(3):
            palette[:, channel] |= ((index >> (3 * j + channel)) & 1) << (7 - j)
    return palette.astype(np.uint8)


def read_ids(root, split: str) -> list[str]:
    """Image ids listed in ImageSets/Segmentation/<split>.txt (first token of each non-blank line)."""
    file = path(root, "split", split)
    if not file.is_file():
        raise DataError(f"{file}: split list not found")
    ids = [line.split()[0] for line in file.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{file}: split list is empty")
    return ids


def load_image(file) -> np.ndarray:
    """uint8 HxWx3 RGB (grey or palette JPEGs are converted)."""
    return np.asarray(_open(file, "image").convert("RGB"))


def load_mask(file, n_classes: int, shape=None) -> np.ndarray:
    """uint8 HxW class indices of a SegmentationClass PNG: 0..n_classes-1 or 255 (void)."""
    return _check_values(_read_indices(file, "label PNG", shape), n_classes, file)


def load_instances(file, shape=None) -> np.ndarray:
    """uint8 HxW instance ids of a SegmentationObject PNG: 0 background, 1..N instances, 255 void."""
    return _read_indices(file, "instance PNG", shape)


def load_scribble(file, n_classes: int, shape=None) -> np.ndarray:
    """uint8 HxW scribble PNG: 0 background scribble, 1..n_classes-1 object scribbles, 255 unlabelled."""
    return _check_values(_read_indices(file, "scribble PNG", shape), n_classes, file)


def load_grey(file, what: str, shape=None) -> np.ndarray:
    """uint8 HxW raw values of a grey (or palette) PNG that holds no class indices, e.g. a distance map."""
    return _read_indices(file, what, shape)


def load_scribble_xml(file, class_names, shape, width: int = 3) -> np.ndarray:
    """Rasterises a ScribbleSup XML (`<polygon><tag>name</tag><point><X/><Y/></point>...`) to a uint8
    HxW scribble map like `load_scribble`'s, with lines `width` px wide.

    Tag `background`, and PASCAL-Context classes not in `class_names`, are background (0); the
    ScribbleSup short names (plane, bike, ...) map to the VOC names when those are in `class_names`."""
    file = Path(file)
    xml = _parse_xml(file, "scribble XML")
    _check_xml_size(xml, shape, file)
    strokes = []
    for polygon in xml.iter("polygon"):
        label = _scribble_label(_text(polygon, "tag", file), class_names, file)
        points = [(_int(p, "X", file), _int(p, "Y", file)) for p in polygon.iter("point")]
        if points:
            strokes.append((label, points))
    return rasterise_scribbles(strokes, shape, width)


def rasterise_scribbles(strokes, shape, width: int = 3) -> np.ndarray:
    """Draws polylines [(label, [(x, y), ...]), ...] `width` px wide on an unlabelled (255) HxW map.

    Background strokes go first so that an object stroke crossing one keeps its label."""
    canvas = Image.new("L", (shape[1], shape[0]), IGNORE)
    draw = ImageDraw.Draw(canvas)
    half = width // 2
    for label, points in sorted(strokes, key=lambda s: s[0] != 0):
        if len(points) == 1:  # PIL draws nothing for a one-point line
            (x, y), = points
            draw.rectangle((x - half, y - half, x + half, y + half), fill=label)
        else:
            draw.line([tuple(p) for p in points], fill=label, width=width, joint="curve")
    return np.asarray(canvas)


def label_files(folder, ids, what: str) -> list[Path]:
    """`folder`/<id>.png for every id; checked up front, so a missing file stops a trainer before it starts."""
    files = [Path(folder) / f"{i}.png" for i in ids]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: {what} not found ({len(missing)} of {len(ids)} missing in {folder})")
    return files


def image_tags(root, ids, class_names, source: str = "masks") -> np.ndarray:
    """bool [N, K] image-level labels, column c-1 = class c, from SegmentationClass masks, from
    Annotations/<id>.xml (VOC `object/name`) or from the scribble PNGs (the object classes drawn: CDSP's
    "classes from scribbles"). An image without any object class is an error."""
    readers = {"masks": _tags_from_mask, "xml": _tags_from_xml, "scribbles": _tags_from_scribble}
    if source not in readers:
        raise ValueError(f"tags source must be one of {sorted(readers)}, got {source!r}")
    kinds = {"masks": "mask", "xml": "annotation", "scribbles": "scribble"}
    tags = np.zeros((len(ids), len(class_names) - 1), bool)
    for row, image_id in enumerate(tqdm(ids, desc=f"image tags ({source})", leave=False)):
        file = path(root, kinds[source], image_id)
        tags[row] = readers[source](file, class_names)
        if not tags[row].any():
            raise DataError(f"{file}: image has no object class (only background/void)")
    return tags


class VOCDataset(torch.utils.data.Dataset):
    """Images of one split with their image-level tags (and masks / instances on request), as raw numpy:
    dict(id, image uint8 HxWx3, tags float32 [K], mask uint8 HxW, instances uint8 HxW).
    Trainers apply their own transforms."""

    def __init__(self, root, split, class_names, tags_from="masks", with_mask=True, with_instances=False):
        self.root = Path(root)
        self.class_names = list(class_names)
        self.ids = read_ids(root, split)
        self.tags = image_tags(root, self.ids, self.class_names, tags_from).astype(np.float32)
        self.with_mask = with_mask
        self.with_instances = with_instances

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        image_id = self.ids[index]
        image = load_image(path(self.root, "image", image_id))
        item = dict(id=image_id, image=image, tags=self.tags[index])
        if self.with_mask:
            item["mask"] = load_mask(path(self.root, "mask", image_id), len(self.class_names), image.shape[:2])
        if self.with_instances:
            item["instances"] = load_instances(path(self.root, "instances", image_id), image.shape[:2])
        return item


def _open(file, what: str) -> Image.Image:
    """Opens and fully decodes an image, turning every failure into a DataError naming the file."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: {what} not found")
    try:
        img = Image.open(file)
        img.load()  # decode now: a truncated file fails here, not later inside a trainer
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{file}: unreadable {what} ({e})") from e
    return img


def _read_indices(file, what: str, shape) -> np.ndarray:
    """Raw indices of a palette or grey PNG; converting a palette PNG to RGB would lose them."""
    img = _open(file, what)
    if img.mode not in ("P", "L"):
        raise DataError(f"{file}: {what} has mode {img.mode}; expected a palette (P) or grey (L) PNG "
                        "holding class indices")
    labels = np.asarray(img)
    if shape is not None and labels.shape != tuple(shape[:2]):
        raise DataError(f"{file}: {what} is {labels.shape[0]}x{labels.shape[1]} (HxW) but its image is "
                        f"{shape[0]}x{shape[1]}")
    return labels


def _check_values(labels: np.ndarray, n_classes: int, file) -> np.ndarray:
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    bad = present[(present >= n_classes) & (present != IGNORE)]
    if bad.size:
        raise DataError(f"{file}: label values {bad.tolist()} outside 0..{n_classes - 1} and {IGNORE}")
    return labels


def _tags_from_mask(file, class_names, load=load_mask) -> np.ndarray:
    labels = load(file, len(class_names))
    present = np.bincount(labels.ravel(), minlength=256)[1:len(class_names)]
    return present > 0


def _tags_from_scribble(file, class_names) -> np.ndarray:
    return _tags_from_mask(file, class_names, load_scribble)


def _tags_from_xml(file, class_names) -> np.ndarray:
    index = {name: c for c, name in enumerate(class_names)}
    tags = np.zeros(len(class_names) - 1, bool)
    for obj in _parse_xml(file, "annotation").iter("object"):
        name = _text(obj, "name", file)
        if name not in index:
            raise DataError(f"{file}: object name {name!r} is not one of the classes {list(class_names)}")
        if index[name] > 0:
            tags[index[name] - 1] = True
    return tags


def _scribble_label(tag: str, class_names, file) -> int:
    name = tag if tag in class_names else SCRIBBLESUP_ALIASES.get(tag, tag)
    if name in class_names:
        return class_names.index(name)
    if tag == "background" or tag in SCRIBBLESUP_CONTEXT:
        return 0
    raise DataError(f"{file}: scribble tag {tag!r} is neither background nor one of {list(class_names)}")


def _check_xml_size(xml, shape, file):
    """ScribbleSup XMLs carry the image size; one that disagrees belongs to another image."""
    size = xml.find("size")
    if size is None:
        return
    xml_shape = (_int(size, "height", file), _int(size, "width", file))
    if xml_shape != tuple(shape[:2]):
        raise DataError(f"{file}: scribble XML is for a {xml_shape[0]}x{xml_shape[1]} (HxW) image but "
                        f"the image is {shape[0]}x{shape[1]}")


def _parse_xml(file, what: str) -> ET.Element:
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: {what} not found")
    try:
        return ET.parse(file).getroot()
    except ET.ParseError as e:
        raise DataError(f"{file}: unreadable {what} ({e})") from e


def _text(element, tag: str, file) -> str:
    child = element.find(tag)
    if child is None or not (child.text or "").strip():
        raise DataError(f"{file}: <{element.tag}> without <{tag}>")
    return child.text.strip()


def _int(element, tag: str, file) -> int:
    text = _text(element, tag, file)
    try:
        return int(round(float(text)))
    except ValueError as e:
        raise DataError(f"{file}: <{tag}> is {text!r}, not a number") from e
