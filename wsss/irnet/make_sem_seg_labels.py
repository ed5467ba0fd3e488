"""The make_sem_seg_labels stage: semantic pseudo-labels by random walk over IRNet's boundaries (IRNet Sec. 5,
Eq. 12-13; the "reduced version" of Sec. 6.2 without instance-wise CAMs).

Per image: the boundary map from IRNet (image and mirror averaged, each zero-padded to IRNet's training crop
as released); the stride-4 CAMs of the present classes
random-walked within it (radius `radius` 5, `beta` 10, `steps` t = 256), upsampled x4 to the image and
divided by their global maximum; a constant background plane `bg_thres` (0.25); argmax.
IRNet sees the image rescaled by `input_scale` (paper: 1; with 2 the small demo images get a stride-4 grid
twice as fine, and the CAMs are resampled onto it; train_irn must use the same value).
Output: `<out>/<id>.png`, a palette PNG (VOC colour map) of the image's size: 0 background, 1..K classes.

params (paper / demo): device, split, input_scale (1 / 2), beta (10), steps (256), radius (5), bg_thres (0.25);
boundaries (learned; none and ground_truth are diagnostics, docs/diagnosis.md).
"""
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from wsss import runtime
from wsss.cam import calibration, make_cam
from wsss.datasets import voc
from wsss.io import atomic_path, save_png
from wsss.irnet import net as irn_net
from wsss.irnet.boundaries import gt_boundary_grid
from wsss.params import Param, resolve
from wsss.runtime import DEVICE
from wsss.shards import SHARD, select
from wsss.transforms import normalize, rescale, to_tensor

# The inputs and the random walk (Eq. 12-13), shared with make_ins_seg_labels.
WALK = {
    "split": voc.SPLIT,
    "shard": SHARD,
    "device": DEVICE,
    "radius": Param(int, 5, "Eq. 12: random-walk radius at stride 4"),
    "beta": Param(float, 10, "Eq. 12: affinity exponent"),
    "steps": Param(int, 256, "Eq. 13: walk steps t"),
    "bg_thres": Param(float, 0.25, "Sec. 5: background plane"),
    "input_scale": Param(float, 1.0, "IRNet sees the image rescaled by this (train_irn's value)"),
}
# Diagnostics (issue 13; docs/diagnosis.md): the walk without boundaries (pure diffusion) or within the
# ground-truth class boundaries (reads the masks: an upper bound, never a pseudo-label for training).
PARAMS = {
    **WALK,
    "boundaries": Param(str, "learned", "the walk's boundary map: learned | none | ground_truth"),
    "background": Param(str, "plane", "plane: constant bg_thres after the walk (paper) | walked: (1 - max CAM)^"
                        "bg_power walked with the classes, no threshold (docs/diagnosis.md)"),
    "bg_power": Param((float, str), "auto", "walked background's exponent, or auto: from the CAMs' Otsu threshold"),
}


def run(params: dict, *, root, cams, irn_model, out):
    """Writes one semantic label PNG per image of `split`."""
    params = resolve(params, PARAMS, "make_sem_seg_labels")
    power = _background_power(params, root, cams)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for x in irn_inputs(params, root, cams, irn_model, desc="make_sem_seg_labels"):
            boundary = walk_boundary(x, params["boundaries"], root)
            walk = partial(irn_net.propagate, boundary=boundary, input_size=x.input_size, image_size=x.image_size,
                           beta=params["beta"], steps=params["steps"], radius=params["radius"])
            label = (semantic_label(walk(x.cam), x.keys, params["bg_thres"]) if power is None
                     else walked_background_label(walk, x.cam, x.keys, power))
            save_png(tmp / f"{x.image_id}.png", label, voc.voc_palette())


def walked_background_label(walk, cam: torch.Tensor, keys: np.ndarray, power: float) -> np.ndarray:
    """uint8 [H, W] labels when the background walks with the classes: `walk` ([C, h, w] -> [C, H, W]) of
    [(1 - max CAM)^power, cam], argmax (no threshold). The paper's constant plane cannot stop CAM spilled
    onto the background from flooding the whole background region; a walked background meets it there."""
    background = (1 - cam.max(0, keepdim=True).values).clamp_min(0) ** power
    index = walk(torch.cat([background, cam])).argmax(0).cpu().numpy()
    return np.concatenate([[0], keys]).astype(np.uint8)[index]


def _background_power(params, root, cams):
    """None for the paper's plane; the walked background's exponent, from all the split's CAMs for auto."""
    if params["background"] == "plane":
        return None
    if params["background"] != "walked":
        raise ValueError(f"make_sem_seg_labels: background must be plane or walked, got {params['background']!r}")
    if params["bg_power"] != "auto":
        return float(params["bg_power"])
    threshold = calibration.otsu_threshold(cams, voc.read_ids(root, params["split"]))
    print(f"CAM Otsu threshold {threshold:.3f} -> background power {calibration.background_power(threshold):.2f}")
    return calibration.background_power(threshold)


def walk_boundary(x: "IRNInputs", source: str, root) -> torch.Tensor:
    """The boundary map [h, w] the walk uses: IRNet's, none (zeros) or the ground truth's on IRNet's grid."""
    if source == "learned":
        return x.boundary
    if source == "none":
        return torch.zeros_like(x.boundary)
    if source == "ground_truth":
        mask = voc.load_mask(voc.path(root, "mask", x.image_id), 256, x.image_size)
        return gt_boundary_grid(mask, x.input_size, x.boundary.shape).to(x.boundary.device)
    raise ValueError(f"make_sem_seg_labels: boundaries must be learned, none or ground_truth, got {source!r}")


class IRNInputs(NamedTuple):
    """One image's inputs to label synthesis; tensors on the inference device, at IRNet's stride-4 grid."""
    image_id: str
    image_size: tuple  # (H, W) of the image
    input_size: tuple  # (H, W) of what IRNet saw (the image rescaled by input_scale)
    keys: np.ndarray  # int64 [k] label-space classes of the CAMs
    cam: torch.Tensor  # [k, h, w] CAMs
    boundary: torch.Tensor  # [h, w] in [0, 1]
    displacement: torch.Tensor  # [2, h, w] (y, x) in grid cells


def irn_inputs(params: dict, root, cams, irn_model, desc: str):
    """IRNInputs of every image of the `split` and `shard` in params, from the IRNet saved at `irn_model`
    on params' device, with a progress bar: the loop both label stages share."""
    device = runtime.device(params["device"])
    model, crop = irn_net.load(irn_model, device)
    input_scale = params["input_scale"]
    ids = select(voc.read_ids(root, params["split"]), params["shard"])
    for image_id in tqdm(ids, desc=desc):
        image = voc.load_image(voc.path(root, "image", image_id))
        cam = make_cam.load(Path(cams) / f"{image_id}.npz", image.shape[:2])
        seen = image if input_scale == 1 else rescale(image, input_scale)[0]
        boundary, displacement = model.infer(to_tensor(normalize(seen)).to(device), pad_to=crop)
        stride4 = torch.from_numpy(cam["cam"]).to(device)
        if stride4.shape[1:] != boundary.shape:  # a rescaled input: CAMs onto IRNet's grid
            stride4 = F.interpolate(stride4[None], size=boundary.shape, mode="bilinear", align_corners=False)[0]
        yield IRNInputs(image_id, image.shape[:2], seen.shape[:2], cam["keys"], stride4, boundary, displacement)


def semantic_label(scores: torch.Tensor, keys: np.ndarray, bg_thres: float) -> np.ndarray:
    """uint8 [H, W]: argmax over a constant background plane `bg_thres` and the propagated scores [k, H, W],
    mapped to label space (0 background, keys[i] for score channel i)."""
    plane = torch.full_like(scores[:1], bg_thres)
    index = torch.cat([plane, scores]).argmax(0).cpu().numpy()
    return np.concatenate([[0], keys]).astype(np.uint8)[index]
