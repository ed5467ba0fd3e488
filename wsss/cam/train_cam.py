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
Output `out`: {"state_dict", "params", "history"} (history: mean loss and seconds per epoch), written
atomically."""
import random

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from wsss import distributed, training
from wsss.cam import net as cam_net
from wsss.datasets import voc
from wsss.datasets.voc import VOCDataset, path
from wsss.params import Param, resolve
from wsss.runtime import seed_everything
from wsss.training import fit, iterations_per_epoch
from wsss.transforms import TrainAugment

PARAMS = {
    **training.PARAMS,
    **cam_net.PARAMS,
    "tags_from": voc.TAGS_FROM,
    "split": voc.SPLIT,
    # the released PolyOptimizer's SGD runs without momentum (module docstring)
    "momentum": Param(float, 0.0, "SGD momentum (IRNet: 0)"),
    "crop": Param(int, help="square training crop side (IRNet: 512)"),
    "resize_long": Param(list, help="random long side range [lo, hi] before cropping (IRNet: [320, 640])"),
    "epochs": Param(int, help="epochs over `split` (IRNet: 5)"),
}


NEW_LAYER_LR_MULT = 10  # IRNet train_cam.py: the classifier learns at 10x the backbone rate


class TaggedImages(Dataset):
    """{"image": augmented [3, crop, crop], "tags": float32 [K]}; keyed as wsss.training.BatchPlan."""

    def __init__(self, images: VOCDataset, augment: TrainAugment):
        self.images, self.augment = images, augment

    def __len__(self):
        return len(self.images)

    def __getitem__(self, key):
        index, aug_seed = key
        item = self.images[index]
        return {"image": self.augment(item["image"], rng=random.Random(aug_seed))[0],
                "tags": torch.from_numpy(item["tags"])}


def run(params: dict, *, root, out):
    """Trains the CAM network on `split` of `root` and saves it to `out`."""
    distributed.launch(train, resolve(params, PARAMS, "train_cam"), root=root, out=out)


def train(p: dict, *, root, out):
    seed_everything(p["seed"])
    images = VOCDataset(root, p["split"], p["class_names"], p["tags_from"], with_mask=False)
    n_iters = iterations_per_epoch(len(images), p["batch_size"], path(root, "split", p["split"])) * p["epochs"]
    model = cam_net.build(p)
    backbone, new = model.param_groups()
    dataset = TaggedImages(images, TrainAugment(p["crop"], resize_long=p["resize_long"]))
    fit(model, [(backbone, 1.0), (new, NEW_LAYER_LR_MULT)], dataset, classification_loss, p, n_iters, out=out,
        desc="train_cam", module=__name__,
        inputs=voc.split_files(root, p["split"], "image",
                                voc.tag_kind(voc.tags_source(root, images.ids, p["tags_from"]))))


def classification_loss(net, batch, it):
    """Multi-label soft-margin loss of the GAP logits (a mean over the batch, so exact under DDP)."""
    return F.multilabel_soft_margin_loss(net(batch["image"]), batch["tags"])
