"""Reading and validating data in PASCAL VOC 2012 layout (the real VOC 2012, the demo set, any user root).

Every loader checks what it reads and raises `DataError` naming the file and the problem, so a bad file
stops a stage with a message a user can act on instead of a shape error deep inside a trainer.
Class indices are label-space everywhere: 0 = background, 1..K objects, 255 = void / unlabelled."""
import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError
from tqdm import tqdm

from wsss import IGNORE
from wsss.errors import DataError
from wsss.params import Param
from wsss.transforms import normalize, to_tensor


# Parameters many stages share.
CLASS_NAMES = Param(list, help="class names, background first, then the K object classes in label order")
SPLIT = Param(str, help="ImageSets/Segmentation/<split>.txt: the images this stage works on")
TAGS_FROM = Param(str, "auto", "image-level labels from: masks (SegmentationClass) | xml (Annotations) | "
                  "scribbles (the classes drawn in pascal_2012_scribble, CDSP) | auto (xml when every image has "
                  "one, as IRNet's released cls_labels; else masks)")

# Where each kind of file lives under a root; `{}` is the image id.
LAYOUT = {
    "image": "JPEGImages/{}.jpg",
    "mask": "SegmentationClass/{}.png",
    "mask_aug": "SegmentationClassAug/{}.png",  # SBD masks (rule sbd_train_aug); read where "mask" lacks the id
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
    """The file of `kind` (a LAYOUT key) for `image_id` under `root`. A class mask comes from
    SegmentationClass, else from SegmentationClassAug (train_aug: VOC's own masks win where both exist)."""
    file = Path(root) / LAYOUT[kind].format(image_id)
    if kind == "mask" and not file.is_file():
        aug = Path(root) / LAYOUT["mask_aug"].format(image_id)
        return aug if aug.is_file() else file
    return file


def split_files(root, split: str, *kinds: str) -> list[Path]:
    """The split file and, for each of its ids, the files of `kinds` (LAYOUT keys): what a stage reads."""
    ids = read_ids(root, split)
    return [path(root, "split", split)] + [path(root, kind, i) for i in ids for kind in kinds]


def tag_kind(tags_from: str) -> str:
    """The LAYOUT kind image-level tags are read from (`tags_from` masks, xml or scribbles; resolve "auto"
    with `tags_source`)."""
    return {"masks": "mask", "xml": "annotation", "scribbles": "scribble"}[tags_from]


def voc_palette(n: int = 256) -> np.ndarray:
    """The standard PASCAL VOC colour map: bit 3j, 3j+1, 3j+2 of the index set bit 7-j of R, G, B."""
    index = np.arange(n)
    palette = np.zeros((n, 3), np.int64)
    for j in range(8):
        for channel in range(3):
            palette[:, channel] |= ((index >> (3 * j + channel)) & 1) << (7 - j)
    return palette.astype(np.uint8)


# An image id becomes a file name in every output folder, so it must be one harmless path component:
# letters, digits, `_`, `-`, `.` and `+` (VOC's are 2007_000032), not starting with `.` or `-`.
IMAGE_ID = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]*")


def check_id(name: str, where, what: str = "image id") -> str:
    """`name` if it is one plain file name (IMAGE_ID), else DataError `<where>: <what> 'name' is not ...`. The one
    validator of every id that enters wsss: split lists, the converters' lists and COCO file names, predict's
    image names, split names (so no `/`, `..` or hidden name can put an output outside its folder)."""
    if not isinstance(name, str) or not IMAGE_ID.fullmatch(name):
        raise DataError(f"{where}: {what} {name!r} is not a plain file name (allowed: letters, digits, _ + - . and "
                        "no leading . or -)")
    return name


def read_id_list(file, what: str = "split list") -> list[str]:
    """The ids of a list file (first token of each non-blank line), each checked by `check_id` and listed once
    (a repeat would count an image twice); DataError naming the file and the line."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: {what} not found")
    ids, lines = [], {}
    for number, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        image_id = check_id(line.split()[0], f"{file}: line {number}")
        if image_id in lines:
            raise DataError(f"{file}: line {number}: image id {image_id!r} repeats line {lines[image_id]}")
        lines[image_id] = number
        ids.append(image_id)
    if not ids:
        raise DataError(f"{file}: {what} is empty")
    return ids


def read_ids(root, split: str) -> list[str]:
    """Image ids listed in ImageSets/Segmentation/<split>.txt (first token of each non-blank line).
    `a+b` is the union of splits a and b in order, each id once (the images the label stages cover:
    dataset.train_split + dataset.label_split); a split file whose own name holds `+` is refused."""
    if "+" in split and path(root, "split", split).is_file():
        raise DataError(f"{path(root, 'split', split)}: the split name {split!r} holds '+', which wsss reads as the "
                        f"union of the splits {split.split('+')}; rename the file")
    ids = []
    for name in split.split("+"):
        ids.extend(read_id_list(path(root, "split", check_id(name, path(root, "split", name).parent, "split name"))))
    return list(dict.fromkeys(ids))


def scored_ids(root, split: str, kinds=("mask",)) -> list[str]:
    """The ids of `split` for an evaluation, which needs ground truth (`kinds`: mask, instances) for every
    image: a split without it is an error naming the split and the first id lacking it."""
    ids = read_ids(root, split)
    for kind in kinds:
        missing = [i for i in ids if not path(root, kind, i).is_file()]
        if missing:
            where = LAYOUT[kind].split("/")[0] + (" or SegmentationClassAug" if kind == "mask" else "")
            raise DataError(f"split {split!r} cannot be scored: {len(missing)} of {len(ids)} images have no "
                            f"{where} PNG, the first {missing[0]!r} ({path(root, kind, missing[0])}); score on a "
                            "split with masks (dataset.label_split / eval_split)")
    return ids


def load_image(file) -> np.ndarray:
    """uint8 HxWx3 RGB (grey or palette images are converted; a 16-bit grey PNG is scaled to 8 bits, where
    PIL's conversion would clip every value above 255 to white)."""
    img = open_image(file, "image")
    if img.mode.startswith("I"):  # I;16, I;16B: 16-bit grey PNGs (I: older PIL's reading of them)
        grey = np.asarray(img).astype(np.float64)
        if grey.min(initial=0) < 0 or grey.max(initial=0) > 65535:
            raise DataError(f"{file}: image holds values outside 0..65535 (mode {img.mode})")
        grey = np.round(grey * (255 / 65535)).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def same_size_groups(root, ids, size: int):
    """Lists of at most `size` consecutive image indices of one image size (so they stack)."""
    group, shape = [], None
    for i, image_id in enumerate(ids):
        s = image_shape(path(root, "image", image_id))
        if group and (s != shape or len(group) == size):
            yield group
            group = []
        group.append(i)
        shape = s
    if group:
        yield group


def image_batches(root, ids, size: int):
    """(indices, [B, 3, H, W] normalised images) over `ids` in order, batches of at most `size` whole images
    of one size (same_size_groups)."""
    for index in same_size_groups(root, ids, size):
        yield index, torch.stack([to_tensor(normalize(load_image(path(root, "image", ids[i])))) for i in index])


def image_shape(file, what: str = "image") -> tuple[int, int]:
    """(height, width) from the file's header, without decoding it (checked as `open_image` checks it)."""
    with _header(file, what) as img:
        return img.height, img.width


def load_mask(file, n_classes: int, shape=None) -> np.ndarray:
    """uint8 HxW class indices of a SegmentationClass PNG: 0..n_classes-1 or 255 (void)."""
    return check_values(_read_indices(file, "label PNG", shape), n_classes, file)


def load_mask_or_void(root, image_id: str, n_classes: int, shape) -> np.ndarray:
    """The class mask of `image_id`, or all void (255) where the training split has none (train_aug-style
    splits: statistics against ground truth then skip the image)."""
    file = path(root, "mask", image_id)
    return load_mask(file, n_classes, shape) if file.is_file() else np.full(shape[:2], IGNORE, np.uint8)


def load_instances(file, shape=None) -> np.ndarray:
    """uint8 HxW instance ids of a SegmentationObject PNG: 0 background, 1..N instances, 255 void."""
    return _read_indices(file, "instance PNG", shape)


def load_scribble(file, n_classes: int, shape=None) -> np.ndarray:
    """uint8 HxW scribble PNG: 0 background scribble, 1..n_classes-1 object scribbles, 255 unlabelled."""
    return check_values(_read_indices(file, "scribble PNG", shape), n_classes, file)


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
    strokes, half = [], width // 2
    for polygon in xml.iter("polygon"):
        label = _scribble_label(_text(polygon, "tag", file), class_names, file)
        points = [(_int(p, "X", file), _int(p, "Y", file)) for p in polygon.iter("point")]
        for x, y in points:  # a point far outside would draw a stroke across the image towards it
            if not (-half <= x < shape[1] + half and -half <= y < shape[0] + half):
                raise DataError(f"{file}: point ({x}, {y}) is outside the {shape[1]}x{shape[0]} (WxH) image")
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


def scribble_files(root, ids, folder=None) -> list[Path]:
    """The scribble PNG of every id: `<folder>/<id>.png` (e.g. a dropped / shrunk set), or the root's
    pascal_2012_scribble."""
    return label_files(folder if folder is not None else path(root, "scribble", "x").parent, ids, "scribble PNG")


def tags_source(root, ids, source: str) -> str:
    """"masks" or "xml": `source` itself, or for "auto" xml when Annotations/<id>.xml exists for every id
    (the released IRNet's cls_labels come from the XML) and masks otherwise."""
    if source != "auto":
        return source
    return "xml" if all(path(root, "annotation", i).is_file() for i in ids) else "masks"


def image_tags(root, ids, class_names, source: str = "auto") -> np.ndarray:
    """bool [N, K] image-level labels, column c-1 = class c, from SegmentationClass masks, from
    Annotations/<id>.xml (VOC `object/name`), from the scribble PNGs (the object classes drawn: CDSP's
    "classes from scribbles"), or "auto" (`tags_source`). An image without any object class is an error."""
    source = tags_source(root, ids, source)
    tags = np.zeros((len(ids), len(class_names) - 1), bool)
    for row, image_id in enumerate(tqdm(ids, desc=f"image tags ({source})", leave=False)):
        tags[row] = tags_of(root, image_id, class_names, source)
    return tags


def tags_of(root, image_id: str, class_names, source: str = "masks") -> np.ndarray:
    """One row of `image_tags` (`source` masks, xml or scribbles)."""
    readers = {"masks": _tags_from_mask, "xml": _tags_from_xml, "scribbles": _tags_from_scribble}
    if source not in readers:
        raise ValueError(f"tags source must be one of {sorted(readers)}, got {source!r}")
    file = path(root, tag_kind(source), image_id)
    if source == "masks" and not file.is_file():
        raise DataError(f"{file}: no class mask to take image tags from; for splits whose images lack "
                        "masks set dataset.tags_from: xml (Annotations/<id>.xml)")
    tags = readers[source](file, class_names)
    if not tags.any():
        raise DataError(f"{file}: image has no object class (only background/void)")
    return tags


class VOCDataset(torch.utils.data.Dataset):
    """Images of one split with their image-level tags (and masks / instances on request), as raw numpy:
    dict(id, image uint8 HxWx3, tags float32 [K], mask uint8 HxW, instances uint8 HxW).
    Trainers apply their own transforms."""

    def __init__(self, root, split, class_names, tags_from="auto", with_mask=True, with_instances=False):
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


# Images wsss reads at most (WSSS_MAX_PIXELS, default 64 MP): a header claiming more is refused before any
# pixel is decoded (a 100 MP image needs 1.1 GiB as float32 RGB; a 60000 x 60000 header is a decompression
# bomb). It replaces PIL's own limit, which raises without the file name.
MAX_PIXELS = int(os.environ.get("WSSS_MAX_PIXELS", 64_000_000))
Image.MAX_IMAGE_PIXELS = None


def _header(file, what: str) -> Image.Image:
    """The opened, not yet decoded image: present, of a known format, not larger than MAX_PIXELS, stored
    upright; else a DataError naming the file."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: {what} not found")
    try:
        img = Image.open(file)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{file}: unreadable {what} ({e})") from e
    if img.width * img.height > MAX_PIXELS:
        img.close()
        raise DataError(f"{file}: {what} is {img.width}x{img.height} pixels ({img.width * img.height / 1e6:.0f} MP), "
                        f"more than wsss reads ({MAX_PIXELS / 1e6:.0f} MP, WSSS_MAX_PIXELS); downscale it")
    _check_orientation(img, file, what)
    return img


def open_image(file, what: str) -> Image.Image:
    """Opens and fully decodes an image (`_header`'s checks), turning every failure into a DataError naming
    the file."""
    img = _header(file, what)
    try:
        img.load()  # decode now: a truncated file fails here, not later inside a trainer
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{file}: unreadable {what} ({e})") from e
    return img


EXIF_ORIENTATION = 0x0112


def _check_orientation(img: Image.Image, file, what: str):
    """Refuses an EXIF orientation other than 1 (as stored), for images and masks alike. wsss reads pixels
    as stored, as VOC's masks were drawn; a viewer would show a rotated photo, so whether its mask matches
    the stored or the displayed pixels is unknowable: the user rotates the file (`exiftran -ai`,
    `mogrify -auto-orient`) or strips the tag, and the mask to match."""
    orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    if orientation != 1:
        raise DataError(f"{file}: {what} has EXIF orientation {orientation} (displayed rotated or mirrored); "
                        "wsss reads pixels as stored: rotate the file and its mask to match, or remove the tag")


def _read_indices(file, what: str, shape) -> np.ndarray:
    """Raw indices of a palette or grey PNG; converting a palette PNG to RGB would lose them."""
    img = open_image(file, what)
    if img.mode not in ("P", "L"):
        raise DataError(f"{file}: {what} has mode {img.mode}; expected a palette (P) or grey (L) PNG "
                        "holding class indices")
    labels = np.asarray(img)
    if shape is not None and labels.shape != tuple(shape[:2]):
        raise DataError(f"{file}: {what} is {labels.shape[0]}x{labels.shape[1]} (HxW) but its image is "
                        f"{shape[0]}x{shape[1]}")
    return labels


def check_values(labels: np.ndarray, n_classes: int, file) -> np.ndarray:
    """`labels` if every value is a class index below n_classes or void (255); else a DataError naming `file`."""
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
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{file}: <{tag}> is {text!r}, not a number")
    return int(round(value))
