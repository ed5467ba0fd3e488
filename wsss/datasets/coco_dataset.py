"""COCO 2014 -> VOC layout: the instances json (pycocotools) as class masks, instance masks and a list.

The 80 categories, sorted by id, become classes 1..80 (class_names must name them in that order after
background); crowd regions are void (255) where no object lies. Objects are drawn largest first, so a small
object on a large one stays visible; SegmentationObject numbers them 1..N in that order (N <= 254; further
ones are void). Images without a non-crowd object are left out (no image-level label to learn).
Writes SegmentationClass/<id>.png, SegmentationObject/<id>.png, JPEGImages/<id>.jpg (links) and the list."""
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wsss.datasets import voc
from wsss.datasets.convert import link_image, write_list
from wsss.errors import DataError
from wsss.io import save_png
from wsss.params import resolve

PARAMS = {"class_names": voc.CLASS_NAMES}
MAX_INSTANCES = 254


def class_index(coco, class_names) -> dict[int, int]:
    """COCO category id -> 1..K in id order; the names must be class_names[1:]."""
    cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    if names != list(class_names[1:]):
        raise DataError(f"COCO categories {names} differ from dataset.class_names[1:] {list(class_names[1:])}")
    return {c["id"]: k for k, c in enumerate(cats, start=1)}


def image_masks(coco, image: dict, index: dict[int, int]):
    """(class mask, instance mask) uint8 HxW of one image, or None when it has no non-crowd object."""
    anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"], iscrowd=None))
    objects = sorted((a for a in anns if not a.get("iscrowd")), key=lambda a: -a["area"])
    if not objects:
        return None
    shape = (image["height"], image["width"])
    classes, instances = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    for n, ann in enumerate(objects, start=1):
        region = coco.annToMask(ann).astype(bool)
        classes[region] = index[ann["category_id"]]
        instances[region] = n if n <= MAX_INSTANCES else voc.IGNORE
    for ann in anns:
        if ann.get("iscrowd"):
            crowd = coco.annToMask(ann).astype(bool) & (classes == 0)
            classes[crowd] = voc.IGNORE
            instances[crowd] = voc.IGNORE
    return classes, instances


def read_annotations(file):
    """The instances json as a pycocotools COCO index; DataError naming the file if it is not one."""
    from pycocotools.coco import COCO

    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: COCO instances json not found")
    try:
        data = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{file}: not a COCO instances json ({e})") from e
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                       "categories")):
        raise DataError(f"{file}: not a COCO instances json (expected an object with the lists images, annotations "
                        "and categories)")
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    return coco


def run(params: dict, *, annotations, images, root, out):
    """Converts the instances json `annotations` of the images in folder `images` into `root`; `out`: the list."""
    params = resolve(params, PARAMS, "coco_dataset")
    coco = read_annotations(annotations)
    index = class_index(coco, params["class_names"])
    listed = coco.loadImgs(sorted(coco.getImgIds()))
    for image in listed:  # every file name is one plain name (no path out of `images`), before anything is written
        voc.check_id(image.get("file_name"), f"{annotations}: image {image['id']}")
    palette = voc.voc_palette()
    kept = []
    for image in tqdm(listed, desc="coco_dataset"):
        masks = image_masks(coco, image, index)
        if masks is None:
            continue
        image_id = Path(image["file_name"]).stem
        link_image(Path(images) / image["file_name"], root, image_id)
        save_png(voc.path(root, "mask", image_id), masks[0], palette)
        save_png(voc.path(root, "instances", image_id), masks[1], palette)
        kept.append(image_id)
    write_list(out, kept)
