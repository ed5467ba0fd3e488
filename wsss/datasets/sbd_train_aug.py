"""SBD -> train_aug: SBD class masks as VOC palette PNGs in SegmentationClassAug/ and the train_aug list.

train_aug = (SBD train + SBD val + VOC train) minus VOC val, sorted: 10,582 ids on the real sets (every
paper here trains on it). SBD's `cls/<id>.mat` holds struct GTcls whose field Segmentation is the uint8
class map (0 background, 1..20, as VOC). Only ids without a VOC mask are converted: where both exist the
loaders read VOC's SegmentationClass (wsss.datasets.voc.path), and SegmentationClassAug files already there
(e.g. the DeepLab release's) are kept as they are."""
from pathlib import Path

import numpy as np
import scipy.io
from tqdm import tqdm

from wsss.datasets import voc
from wsss.datasets.convert import read_list, write_list
from wsss.errors import DataError
from wsss.io import save_png
from wsss.params import resolve

PARAMS = {"class_names": voc.CLASS_NAMES}


def train_aug_ids(sbd_train, sbd_val, voc_train, voc_val) -> list[str]:
    """(SBD train + SBD val + VOC train) minus VOC val, sorted."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


def read_sbd_mask(file, n_classes: int) -> np.ndarray:
    """uint8 HxW class map of an SBD `cls/<id>.mat` (GTcls.Segmentation)."""
    try:
        mat = scipy.io.loadmat(file)
        labels = np.asarray(mat["GTcls"][0]["Segmentation"][0])
    except (OSError, ValueError, KeyError, IndexError, scipy.io.matlab.MatReadError) as e:
        raise DataError(f"{file}: not an SBD class file with GTcls.Segmentation ({e})") from e
    if labels.ndim != 2:
        raise DataError(f"{file}: GTcls.Segmentation has shape {labels.shape}, expected HxW")
    return voc.check_values(labels.astype(np.uint8), n_classes, file)


def run(params: dict, *, root, sbd, out):
    """Converts the SBD masks under `sbd` (benchmark_RELEASE/dataset) needed by train_aug into `root`
    (a VOC 2012 root) and writes the list `out` (ImageSets/Segmentation/train_aug.txt)."""
    params = resolve(params, PARAMS, "sbd_train_aug")
    sbd = Path(sbd)
    voc_val = voc.read_ids(root, "val")
    ids = train_aug_ids(read_list(sbd / "train.txt"), read_list(sbd / "val.txt"), voc.read_ids(root, "train"), voc_val)
    palette = voc.voc_palette()
    for image_id in tqdm(ids, desc="sbd_train_aug"):
        image = voc.path(root, "image", image_id)
        if not image.is_file():
            raise DataError(f"{image}: train_aug image not found (SBD's images are VOC 2012 JPEGImages)")
        if voc.path(root, "mask", image_id).is_file():  # VOC's own mask, or one converted before
            continue
        labels = read_sbd_mask(sbd / "cls" / f"{image_id}.mat", len(params["class_names"]))
        save_png(voc.path(root, "mask_aug", image_id), labels, palette)
    write_list(out, ids)
