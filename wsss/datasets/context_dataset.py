"""PASCAL-Context -> VOC layout: the 59 most frequent classes + background (PSI Table 2's setting).

The release's `trainval/<id>.mat` holds LabelMap (uint16, ids of its 459 classes listed in `labels.txt` as
`idx: name`). Classes named in `class_names` (background first, then the 59 of `59_labels.txt`) map to their
index; every other id, unlabelled pixels included, is 0 (background), as in PSI. Writes
SegmentationClass/<id>.png, JPEGImages/<id>.jpg (links to VOC2010's images) and the train / val lists
(VOC2010 ImageSets/Main, ids with a label map; train keeps images with at least one object class, the
image-level tags the CAM network learns)."""
from pathlib import Path

import numpy as np
import scipy.io
from tqdm import tqdm

from wsss.datasets import voc
from wsss.datasets.convert import link_image, read_list, write_list
from wsss.errors import DataError
from wsss.io import save_png
from wsss.params import resolve

PARAMS = {"class_names": voc.CLASS_NAMES}


def read_labels(file) -> dict[int, str]:
    """`idx: name` lines of the release's labels.txt / 59_labels.txt."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: label list not found")
    labels = {}
    for line in file.read_text().splitlines():
        if line.strip():
            index, _, name = line.partition(":")
            if not index.strip().isdigit() or not name.strip():
                raise DataError(f"{file}: line {line!r} is not 'idx: name'")
            labels[int(index)] = name.strip()
    return labels


def lookup_table(labels: dict[int, str], class_names) -> np.ndarray:
    """uint8 [max id + 1]: release id -> index in class_names, 0 for classes not listed."""
    table = np.zeros(max(labels) + 1, np.uint8)
    for index, name in labels.items():
        if name in class_names:
            table[index] = class_names.index(name)
    return table


def read_label_map(file, table: np.ndarray) -> np.ndarray:
    try:
        label_map = np.asarray(scipy.io.loadmat(file)["LabelMap"])
    except (OSError, ValueError, KeyError, scipy.io.matlab.MatReadError) as e:
        raise DataError(f"{file}: not a PASCAL-Context file with LabelMap ({e})") from e
    if label_map.ndim != 2 or label_map.max(initial=0) >= len(table):
        raise DataError(f"{file}: LabelMap must be HxW ids 0..{len(table) - 1}")
    return table[label_map]


def run(params: dict, *, context, voc2010, root, train, val):
    """Converts the release `context` (trainval/, labels.txt, 59_labels.txt) for the images of `voc2010`
    into the VOC-layout `root`; `train`, `val`: the list files written."""
    params = resolve(params, PARAMS, "context_dataset")
    names = params["class_names"]
    context, voc2010 = Path(context), Path(voc2010)
    top = set(read_labels(context / "59_labels.txt").values())
    if top != set(names[1:]):
        raise DataError(f"{context / '59_labels.txt'}: its classes differ from dataset.class_names[1:] "
                        f"(only in the file: {sorted(top - set(names))}, only in the config: "
                        f"{sorted(set(names[1:]) - top)})")
    table = lookup_table(read_labels(context / "labels.txt"), names)
    palette = voc.voc_palette()
    for split, out in (("train", train), ("val", val)):
        kept = []
        for image_id in tqdm(read_list(voc2010 / "ImageSets" / "Main" / f"{split}.txt"), desc=f"context {split}"):
            mat = context / "trainval" / f"{image_id}.mat"
            if not mat.is_file():
                continue
            labels = read_label_map(mat, table)
            if split == "train" and not (labels > 0).any():
                continue
            link_image(voc.path(voc2010, "image", image_id), root, image_id)
            save_png(voc.path(root, "mask", image_id), labels, palette)
            kept.append(image_id)
        write_list(out, kept)
