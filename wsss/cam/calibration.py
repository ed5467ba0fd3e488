"""The CAMs' own threshold, without masks: where the CAMs of a split separate into object and background.

Every CAM is divided by its own maximum (make_cam), so where "object" ends depends on how the network
spreads its evidence: IRNet's VOC CAMs are best cut at 0.15, the shapes demo's at 0.45, photographs at
0.40 (eval_cam's sweep, which needs masks). `otsu_threshold` estimates that cut from the CAMs alone: Otsu's
threshold of the pooled per-pixel maximum over the present classes' CAMs (high_res) of a split's images.
On the photo and shapes sets it lands within 0.03-0.08 of the sweep's best (docs/diagnosis.md).
"""
from pathlib import Path

import numpy as np
from skimage.filters import threshold_otsu

from wsss.cam import make_cam

SUBSAMPLE = 7  # every 7th pixel of each image: the histogram is the same, the memory 7x smaller


def otsu_threshold(cams, ids) -> float:
    """Otsu threshold of max-over-classes CAM values of the images `ids` (files `<cams>/<id>.npz`)."""
    values = [make_cam.load(Path(cams) / f"{i}.npz")["high_res"].max(0).ravel()[::SUBSAMPLE] for i in ids]
    return float(threshold_otsu(np.concatenate(values)))


def background_power(threshold: float) -> float:
    """The exponent g with (1 - t)^g = t: a background score (1 - max CAM)^g beats the CAMs exactly where
    they are below t (g = 1 for t = 0.5, about 11.7 for VOC's 0.15, 2.1 for 0.38)."""
    t = min(max(threshold, 1e-3), 1 - 1e-3)
    return float(np.log(t) / np.log(1 - t))


# Thresholds a stage may take as "auto": derived from the Otsu threshold t. The paper's confident planes
# sit around IRNet's VOC cut (t = 0.15: 0.30 above, 0.05 below); the demo's tuned ones around its 0.45
# (0.6, 0.15). t + 0.2 (1 - t) and t / 3 give 0.32 / 0.05 and 0.56 / 0.15 for those two cuts.
AUTO = {
    "conf_fg_thres": lambda t: t + 0.2 * (1 - t),  # cam_to_ir_label: confident foreground plane
    "conf_bg_thres": lambda t: t / 3,  # cam_to_ir_label: confident background plane
    "bg_cam": lambda t: t / 3,  # dsrg_seeds: background cue where every CAM is below this
    "threshold": lambda t: t,  # cdsp_pseudo_labels: the CAMs' own cut
}


def fill_auto(params: dict, cams, ids) -> dict:
    """`params` with every AUTO name whose value is "auto" replaced by its value derived from the Otsu
    threshold of the CAMs of `ids` (computed once, only when needed; printed to the log)."""
    wanted = [name for name in AUTO if params.get(name) == "auto"]
    if not wanted:
        return params
    t = otsu_threshold(cams, ids)
    derived = {name: float(AUTO[name](t)) for name in wanted}
    print(f"CAM Otsu threshold {t:.3f}: " + ", ".join(f"{k} = {v:.3f}" for k, v in derived.items()))
    return {**params, **derived}
