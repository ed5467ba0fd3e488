"""The train_seg stage: a DeepLab network trained fully supervised on a folder of pseudo-labels
(`<labels>/<id>.png`, palette PNGs, 255 = ignore): IRNet's random-walk labels, DSRG's retrain (Sec. 4.4),
the scribble methods' labels.

Cross-entropy with ignore, SGD with momentum, poly learning rate, DeepLab-v2's parameter groups
(wsss.models.deeplab.param_groups: biases x2 without weight decay, new layers at `head_lr_mult` x), random
scale (`scale`; null: none), flip and crop (wsss.transforms), in wsss.training's loop (resumable every
`checkpoint_every` iterations, DDP over the job's GPUs). The loss is taken on the upsampled logits, or with
`label_grid` on the network's output grid (labels sampled at the cells' positions, wsss.seg.losses.grid_labels).
DSRG's retrain (Sec. 4.4) as released (solver-f / train-f.prototxt): arch deeplab_v2, batch_size 10, crop
321, scale null (random crop + mirror only), label_grid true (41 x 41), lr 0.001, power 0.9, iterations
20000, momentum 0.9, weight_decay 0.0005, head_lr_mult 10, starting from the DSRG model (`init`, run.sh).
"""
import random

from torch.utils.data import Dataset

from wsss import distributed, training
from wsss.datasets import voc
from wsss.models import deeplab
from wsss.params import Param, resolve
from wsss.runtime import seed_everything
from wsss.seg.losses import cross_entropy, grid_labels
from wsss.training import fit
from wsss.transforms import TrainAugment

# What every segmentation trainer (train_seg, train_dsrg) depends on.
NETWORK_PARAMS = {
    **training.PARAMS,
    **deeplab.PARAMS,
    "split": voc.SPLIT,
    "crop": Param(int, 321, "square training crop side"),
    "head_lr_mult": Param(float, 10.0, "learning-rate multiplier of the new layers (DeepLab: 10)"),
}
PARAMS = {
    **NETWORK_PARAMS,
    "scale": Param((list, type(None)), [0.5, 2.0], "random rescale range; null: none (DSRG's retrain)"),
    "iterations": Param(int, 20000, "SGD iterations"),
    "label_grid": Param(bool, False, "loss on the output grid (DSRG's retrain: 41 x 41) instead of upsampled logits"),
}


def run(params: dict, *, root, labels, out, init=None):
    """Trains on the pseudo-labels `labels`/<id>.png of `split` and saves {"state_dict", "params", "history"}
    to `out`; `init`: a saved network (segmentation or CAM model) to start from instead of `pretrained`."""
    distributed.launch(train, resolve(params, PARAMS, "train_seg"), root=root, labels=labels, out=out, init=init)


def train(params: dict, *, root, labels, out, init=None):
    seed_everything(params["seed"])
    ids = voc.read_ids(root, params["split"])
    scale = params["scale"]
    dataset = PseudoLabelled(root, ids, labels, len(params["class_names"]),
                             TrainAugment(params["crop"], scale=tuple(scale) if scale else None))
    model = deeplab.build(params)
    if init is not None:
        deeplab.load_weights(model, init)
    stride = model.backbone.output_stride if params["label_grid"] else None
    fit(model, deeplab.param_groups(model, params["head_lr_mult"]), dataset, SegmentationLoss(stride), params,
        params["iterations"], out=out, desc="train_seg", module=__name__, whole_images=(root, ids),
        inputs=[*voc.split_files(root, params["split"], "image"), labels, init])


class SegmentationLoss:
    """loss_fn of wsss.training.fit: cross-entropy on the upsampled logits, or with `stride` on the output
    grid (labels sampled by grid_labels)."""

    def __init__(self, stride: int | None):
        self.stride = stride

    def __call__(self, net, batch, it):
        logits, labels = net(batch["image"]), batch["label"]
        if self.stride is not None:
            labels = grid_labels(labels, logits.shape[-2:], self.stride)
        return cross_entropy(logits, labels)


class PseudoLabelled(Dataset):
    """Augmented (image, label) pairs; items are keyed by (index, augmentation seed), see wsss.training.BatchPlan."""

    def __init__(self, root, ids, labels, n_classes, augment):
        self.root, self.ids, self.n_classes, self.augment = root, ids, n_classes, augment
        self.files = voc.label_files(labels, ids, "pseudo-label")

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, key):
        index, aug_seed = key
        image = voc.load_image(voc.path(self.root, "image", self.ids[index]))
        label = voc.load_mask(self.files[index], self.n_classes, image.shape[:2])
        x, y = self.augment(image, label, random.Random(aug_seed))
        return {"image": x, "label": y}
