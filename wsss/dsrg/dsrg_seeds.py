"""The dsrg_seeds stage: DSRG's seed cues (Sec. 3.1, 4.1) from the CAMs, made once and stored.

Output: `<out>/<id>.png` (VOC palette, image size): 0 background cue, c = 1..K cue of class c, 255 no cue.
- Foreground, per present class, from its full-resolution CAM (make_cam's `high_res`, max-normalised):
  fg_rule "top_fraction" (default): the top `fg_fraction` (0.2) of its pixels by CAM value (Sec. 4.1, "top
  20% of the largest value"; zero-valued pixels never count); "max_fraction": CAM >= fg_fraction x its
  maximum (the other reading of the same words). top_fraction is the default because the other reading
  labels most of a max-normalised CAM (every pixel above 0.2 of the peak), far more than the ~40 % of
  pixels the paper's cues label in total (Sec. 3.3, Fig. 4); the release ships cues, not this rule.
- Background: with `saliency_dir` (`<dir>/<id>.png`, grey, 0..255 read as [0, 1]), saliency < 0.06
  (`bg_saliency`, Sec. 4.1); without it, every present class's CAM < `bg_cam` (the CAMs' own background).
- Stacking into one map (Sec. 3.1): background first, foreground over it; a pixel in several classes' cues
  takes the class of the largest CAM.
"""
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wsss.cam import calibration, make_cam
from wsss.datasets import voc
from wsss.io import atomic_path, save_png
from wsss.params import Param, resolve

FG_RULES = ("top_fraction", "max_fraction")
PARAMS = {
    "split": voc.SPLIT,
    "fg_rule": Param(str, "top_fraction", "foreground cue rule: " + " | ".join(FG_RULES)),
    "fg_fraction": Param(float, 0.2, "Sec. 4.1: the top 20 %"),
    "bg_cam": Param((float, str), 0.05, "without saliency: background where every present CAM is below this "
                    "(auto: the CAMs' Otsu threshold / 3; wsss.cam.calibration)"),
    "bg_saliency": Param(float, 0.06, "Sec. 4.1: background where the saliency is below this"),
    "saliency_dir": Param(str, None, "folder of <id>.png saliency maps (0..255); null: CAM background"),
}


def run(params: dict, *, root, cams, out):
    """Writes the seed cues of every image of `split` from its CAM file in `cams`."""
    params = resolve(params, PARAMS, "dsrg_seeds")
    params = calibration.fill_auto(params, cams, voc.read_ids(root, params["split"]))
    if params["fg_rule"] not in FG_RULES:
        raise ValueError(f"fg_rule must be one of {FG_RULES}, got {params['fg_rule']!r}")
    saliency_dir = params["saliency_dir"]
    print(f"dsrg_seeds: background cues from saliency {saliency_dir} (< {params['bg_saliency']}), as the paper"
          if saliency_dir else f"dsrg_seeds: background cues from the CAMs (every CAM < {params['bg_cam']}): "
          "no saliency_dir; the paper uses DRFI saliency < 0.06", flush=True)
    palette = voc.voc_palette()
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for image_id in tqdm(voc.read_ids(root, params["split"]), desc="dsrg_seeds"):
            cam = make_cam.load(Path(cams) / f"{image_id}.npz")
            shape = cam["high_res"].shape[1:]
            background = (load_saliency(Path(saliency_dir) / f"{image_id}.png", shape) < params["bg_saliency"]
                          if saliency_dir else cam["high_res"].max(0) < params["bg_cam"])
            cues = seed_cues(cam["keys"], cam["high_res"], background, params["fg_rule"], params["fg_fraction"])
            save_png(tmp / f"{image_id}.png", cues, palette)


def seed_cues(keys: np.ndarray, cams: np.ndarray, background: np.ndarray, fg_rule: str,
              fg_fraction: float) -> np.ndarray:
    """uint8 [H, W] cue map from present classes `keys` [k], their CAMs [k, H, W] and a bool background
    cue [H, W]."""
    fg = foreground_cues(cams, fg_rule, fg_fraction)
    cues = np.full(background.shape, voc.IGNORE, np.uint8)
    cues[background] = 0
    strongest = np.where(fg, cams, -1).argmax(0)
    any_fg = fg.any(0)
    cues[any_fg] = np.asarray(keys, np.uint8)[strongest[any_fg]]
    return cues


def foreground_cues(cams: np.ndarray, fg_rule: str, fraction: float) -> np.ndarray:
    """bool [k, H, W]: each class's top `fraction` of pixels ("top_fraction"; ties at the cut all join) or
    its pixels at >= `fraction` of its maximum ("max_fraction"); never a zero-valued pixel."""
    flat = cams.reshape(len(cams), -1)
    if fg_rule == "top_fraction":
        n = flat.shape[1]
        k = max(1, int(round(fraction * n)))
        cut = np.partition(flat, n - k, axis=1)[:, n - k]
    else:
        cut = fraction * flat.max(1)
    return (cams >= cut[:, None, None]) & (cams > 0)


def load_saliency(file: Path, shape) -> np.ndarray:
    """float32 [H, W] in [0, 1] from a grey saliency PNG (value / 255)."""
    sal = np.asarray(voc.open_image(file, "saliency map").convert("L"), np.float32) / 255
    if sal.shape != tuple(shape):
        raise voc.DataError(f"{file}: saliency map is {sal.shape[0]}x{sal.shape[1]} but its image is "
                             f"{shape[0]}x{shape[1]}")
    return sal
