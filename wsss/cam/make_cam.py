"""Stage make_cam: multi-scale CAMs of every image of a split (IRNet Sec. 3; released step/make_cam.py).

Per image, the CAM network runs on the image rescaled by each of `scales` (IRNet: 1.0, 0.5, 1.5, 2.0) and
on its mirror; for the image's tagged classes the CAMs (Eq. 1, ReLU'd) of all runs are bilinearly resized
and summed, at two resolutions, then each class channel is divided by its own maximum (+1e-5, as released).

Output folder `out` (written atomically), one `<id>.npz` per image:
  keys      int64 [k]               the image's classes in label space (1..K), ascending
  cam       float32 [k, ceil(H/4), ceil(W/4)]   stride-4 CAMs (IRNet's `cam`, read by IRN training)
  high_res  float32 [k, H, W]       full-resolution CAMs: each run is upsampled to the image size rounded
                                    up to the network's output stride, then cropped, as released
params: device, class_names, tags_from, split, scales, shard (`i-of-n`: every n-th image, wsss/shards.py)."""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from wsss.cam import net as cam_net
from wsss.datasets import voc
from wsss.datasets.voc import image_tags, load_image, path, read_ids
from wsss.errors import DataError
from wsss.io import atomic_path, save_npz
from wsss.params import Param, resolve
from wsss.runtime import DEVICE, device
from wsss.shards import SHARD, select
from wsss.transforms import INFERENCE_SCALES, fuse_flips, multiscale_inputs

PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "tags_from": voc.TAGS_FROM,
    "split": voc.SPLIT,
    "device": DEVICE,
    "scales": Param(list, list(INFERENCE_SCALES), "image scales of the multi-scale inference (IRNet make_cam.py)"),
    "shard": SHARD,
}


CAM_STRIDE = 4  # the `cam` array's stride (IRNet's IRN works at 1/4 resolution)
EPS = 1e-5  # keeps an all-zero channel at zero instead of NaN


def run(params: dict, *, root, model, out):
    """Writes `<out>/<id>.npz` for every image of `split`, from the CAM network saved at `model`."""
    params = resolve(params, PARAMS, "make_cam")
    dev = device(params["device"])
    net = cam_net.load(model, dev).to(memory_format=torch.channels_last)  # faster convolutions (train_cam.py)
    ids = select(read_ids(root, params["split"]), params["shard"])
    tags = image_tags(root, ids, params["class_names"], params["tags_from"])
    scales = params["scales"]
    with atomic_path(out) as tmp, torch.no_grad():
        tmp.mkdir()
        for image_id, tag in zip(tqdm(ids, desc="make_cam"), tags):
            keys = np.flatnonzero(tag) + 1
            strided, high_res = image_cams(net, load_image(path(root, "image", image_id)), keys, scales)
            save_npz(tmp / f"{image_id}.npz", keys=keys.astype(np.int64), cam=strided, high_res=high_res)


def image_cams(net: cam_net.CAMNet, image: np.ndarray, keys: np.ndarray, scales=INFERENCE_SCALES):
    """(stride-4 CAMs [k, ceil(H/4), ceil(W/4)], full-resolution CAMs [k, H, W]) of the classes `keys`
    (label space), each channel max-normalised; float32 numpy."""
    h, w = image.shape[:2]
    stride = net.backbone.output_stride
    strided_size = (-(-h // CAM_STRIDE), -(-w // CAM_STRIDE))
    up_size = (-(-h // stride) * stride, -(-w // stride) * stride)
    dev = net.classifier.weight.device
    channels = torch.as_tensor(keys - 1, device=dev)
    strided, high_res = 0, 0
    for batch in multiscale_inputs(image, scales):
        batch = batch.to(dev, memory_format=torch.channels_last)
        maps = fuse_flips(net.cam(batch))[channels][None]  # [1, k, h_s, w_s]
        strided = strided + F.interpolate(maps, strided_size, mode="bilinear", align_corners=False)[0]
        high_res = high_res + F.interpolate(maps, up_size, mode="bilinear", align_corners=False)[0, :, :h, :w]
    return _max_normalise(strided), _max_normalise(high_res)


def _max_normalise(maps: torch.Tensor) -> np.ndarray:
    return (maps / (maps.amax((1, 2), keepdim=True) + EPS)).float().cpu().numpy()


def load(file, shape=None) -> dict[str, np.ndarray]:
    """A make_cam file as dict(keys, cam, high_res), checked: raises DataError naming the file if it is
    missing, lacks a key, or its arrays disagree with each other or with the image `shape` (H, W)."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: CAM file not found (run make_cam for this split)")
    with np.load(file) as f:
        missing = {"keys", "cam", "high_res"} - set(f.files)
        if missing:
            raise DataError(f"{file}: not a make_cam file (missing {sorted(missing)})")
        arrays = {k: f[k] for k in ("keys", "cam", "high_res")}
    k = len(arrays["keys"])
    h, w = arrays["high_res"].shape[1:] if shape is None else shape
    expected = {"cam": (k, -(-h // CAM_STRIDE), -(-w // CAM_STRIDE)), "high_res": (k, h, w)}
    for name, shape_ in expected.items():
        if arrays[name].shape != shape_:
            raise DataError(f"{file}: {name} has shape {arrays[name].shape}, expected {shape_}")
    return arrays
