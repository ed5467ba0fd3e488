"""A folder of "your own images" made from a built-in data set (tests of the folder data set route): the images
under nested folders with other names, some re-encoded as PNG, a tags file from the masks' classes, and the masks
and scribbles in folders of their own, in the images' tree."""
import csv
import shutil
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from wsss.datasets import voc


def user_path(index: int, image_id: str) -> str:
    """Nested folders, spaces and other characters, JPEG and PNG."""
    folder = ("holiday photos/day 1", "holiday photos/day 2", "misc")[index % 3]
    suffix = ".png" if index % 2 else ".jpg"
    return f"{folder}/IMG {index:03d} ({image_id}){suffix}"


def make_user_folder(source_root, dest, class_names, splits=("train", "val"), split_column=False, png_scribbles=True):
    """Writes dest/images, dest/tags.csv, dest/withheld (masks), dest/scribbles (PNG for even, ScribbleSup XML for
    odd images; XML for all without `png_scribbles`) from `source_root` (a built-in data set). Returns {user path:
    source id}."""
    dest = Path(dest)
    mapping, rows = {}, [["path", "classes", "split"] if split_column else ["path", "classes"]]
    index = 0
    for split in splits:
        for image_id in voc.read_ids(source_root, split):
            path = user_path(index, image_id)
            target = dest / "images" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.endswith(".png"):
                Image.open(voc.path(source_root, "image", image_id)).save(target)
            else:
                shutil.copy(voc.path(source_root, "image", image_id), target)
            mask = voc.load_mask(voc.path(source_root, "mask", image_id), len(class_names))
            present = [class_names[c] for c in np.unique(mask) if 0 < c < len(class_names)]
            rows.append([path, ";".join(present)] + ([split] if split_column else []))
            for folder, source in (("withheld", voc.path(source_root, "mask", image_id)),
                                   ("scribbles", voc.path(source_root, "scribble" if png_scribbles and index % 2 == 0
                                                          else "scribble_xml", image_id))):
                out = dest / folder / PurePosixPath(path).with_suffix(source.suffix)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, out)
            mapping[path] = image_id
            index += 1
    with open(dest / "tags.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return mapping


def snapshot(folder) -> dict:
    """Every entry under `folder` with its size and modification time: what must not change."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*")}
