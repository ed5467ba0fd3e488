"""Stage cdsp_pseudo_labels: CDSP's pseudo-labels from thresholded CAMs (Sec. "Pseudo-label Generation", Eq. 4-6).

Per image, the full-resolution CAMs (make_cam; each channel max-normalised) of the classes drawn in its
scribbles (Eq. 4: the multi-class label k comes from the scribbles; `scribbles`: a derived set of Fig. 7, by
default the root's) are thresholded into binary masks and merged into one label map as SEAM / AFA do: a
background plane at `threshold` is stacked under the class CAMs and the argmax wins (a pixel where no CAM reaches
the threshold is background; where several do, the strongest class). A class drawn in the scribbles but without a
CAM in the make_cam file (its tags came from elsewhere) cannot be labelled; an image whose object strokes were all
dropped is all background. The CAM network itself is the one trained on the run's image tags (`dataset.tags_from`;
CDSP: scribbles), for every scribble set. Output: `<out>/<id>.png`, VOC palette PNG, 0 background, 1..K. The
paper does not give the threshold (its pseudo-labels were downloads).
"""
import numpy as np
from tqdm import tqdm

from wsss.cam import calibration, make_cam
from wsss.datasets import voc
from wsss.io import atomic_path, save_png
from wsss.params import Param, resolve

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "split": voc.SPLIT,
    "threshold": Param((float, str), help="background score: a pixel is a class where that class's CAM exceeds it "
                                          "(auto: the CAMs' Otsu threshold, wsss.cam.calibration)"),
}


def run(params: dict, *, root, cams, out, scribbles=None):
    """Writes `<out>/<id>.png` for every image of `split` from the make_cam files `<cams>/<id>.npz` and the
    classes of the scribbles `<scribbles>/<id>.png` (default: the root's)."""
    params = resolve(params, PARAMS, "cdsp_pseudo_labels")
    ids = voc.read_ids(root, params["split"])
    params = calibration.fill_auto(params, cams, ids)
    files = voc.scribble_files(root, ids, scribbles)
    palette = voc.voc_palette()
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for image_id, file in zip(tqdm(ids, desc="cdsp_pseudo_labels"), files):
            arrays = make_cam.load(f"{cams}/{image_id}.npz")
            drawn = np.isin(arrays["keys"], voc.load_scribble(file, len(params["class_names"])))
            save_png(tmp / f"{image_id}.png",
                     cam_label(arrays["high_res"][drawn], arrays["keys"][drawn], params["threshold"]), palette)


def cam_label(cams: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 [H, W] label map: argmax over [threshold, cams...] mapped to (0, keys...)."""
    scores = np.concatenate([np.full((1, *cams.shape[1:]), threshold, cams.dtype), cams])
    labels = np.concatenate([[0], keys]).astype(np.uint8)
    return labels[scores.argmax(0)]
