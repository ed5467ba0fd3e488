"""ScribbleSup XML -> scribble PNGs: scribble_annotation/pascal_2012/<id>.xml to pascal_2012_scribble/<id>.png.

L-mode PNG: 0 background, 1..K classes, 255 unlabelled; polylines 3 px wide (the usual conversion of the
release; wsss.datasets.voc.load_scribble_xml rasterises). PNGs already there are used as they are. The list
`scribble` (ImageSets/Segmentation/scribble.txt) names every image with scribbles."""

from PIL import Image
from tqdm import tqdm

from wsss.datasets import voc
from wsss.datasets.convert import write_list
from wsss.errors import DataError
from wsss.io import save_png
from wsss.params import Param, resolve

PARAMS = {"class_names": voc.CLASS_NAMES, "width": Param(int, 3, "polyline width in pixels (released: 3)")}


def run(params: dict, *, root, out):
    """Writes a PNG for every XML under `root` that has none, then the list `out` of every id with a PNG."""
    params = resolve(params, PARAMS, "scribble_pngs")
    xml_dir = voc.path(root, "scribble_xml", "x").parent
    xmls = sorted(xml_dir.glob("*.xml"))
    if not xmls:
        raise DataError(f"{xml_dir}: no ScribbleSup XML files")
    for xml in tqdm(xmls, desc="scribble_pngs"):
        png = voc.path(root, "scribble", xml.stem)
        if png.is_file():
            continue
        with Image.open(voc.path(root, "image", xml.stem)) as image:  # header only: the size
            shape = (image.height, image.width)
        save_png(png, voc.load_scribble_xml(xml, params["class_names"], shape, params["width"]))
    ids = sorted(p.stem for p in voc.path(root, "scribble", "x").parent.glob("*.png"))
    write_list(out, ids)
