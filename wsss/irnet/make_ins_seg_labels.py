"""The make_ins_seg_labels stage: instance pseudo-labels from CAMs, IRNet's displacement field and boundaries
(IRNet Sec. 5.1-5.2, appendix A.1; step/make_ins_seg_labels.py of the release).

Per image, at stride 4:
  1. refine the displacement field D iteratively (Eq. 10, `dp_iterations`: 300 as released, the default of
     find_centroids_with_refinement, called without it in step/make_ins_seg_labels.py; the paper says 100);
  2. centroid candidates where |D| < `centroid_thres` (2.5, Eq. 14, on IRNet's own D), one centroid per
     4-connected component; pixel x joins instance k if its refined centroid x + D_u(x) lies in component k
     (Eq. 15). As released, the pixels whose centroid lies in no component form one more group;
  3. instance-wise CAMs M_ck = M_c on instance k, 0 elsewhere (Eq. 11), random-walked within the boundaries
     (Eq. 12-13, as in make_sem_seg_labels), upsampled x4, divided by the global maximum;
  4. argmax against a constant background plane `bg_thres` (0.25): each (class, instance) channel's
     4-connected pieces are the detections, scored by the maximum propagated score inside (Sec. 6.2);
     pieces under 1 % of the image area keep score 0, as released.

IRNet sees the image rescaled by `input_scale`, as in make_sem_seg_labels.

params (paper / demo): device, split, input_scale (1 / 2), dp_iterations (300 released), centroid_thres (2.5),
beta (10), steps (256), radius (5), bg_thres (0.25).

Output `<out>/<id>.npz` (read it with `load_instances`):
  instance_map uint16 [H, W]: 0 = no instance, i = detection i - 1 (detections never overlap);
  classes int64 [n]: label-space class (1..K) of each detection;
  scores float32 [n]: confidence of each detection.
"""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wsss.datasets import voc
from wsss.io import atomic_path, save_npz
from wsss.irnet import make_sem_seg_labels
from wsss.irnet import net as irn_net
from wsss.irnet.make_sem_seg_labels import irn_inputs
from wsss.params import Param, resolve

PARAMS = {
    **make_sem_seg_labels.WALK,
    "centroid_thres": Param(float, 2.5, "Sec. 5.1: |D| below this is a centroid candidate"),
    "dp_iterations": Param(int, 300, "Eq. 10: displacement refinement iterations (released 300; paper 100)"),
}


MIN_FRAGMENT = 0.01  # released max_fragment_size: pieces under 1 % of the image get score 0


def run(params: dict, *, root, cams, irn_model, out):
    """Writes one instance label file per image of `split`."""
    params = resolve(params, PARAMS, "make_ins_seg_labels")
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for x in irn_inputs(params, root, cams, irn_model, desc="make_ins_seg_labels"):
            instances = instance_map(x.displacement, params["dp_iterations"], params["centroid_thres"])
            # Eq. 11: channel c * n + k is class c on instance k
            instance_cams = (x.cam[:, None] * instances[None]).flatten(0, 1)
            scores = irn_net.propagate(instance_cams, x.boundary, x.input_size, x.image_size, params["beta"],
                                   params["steps"], params["radius"])
            found = detections(scores, np.repeat(x.keys, len(instances)), params["bg_thres"])
            save_npz(tmp / f"{x.image_id}.npz", **found)


def refine_centroids(disp: torch.Tensor, iterations: int) -> torch.Tensor:
    """Eq. 10: each pixel's centroid estimate x + D_u(x) [2, h, w] (y, x), moved `iterations` times by the
    displacement at its current position (sampled bilinearly, as released), kept inside the map."""
    h, w = disp.shape[1:]
    ys, xs = torch.meshgrid(torch.arange(h, device=disp.device, dtype=disp.dtype),
                            torch.arange(w, device=disp.device, dtype=disp.dtype), indexing="ij")
    centroid = torch.stack([ys, xs])
    limit = torch.tensor([h - 1, w - 1], device=disp.device, dtype=disp.dtype).view(2, 1, 1)
    to_grid = 2 / limit.clamp_min(1)  # pixel (y, x) -> grid_sample's [-1, 1] (align_corners: pixel centres)
    for _ in range(iterations):
        grid = (centroid * to_grid - 1).flip(0).permute(1, 2, 0)[None]  # [1, h, w, (x, y)]
        step = F.grid_sample(disp[None], grid, mode="bilinear", align_corners=True)[0]
        centroid = torch.clamp(centroid + step, torch.zeros_like(limit), limit)
    return centroid


def instance_map(disp: torch.Tensor, iterations: int, centroid_thres: float) -> torch.Tensor:
    """Class-agnostic instance masks [n, h, w] (float 0/1, one per group of pixels sharing a centroid
    component, in component order) from a displacement field [2, h, w] (Sec. 5.1, Eq. 14-15)."""
    candidates = connected_components(disp.norm(dim=0) < centroid_thres)  # Eq. 14
    centroid = refine_centroids(disp, iterations).round().long()
    group = candidates[centroid[0], centroid[1]]  # Eq. 15 (0: the centroid is in no component)
    ids, index = torch.unique(group, return_inverse=True)
    return F.one_hot(index, len(ids)).permute(2, 0, 1).to(disp.dtype)


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """4-connected components of a bool map [h, w]: int64 labels, 0 off the mask, 1..n numbered in raster
    order of each component's first pixel (as skimage.measure.label). Min-label propagation with pointer
    jumping: tensor operations only, so it runs where the mask lives."""
    h, w = mask.shape
    off = h * w  # larger than every pixel index
    flat_index = torch.arange(h * w, device=mask.device).view(h, w)
    label = torch.where(mask, flat_index, off)
    while True:
        smallest = label.clone()
        smallest[1:] = torch.minimum(smallest[1:], label[:-1])
        smallest[:-1] = torch.minimum(smallest[:-1], label[1:])
        smallest[:, 1:] = torch.minimum(smallest[:, 1:], label[:, :-1])
        smallest[:, :-1] = torch.minimum(smallest[:, :-1], label[:, 1:])
        smallest = torch.where(mask, smallest, off)
        # a label is a pixel of the same component: jump to that pixel's label
        jumped = torch.where(mask, smallest.view(-1)[smallest.clamp(max=off - 1)], off)
        if torch.equal(jumped, label):
            break
        label = jumped
    _, numbered = torch.unique(label, return_inverse=True)  # sorted: the roots in raster order, `off` last
    return torch.where(mask, numbered + 1, 0)


def detections(scores: torch.Tensor, classes: np.ndarray, bg_thres: float) -> dict[str, np.ndarray]:
    """Instance labels from propagated scores [C, H, W] of (class, instance) channels with their classes [C]:
    {"instance_map", "classes", "scores"} as in the module docstring."""
    winner = torch.cat([torch.full_like(scores[:1], bg_thres), scores]).argmax(0) - 1  # -1: background
    min_size = MIN_FRAGMENT * winner.numel()
    instance = torch.zeros_like(winner)
    found_classes, found_scores = [], []
    for channel in torch.unique(winner[winner >= 0]).tolist():
        pieces = connected_components(winner == channel)
        for piece in range(1, int(pieces.max()) + 1):
            inside = pieces == piece
            found_classes.append(int(classes[channel]))
            found_scores.append(float(scores[channel][inside].max()) if inside.sum() >= min_size else 0.0)
            instance[inside] = len(found_classes)
    return {"instance_map": instance.cpu().numpy().astype(np.uint16),
            "classes": np.asarray(found_classes, np.int64), "scores": np.asarray(found_scores, np.float32)}


def load_instances(file) -> dict[str, np.ndarray]:
    """{"masks": bool [n, H, W], "classes": int64 [n], "scores": float32 [n]} of a make_ins_seg_labels file."""
    file = Path(file)
    if not file.is_file():
        raise voc.DataError(f"{file}: instance label file not found")
    with np.load(file) as f:
        instance, classes, scores = f["instance_map"], f["classes"], f["scores"]
    if not len(classes) == len(scores) or instance.max(initial=0) > len(classes):
        raise voc.DataError(f"{file}: {len(classes)} classes, {len(scores)} scores and instance ids up to "
                             f"{instance.max(initial=0)} do not agree")
    masks = instance[None] == np.arange(1, len(classes) + 1, dtype=instance.dtype)[:, None, None]
    return {"masks": masks, "classes": classes, "scores": scores}
