"""Stage validate_data: checks every split the run reads before anything trains on it.

For each split: its ids (read_ids: plain names, no repeats), every image readable, its class mask
(SegmentationClass, or SegmentationClassAug for train_aug) readable, of the image's size and holding only
class indices 0..K-1 or 255 - present for every image of a `scored` split (label and evaluation splits),
wherever it exists otherwise - and its image-level tags (`tags_from`, "auto" resolved per split) naming at
least one object class. Every problem is
listed in the log; the error names the first one's file. Writes a short report (images checked per split)
that the first training and evaluation rules depend on."""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from wsss.datasets import voc
from wsss.errors import DataError
from wsss.io import atomic_path
from wsss.params import Param, resolve
from wsss.runtime import threads

PARAMS = {
    "splits": Param(list, help="the splits the run reads (train, label and evaluation splits)"),
    "scored": Param(list, [], help="the splits scored against their masks (every image needs one)"),
    "class_names": voc.CLASS_NAMES,
    "tags_from": voc.TAGS_FROM,
}


def run(params: dict, *, root, out):
    """Checks `splits` of `root`; writes the report `out` only if all is well (DataError otherwise)."""
    params = resolve(params, PARAMS, "validate_data")
    problems, lines = [], []
    for split in dict.fromkeys(params["splits"]):  # a split listed twice (train = eval) is checked once
        try:
            ids = voc.read_ids(root, split)
        except DataError as e:
            problems.append(str(e))
            continue
        source = voc.tags_source(root, ids, params["tags_from"])
        scored = split in params["scored"]
        with ThreadPoolExecutor(threads()) as pool:  # decoding releases the GIL
            found = list(tqdm(pool.map(lambda i: check_image(root, i, params["class_names"], source, scored), ids),
                              total=len(ids), desc=f"validate {split}"))
        problems += [p for p in found if p]
        lines.append(f"{split}: {len(ids)} images, {sum(1 for p in found if p)} bad")
    if problems:
        for problem in problems:
            tqdm.write(problem)
        more = f" (and {len(problems) - 1} more problems, listed in the log)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)
    with atomic_path(out) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def check_image(root, image_id, names, tags_from: str, scored: bool) -> str | None:
    """The problem with one image and its annotations (a DataError's text), or None. The mask must exist
    when the image is `scored`; `tags_from` is masks, xml or scribbles."""
    try:
        image = voc.load_image(voc.path(root, "image", image_id))
        mask = voc.path(root, "mask", image_id)
        if scored or mask.is_file():
            voc.load_mask(mask, len(names), image.shape[:2])
        voc.tags_of(root, image_id, names, tags_from)
    except DataError as e:
        return str(e)
    return None
