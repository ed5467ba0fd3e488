"""Stage train_cdsp: CDSP's segmentation training (Eq. 5) on scribbles and pseudo-labels.

Loss = L_segs (partial cross-entropy on the scribble pixels, Eq. 8) + L_segc (cross-entropy with label
smoothing eps on the pseudo-label, Eq. 9) + L_lorm (LoRM on the last backbone features, Eq. 10-13) + L_ds +
L_dc (distance entropy on the scribble and pseudo-label-boundary maps, Eq. 15, 17, 18), all of weight 1, each
on the logits upsampled once to the crop (bilinear, corners aligned, as released); `losses` switches each on or
off (CDSP Table 2 rows). The distance maps are read /255; crops and rotations pad every map with 255 (weight 1
for DEL, ignore for the labels), as released. LoRM is a training-only module: the saved model file holds the
DeepLab network alone, so infer_seg / eval_seg read it like train_seg's.

Paper / release values: arch deeplab_v2 with resnet50 (Table 2) or deeplab_v3plus with resnet101 (Table 1),
SGD momentum 0.9, weight_decay 0.0005, lr 0.001 for every parameter (train.py: one group; `head_lr_mult` 1),
batch_size 16, epochs 50, linear warm-up from 0 (paper 10 epochs, script 5) then cosine per iteration, crop
465, scale [0.5, 2.0], rotation in [-10, 10] degrees and a 5x5 Gaussian blur (each with probability 0.5),
flip, label_smoothing 0.1. Not done here: AMP by default (`amp`).
"""
import random

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from wsss import distributed
from wsss.cdsp.losses import LoRM, distance_entropy, upsample
from wsss.datasets import voc
from wsss.models import deeplab
from wsss.params import Param, resolve
from wsss.runtime import seed_everything
from wsss.seg.losses import cross_entropy
from wsss.seg.train_seg import NETWORK_PARAMS
from wsss.training import fit, iterations_per_epoch
from wsss.transforms import TrainAugment

LOSSES = ("segs", "segc", "lorm", "ds", "dc")
PARAMS = {
    **NETWORK_PARAMS,
    "lr_policy": Param(str, "cosine", "learning-rate policy (wsss.training): cosine = warm-up, then cosine"),
    "scale": Param(list, [0.5, 2.0], "random rescale range"),
    "epochs": Param(int, 50, "training epochs"),
    "warmup_epochs": Param(int, 10, "epochs of linear learning-rate warm-up"),
    "label_smoothing": Param(float, 0.1, "eps of L_segc (Eq. 9)"),
    "head_lr_mult": Param(float, 1.0, "learning-rate multiplier of the heads and LoRM (release: 1, one rate)"),
    "rotate": Param(float, 10.0, "random rotation in [-rotate, rotate] degrees, probability 0.5 (release: 10)"),
    "blur": Param(bool, True, "5x5 Gaussian blur with probability 0.5 (release)"),
    "losses": Param(list, list(LOSSES), f"the loss terms used, of {list(LOSSES)}"),
}


def run(params: dict, *, root, pseudo, dist_scribble, dist_pseudo, out, scribbles=None, init=None):
    """Trains on the scribbles (`scribbles`/<id>.png, default the root's), the pseudo-labels `pseudo`/<id>.png
    and the distance maps `dist_scribble`, `dist_pseudo`/<id>.png of `split`; saves {"state_dict", "params",
    "history"} of the DeepLab network to `out`. `init`: a saved network to start from."""
    params = resolve(params, PARAMS, "train_cdsp")
    unknown = set(params["losses"]) - set(LOSSES)
    if unknown or not params["losses"]:
        raise ValueError(f"train_cdsp: losses must be a non-empty subset of {list(LOSSES)}, got {params['losses']}")
    distributed.launch(train, params, root=root, pseudo=pseudo, dist_scribble=dist_scribble,
                       dist_pseudo=dist_pseudo, out=out, scribbles=scribbles, init=init)


def train(params: dict, *, root, pseudo, dist_scribble, dist_pseudo, out, scribbles=None, init=None):
    seed_everything(params["seed"])
    ids = voc.read_ids(root, params["split"])
    files = {"scribble": voc.scribble_files(root, ids, scribbles),
               "pseudo": voc.label_files(pseudo, ids, "pseudo-label"),
               "dist_scribble": voc.label_files(dist_scribble, ids, "scribble distance map"),
               "dist_pseudo": voc.label_files(dist_pseudo, ids, "pseudo-label distance map")}
    dataset = CDSPData(root, ids, files, len(params["class_names"]),
                       TrainAugment(params["crop"], scale=tuple(params["scale"]), rotate=params["rotate"],
                                    blur=params["blur"]))
    seg = deeplab.build(params)
    if init is not None:
        deeplab.load_weights(seg, init)
    model = CDSPNet(seg, "lorm" in params["losses"])
    backbone, heads = deeplab.backbone_and_heads(seg)
    new = heads + (list(model.lorm.parameters()) if model.lorm is not None else [])
    per_epoch = iterations_per_epoch(len(ids), params["batch_size"], voc.path(root, "split", params["split"]))
    params = {**params, "warmup_iters": params["warmup_epochs"] * per_epoch}
    fit(model, [(backbone, 1.0), (new, params["head_lr_mult"])], dataset, CDSPLoss(params), params,
        params["epochs"] * per_epoch, out=out, desc="train_cdsp", saved=seg, module=__name__,
        whole_images=(root, ids),
        inputs=[*voc.split_files(root, params["split"], "image"),
                *([scribbles] if scribbles else voc.split_files(root, params["split"], "scribble")),
                pseudo, dist_scribble, dist_pseudo, init])


class CDSPNet(nn.Module):
    """The DeepLab network and, when used, LoRM on its last backbone features."""

    def __init__(self, seg: nn.Module, with_lorm: bool):
        super().__init__()
        self.seg = seg
        self.lorm = LoRM(seg.backbone.channels[-1]) if with_lorm else None

    def forward(self, image, pseudo):
        """(logits, L_lorm or None)."""
        logits, features = self.seg.forward_with_features(image)
        return logits, None if self.lorm is None else self.lorm(features, pseudo)


class CDSPLoss:
    """Eq. 5 with the terms of params["losses"], each of weight 1."""

    def __init__(self, params):
        self.losses, self.smoothing = set(params["losses"]), params["label_smoothing"]

    def __call__(self, net, batch, it):
        scribble, pseudo, dist_scribble, dist_pseudo = batch["maps"].unbind(-1)  # CDSPData's MAPS
        logits, lorm = net(batch["image"], pseudo)
        logits = upsample(logits, scribble.shape[-2:])  # once, for every term (the release's pred_sg_up)
        terms = {
            "segs": lambda: cross_entropy(logits, scribble),  # Eq. 8
            "segc": lambda: cross_entropy(logits, pseudo, self.smoothing),  # Eq. 9
            "lorm": lambda: lorm,  # Eq. 13
            "ds": lambda: distance_entropy(logits, dist_scribble.to(logits.dtype) / 255),  # Eq. 17
            "dc": lambda: distance_entropy(logits, dist_pseudo.to(logits.dtype) / 255),  # Eq. 15
        }
        return sum(terms[name]() for name in sorted(self.losses))


MAPS = ("scribble", "pseudo", "dist_scribble", "dist_pseudo")  # CDSPData's maps, stacked in this order


class CDSPData(Dataset):
    """Augmented images with their four maps stacked [H, W, 4] in the order of MAPS (scribble, pseudo-label,
    scribble distance map, pseudo-label distance map; `files` maps each name to its files), transformed
    together; items keyed by (index, augmentation seed)."""

    def __init__(self, root, ids, files: dict, n_classes, augment):
        self.root, self.ids, self.files, self.n_classes, self.augment = root, ids, files, n_classes, augment

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, key):
        index, aug_seed = key
        image = voc.load_image(voc.path(self.root, "image", self.ids[index]))
        shape = image.shape[:2]
        readers = {"scribble": lambda f: voc.load_scribble(f, self.n_classes, shape),
                   "pseudo": lambda f: voc.load_mask(f, self.n_classes, shape),
                   "dist_scribble": lambda f: voc.load_grey(f, "distance map", shape),
                   "dist_pseudo": lambda f: voc.load_grey(f, "distance map", shape)}
        maps = np.stack([readers[name](self.files[name][index]) for name in MAPS], -1)
        x, y = self.augment(image, maps, random.Random(aug_seed))
        return {"image": x, "maps": y}
