"""Stage train_cam: the multi-label classifier whose CAMs seed every later stage (IRNet Sec. 3, Eq. 1;
released step/train_cam.py).

Images of `split` with their image-level tags, augmented as IRNet does (random long side in
`resize_long`, flip, `crop` x `crop` random crop); multi-label soft-margin loss on the GAP logits; SGD whose
learning rate decays as lr * (1 - step / max_step) ** 0.9 (IRNet Sec. 6.1 "polynomial decay", PolyOptimizer),
the new classifier at 10x lr, in wsss.training's loop (DDP over the job's GPUs). No momentum: the released
PolyOptimizer passes weight_decay where SGD expects momentum, so IRNet's SGD runs with momentum 1e-4, i.e.
none.

params (IRNet on VOC 2012 / CPU demo): seed, device, class_names, tags_from, split, backbone
(resnet50 / small), pretrained (ImageNet file / null), strides ((2,2,2,1)), crop (512 / 128), resize_long
([320, 640] / [96, 160]), batch_size (16), epochs (5 / 12), lr (0.1), weight_decay (1e-4), num_workers (0).
`neck_channels` (null) puts RPNet's main-branch neck before the classifier (wsss/cam/net.py). `method` rpnet
trains RPNet instead (wsss/rpnet/: its keys references, levels, alpha, keep, sigma, region_scales,
consistency_weight, peak_floor): each image comes with `references` images sharing one of its classes
(wsss/rpnet/pairs.py), each with its own augmentation, and only its main branch is saved. `train_fraction`
(RPNet Table II: 1, 1/2, ..., 1/16) trains on a seeded subset of `split` that still holds every class
(`train_subset`).
Output `out`: {"state_dict", "params", "history"} (history: mean loss and seconds per epoch), written
atomically."""
import functools
import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from wsss import distributed, training
from wsss.cam import net as cam_net
from wsss.datasets import voc
from wsss.datasets.voc import VOCDataset, path
from wsss.params import Param, resolve
from wsss.rpnet import net as rpnet_net
from wsss.rpnet.losses import rpnet_loss
from wsss.rpnet.pairs import PairedImages
from wsss.runtime import seed_everything
from wsss.training import fit, iterations_per_epoch
from wsss.transforms import TrainAugment

METHODS = ("irnet", "rpnet")  # the CAM networks: IRNet's plain one, RPNet (wsss/rpnet/)

PARAMS = {
    **training.PARAMS,
    **cam_net.PARAMS,
    **rpnet_net.PARAMS,
    "method": Param(str, "irnet", "CAM network: irnet (plain CAM) | rpnet (region prototypes, wsss/rpnet/)"),
    "tags_from": voc.TAGS_FROM,
    "split": voc.SPLIT,
    # the released PolyOptimizer's SGD runs without momentum (module docstring)
    "momentum": Param(float, 0.0, "SGD momentum (IRNet: 0)"),
    "crop": Param(int, help="square training crop side (IRNet: 512)"),
    "resize_long": Param(list, help="random long side range [lo, hi] before cropping (IRNet: [320, 640])"),
    "epochs": Param(int, help="epochs over `split` (IRNet: 5)"),
    "train_fraction": Param(float, 1.0, "share of `split` trained on, every class kept (RPNet Table II: 1..1/16)"),
}


NEW_LAYER_LR_MULT = 10  # IRNet train_cam.py: the classifier learns at 10x the backbone rate


class TaggedImages(Dataset):
    """{"image": augmented [3, crop, crop], "tags": float32 [K]} of the images `indices` of `images`; keyed as
    wsss.training.BatchPlan."""

    def __init__(self, images: VOCDataset, indices, augment: TrainAugment):
        self.images, self.indices, self.augment = images, list(indices), augment

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        index, aug_seed = key
        return self.load(self.indices[index], random.Random(aug_seed))

    def load(self, image_index: int, rng) -> dict:
        item = self.images[image_index]
        return {"image": self.augment(item["image"], rng=rng)[0], "tags": torch.from_numpy(item["tags"])}


def train_subset(tags: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ceil(fraction N) images of tags [N, K] drawn under `seed`, plus, for a class none
    of them has, the first image with it in the same random order (RPNet Table II keeps every class)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    order = np.random.default_rng(seed).permutation(len(tags))
    chosen = set(order[:math.ceil(fraction * len(tags))].tolist())
    for c in range(tags.shape[1]):
        having = order[tags[order, c] > 0]
        if len(having) and not any(int(i) in chosen for i in having):
            chosen.add(int(having[0]))
    return np.array(sorted(chosen), np.int64)


def run(params: dict, *, root, out):
    """Trains the CAM network on `split` of `root` and saves it to `out`."""
    params = resolve(params, PARAMS, "train_cam")
    if params["method"] not in METHODS:
        raise ValueError(f"train_cam: method must be one of {list(METHODS)}, got {params['method']!r}")
    distributed.launch(train, params, root=root, out=out)


def train(p: dict, *, root, out):
    seed_everything(p["seed"])
    images = VOCDataset(root, p["split"], p["class_names"], p["tags_from"], with_mask=False)
    indices = train_subset(images.tags, p["train_fraction"], p["seed"])
    n_iters = iterations_per_epoch(len(indices), p["batch_size"], path(root, "split", p["split"])) * p["epochs"]
    model = saved = cam_net.build(p)
    dataset = TaggedImages(images, indices, TrainAugment(p["crop"], resize_long=p["resize_long"]))
    loss = classification_loss
    if p["method"] == "rpnet":  # trained inside RPNet's region branch, saved alone
        model = rpnet_net.RPNet(saved, **{k: p[k] for k in rpnet_net.NETWORK_KEYS})
        dataset = PairedImages(dataset, p["references"])
        loss = functools.partial(rpnet_loss, weight=p["consistency_weight"], peak_floor=p["peak_floor"])
    backbone, new = model.param_groups()
    fit(model, [(backbone, 1.0), (new, NEW_LAYER_LR_MULT)], dataset, loss, p, n_iters, out=out, desc="train_cam",
        saved=saved, module=__name__, inputs=voc.split_files(root, p["split"], "image",
                                                voc.tag_kind(voc.tags_source(root, images.ids, p["tags_from"]))))


def classification_loss(net, batch, it):
    """Multi-label soft-margin loss of the GAP logits (a mean over the batch, so exact under DDP)."""
    return F.multilabel_soft_margin_loss(net(batch["image"]), batch["tags"])
