"""Shared steps of the converters that write a release (SBD, ScribbleSup, PASCAL-Context, COCO) into the
PASCAL VOC 2012 layout the stages read (wsss/datasets/voc.py LAYOUT)."""
import os
from pathlib import Path

from wsss.datasets import voc
from wsss.errors import DataError
from wsss.io import atomic_path


def read_list(file) -> list[str]:
    """Ids of a release's list file (first token of each non-blank line)."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: list file not found")
    return [line.split()[0] for line in file.read_text().splitlines() if line.strip()]


def write_list(file, ids) -> Path:
    """A split list (ImageSets/Segmentation/<split>.txt), written last by a converter: its presence means done."""
    if not ids:
        raise DataError(f"{file}: the conversion left no image for this list")
    with atomic_path(file) as tmp:
        tmp.write_text("".join(f"{i}\n" for i in ids))
    return Path(file)


def link_image(source, root, image_id: str):
    """JPEGImages/<id>.jpg under `root` as a symbolic link to the release's `source` (no copy)."""
    source = Path(source).resolve()
    if not source.is_file():
        raise DataError(f"{source}: image not found")
    target = voc.path(root, "image", image_id)
    if target.resolve() == source:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(source)
    os.replace(tmp, target)
