"""Stage cdsp_distance_maps: CDSP's distance maps (Eq. 14, 16) of every training image as uint8 grey PNGs, the
form the authors' scripts store and their training reads (/255).

`<out_scribble>/<id>.png`: `wsss.cdsp.distance.scribble_map(scribble, lambda_s)` (255 on a foreground scribble,
falling with the distance); `<out_pseudo>/<id>.png`: `pseudo_map(pseudo-label, lambda_c)` (0 on the
pseudo-label's foreground boundary, rising with the distance). Paper values (DeepLab-v2 ablation, and the
release's samples): lambda_s 1, lambda_c 6; the DeepLab-v3+ result quotes e^2 / e^7 (lambda 2 / 7).
The scribbles come from `<scribbles>/<id>.png` (default: the root's pascal_2012_scribble), so the shrunk and
dropped scribble sets (cdsp_scribbles) get their own maps.
"""

from tqdm import tqdm

from wsss.cdsp.distance import pseudo_map, scribble_map
from wsss.datasets import voc
from wsss.io import atomic_path, save_png
from wsss.params import Param, resolve

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "split": voc.SPLIT,
    "lambda_s": Param(float, 1.0, "scribble map coefficient: distances scale by sqrt(e^lambda_s) (Eq. 16)"),
    "lambda_c": Param(float, 6.0, "pseudo-label boundary map coefficient: sqrt(e^lambda_c) (Eq. 14)"),
}


def run(params: dict, *, root, pseudo, out_scribble, out_pseudo, scribbles=None):
    """Writes both maps of every image of `split`; `pseudo`: folder of pseudo-label PNGs `<id>.png`."""
    params = resolve(params, PARAMS, "cdsp_distance_maps")
    n_classes = len(params["class_names"])
    ids = voc.read_ids(root, params["split"])
    scribble_files = voc.scribble_files(root, ids, scribbles)
    pseudo_files = voc.label_files(pseudo, ids, "pseudo-label")
    with atomic_path(out_scribble) as tmp_s, atomic_path(out_pseudo) as tmp_p:
        tmp_s.mkdir()
        tmp_p.mkdir()
        for image_id, s_file, p_file in zip(tqdm(ids, desc="cdsp_distance_maps"), scribble_files, pseudo_files):
            scribble = voc.load_scribble(s_file, n_classes)
            save_png(tmp_s / f"{image_id}.png", scribble_map(scribble, params["lambda_s"]))
            save_png(tmp_p / f"{image_id}.png", pseudo_map(voc.load_mask(p_file, n_classes, scribble.shape),
                                                           params["lambda_c"]))

