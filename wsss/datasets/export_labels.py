"""Stage export_labels: a method's pseudo-labels of your own images, in your folder's tree and as COCO JSON.

For a folder data set (rule folder_dataset): the label map `<labels>/<id>.png` of every image of `split` becomes
`<out>/<its path without extension>.png` (VOC palette PNG, 0 background, 1..K the classes, 255 none), the tree
of dataset.images; `coco` gets the same labels as a COCO instances-style JSON (pycocotools RLE): an image entry
per image (file_name: its path), a category per class (id = its label index), an annotation per class present
in an image (the class's pixels, iscrowd 0), for tools that read COCO."""
import json
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from wsss.datasets import voc
from wsss.datasets.folder_dataset import id_map
from wsss.io import atomic_path, save_png
from wsss.params import resolve

PARAMS = {"class_names": voc.CLASS_NAMES, "split": voc.SPLIT}


def run(params: dict, *, root, labels, out, coco):
    """Writes the folder `out` and the JSON file `coco` from the label folder `labels`."""
    from pycocotools import mask as rle

    params = resolve(params, PARAMS, "export_labels")
    names, paths = params["class_names"], id_map(root)
    ids = voc.read_ids(root, params["split"])
    files = voc.label_files(labels, ids, "label PNG")
    palette = voc.voc_palette()
    images, annotations = [], []
    with atomic_path(out) as tmp:
        for number, (image_id, file) in enumerate(tqdm(list(zip(ids, files)), desc="export_labels"), 1):
            path = paths[image_id]
            label = voc.load_mask(file, len(names))
            save_png(Path(tmp) / PurePosixPath(path).with_suffix(".png"), label, palette)
            images.append(dict(id=number, file_name=path, height=label.shape[0], width=label.shape[1],
                               wsss_id=image_id))
            for c in np.unique(label):
                if 0 < c < len(names):
                    region = rle.encode(np.asfortranarray(label == c, dtype=np.uint8))
                    annotations.append(dict(id=len(annotations) + 1, image_id=number, category_id=int(c),
                                            segmentation=dict(size=region["size"], counts=region["counts"].decode()),
                                            area=int(rle.area(region)), bbox=rle.toBbox(region).tolist(), iscrowd=0))
    document = dict(info=dict(description="wsss pseudo-labels", labels=str(labels)), images=images,
                    categories=[dict(id=c, name=name) for c, name in enumerate(names) if c > 0], annotations=annotations)
    with atomic_path(coco) as tmp:
        Path(tmp).write_text(json.dumps(document))
