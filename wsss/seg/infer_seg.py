"""The infer_seg stage: label PNGs (`<out>/<id>.png`, VOC palette) from a trained segmentation network.

Per image: logits at every scale (or of the image warped to every side of `sizes`) and, with `flip`, of
the mirrored image, upsampled (bilinear) to the image size and summed; softmax; optionally the dense CRF
(wsss.crf with Koltun's defaults, as DSRG Sec. 4.1 / test-ms.py do); argmax. Released values: DSRG's
step-1 model (test-ms.py) warps the image to 241, 321 and 401 px squares (`sizes`); the retrained model
(test-ms-f.py) rescales by 0.75, 1, 1.25 (`scales`); neither flips (flip false; true is DeepLab's usual
test-time addition); crf true.
"""
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from wsss.crf import dense_crf
from wsss.datasets import voc
from wsss.io import atomic_path, save_png
from wsss.models import load_segmenter
from wsss.params import Param, resolve
from wsss.runtime import DEVICE, device
from wsss.shards import SHARD, select
from wsss.transforms import fuse_flips, multiscale_inputs

PARAMS = {
    "split": voc.SPLIT,
    "shard": SHARD,
    "device": DEVICE,
    "scales": Param(list, [0.75, 1.0, 1.25], "image scales of the multi-scale inference"),
    "sizes": Param(list, None, "warp the image to these square sides instead of `scales` (DSRG test-ms.py: "
                   "241, 321, 401); null: scales"),
    "flip": Param(bool, False, "add the mirrored image's prediction (DSRG's test scripts: no)"),
    "crf": Param(bool, True, "dense-CRF post-processing"),
}


def run(params: dict, *, root, model, out):
    """Writes the network's prediction for every image of `split`."""
    params = resolve(params, PARAMS, "infer_seg")
    dev = device(params["device"])
    net = load_segmenter(model, dev)
    palette = voc.voc_palette()
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for image_id in tqdm(select(voc.read_ids(root, params["split"]), params["shard"]),
                             desc="infer_seg"):
            image = voc.load_image(voc.path(root, "image", image_id))
            probs = predict(net, image, params["scales"], params["flip"], dev, params["sizes"])
            if params["crf"]:
                probs = dense_crf(image, probs)
            save_png(tmp / f"{image_id}.png", probs.argmax(0).astype(np.uint8), palette)


@torch.no_grad()
def predict(net, image: np.ndarray, scales, flip: bool, dev, sizes=None) -> np.ndarray:
    """float32 [C, H, W] class probabilities of uint8 HxWx3 `image`, fused over scales (or warped `sizes`)
    and flips."""
    size = image.shape[:2]
    total = 0
    for batch in multiscale_inputs(image, scales, flip, sizes):
        logits = F.interpolate(net(batch.to(dev)), size, mode="bilinear", align_corners=False)
        total = total + fuse_flips(logits)
    return F.softmax(total, 0).cpu().numpy()
