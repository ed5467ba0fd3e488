"""Shared steps of the converters that write a release (SBD, ScribbleSup, PASCAL-Context, COCO) into the
PASCAL VOC 2012 layout the stages read (wsss/datasets/voc.py LAYOUT)."""
from pathlib import Path

from wsss import io
from wsss.datasets import voc
from wsss.errors import DataError
from wsss.io import atomic_path


def read_list(file) -> list[str]:
    """Ids of a release's list file (first token of each non-blank line), checked as every id (voc.check_id)."""
    return voc.read_id_list(file, "list file")


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
    target = voc.path(root, "image", voc.check_id(image_id, root))
    if target.resolve() == source:
        return
    io.link(target, source)
