"""The cam_to_ir_label stage: inter-pixel relation labels from CAMs (IRNet Sec. 4.2, Fig. 3).

Output: `<out>/<id>.png`, a palette PNG (VOC colour map) of the image's size: 0 confident background,
c = 1..K confident class c, 255 unsure (no relation is mined from it). Per image:
  1. foreground: argmax over a constant `conf_fg_thres` (0.30) background plane and the high-res CAMs,
     refined by dense CRF on the full-resolution image;
  2. background: the same with a `conf_bg_thres` (0.05) plane, so background must beat even a weak CAM;
  3. label = the CRF(0.30) class where it is an object; background only where CRF(0.05) also says
     background; 255 elsewhere (as released: step/cam_to_ir_label.py).
The CRF (pydensecrf, as released): unary from the hard labels with probability `crf_gt_prob`, a Gaussian
kernel (sxy `crf_gauss_sxy`, compat `crf_gauss_compat`), a bilateral kernel (sxy `crf_bi_sxy`, srgb
`crf_bi_srgb`, compat `crf_bi_compat`), `crf_iterations` mean-field steps. CPU work: a process pool.

params (paper / demo): split, conf_fg_thres (0.30 / 0.6), conf_bg_thres (0.05 / 0.15), crf_gt_prob (0.7),
crf_gauss_sxy (3), crf_gauss_compat (3), crf_bi_sxy (50), crf_bi_srgb (5), crf_bi_compat (10),
crf_iterations (10), shard, num_workers (processes; 0 = in this process; default the job's threads).
The demo's CAMs are calibrated higher than IRNet's VOC CAMs (best eval_cam threshold 0.45 against VOC's 0.15), hence its higher thresholds.
"""
import contextlib
import multiprocessing
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wsss import runtime
from wsss.cam import calibration, make_cam
from wsss.crf import dense_crf, label_probs
from wsss.datasets import voc
from wsss.io import atomic_path, save_png
from wsss.params import Param, resolve
from wsss.shards import SHARD, select

PARAMS = {
    "split": voc.SPLIT,
    "shard": SHARD,
    "conf_fg_thres": Param((float, str), 0.30, "Sec. 4.2: background plane of the confident foreground (auto: "
                           "from the CAMs' Otsu threshold t, t + 0.2 (1 - t); wsss.cam.calibration)"),
    "conf_bg_thres": Param((float, str), 0.05, "Sec. 4.2: background plane of the confident background (auto: t / 3)"),
    "crf_gt_prob": Param(float, 0.7, "probability of the hard label in the CRF unary"),
    "crf_gauss_sxy": Param(float, 3, "Gaussian kernel: spatial deviation (px)"),
    "crf_gauss_compat": Param(float, 3, "Gaussian kernel: Potts weight"),
    "crf_bi_sxy": Param(float, 50, "bilateral kernel: spatial deviation (px)"),
    "crf_bi_srgb": Param(float, 5, "bilateral kernel: colour deviation"),
    "crf_bi_compat": Param(float, 10, "bilateral kernel: Potts weight"),
    "crf_iterations": Param(int, 10, "mean-field iterations"),
    "num_workers": Param(int, None, "CRF processes (0: in this process; null: the job's threads)"),
}


def run(params: dict, *, root, cams, out):
    """Writes one IR label PNG per image of `split` from its CAM file in `cams`."""
    params = resolve(params, PARAMS, "cam_to_ir_label")
    params = calibration.fill_auto(params, cams, voc.read_ids(root, params["split"]))  # every shard: the whole split
    ids = select(voc.read_ids(root, params["split"]), params["shard"])
    work = partial(_label_one, root=root, cams=Path(cams), params=params)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        workers = runtime.threads() if params["num_workers"] is None else params["num_workers"]
        with _imap(workers if workers > 1 else 0) as imap:
            for image_id, label in tqdm(imap(work, ids), total=len(ids), desc="cam_to_ir_label"):
                save_png(tmp / f"{image_id}.png", label, voc.voc_palette())


@contextlib.contextmanager
def _imap(num_workers: int):
    """An ordered, lazy map over a pool of `num_workers` spawned processes (no forked torch threads), or in
    this process for 0."""
    if num_workers == 0:
        yield map
        return
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
        yield partial(pool.imap, chunksize=8)


def _label_one(image_id, *, root, cams, params):
    image = voc.load_image(voc.path(root, "image", image_id))
    cam = make_cam.load(cams / f"{image_id}.npz", image.shape[:2])
    return image_id, ir_label(image, cam["keys"], cam["high_res"], params)


def ir_label(image: np.ndarray, keys: np.ndarray, high_res: np.ndarray, params: dict) -> np.ndarray:
    """uint8 [H, W] IR label (0 background, keys' classes, 255 unsure) of one image."""
    classes = np.concatenate([[0], keys]).astype(np.uint8)
    fg = classes[confident_crf(image, high_res, params["conf_fg_thres"], params)]
    bg = classes[confident_crf(image, high_res, params["conf_bg_thres"], params)]
    label = np.where(fg == 0, voc.IGNORE, fg).astype(np.uint8)
    label[(fg == 0) & (bg == 0)] = 0
    return label


def confident_crf(image: np.ndarray, cams: np.ndarray, threshold: float, params: dict) -> np.ndarray:
    """Index map (0 = the constant `threshold` plane, i = cams[i-1]) of the argmax, refined by dense CRF with
    the hard labels as unary (IRNet misc/imutils.crf_inference_label)."""
    hard = np.argmax(np.concatenate([np.full((1, *cams.shape[1:]), threshold, cams.dtype), cams]), 0)
    probs = label_probs(hard, len(cams) + 1, params["crf_gt_prob"])
    q = dense_crf(image, probs,
                  n_iters=params["crf_iterations"], gauss_sxy=params["crf_gauss_sxy"],
                  gauss_compat=params["crf_gauss_compat"], bilateral_sxy=params["crf_bi_sxy"],
                  bilateral_srgb=params["crf_bi_srgb"], bilateral_compat=params["crf_bi_compat"])
    return q.argmax(0)
