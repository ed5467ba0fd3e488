"""ScribbleSup XML -> scribble PNGs: scribble_annotation/pascal_2012/<id>.xml to pascal_2012_scribble/<id>.png.

L-mode PNG: 0 background, 1..K classes, 255 unlabelled; polylines 3 px wide (the usual conversion of the
release; wsss.datasets.voc.load_scribble_xml rasterises). PNGs already there are used as they are. An XML
without any stroke gets no PNG (an all-unlabelled map would teach nothing), and the log names it. The list
`scribble` (ImageSets/Segmentation/scribble.txt) names every image with scribbles."""
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
    empty = []
    for xml in tqdm(xmls, desc="scribble_pngs"):
        png = voc.path(root, "scribble", voc.check_id(xml.stem, xml, "XML name"))
        if png.is_file():
            continue
        shape = voc.image_shape(voc.path(root, "image", xml.stem))
        scribbles = voc.load_scribble_xml(xml, params["class_names"], shape, params["width"])
        if (scribbles == voc.IGNORE).all():
            empty.append(xml)
            continue
        save_png(png, scribbles)
    if empty:
        tqdm.write(f"{len(empty)} XMLs without any scribble, not converted: {', '.join(map(str, empty[:5]))}")
    ids = sorted(p.stem for p in voc.path(root, "scribble", "x").parent.glob("*.png"))
    write_list(out, ids)
