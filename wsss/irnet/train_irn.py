"""The train_irn stage: IRNet's two branches trained from the IR labels (IRNet Sec. 4.2-4.5, Sec. 6.1).

Per batch: pairs within `radius` (10) at stride 4 from the reduced IR labels (Eq. 2-4, wsss.irnet.relations);
boundary loss Eq. 8 on the affinities of Eq. 7 (kernels.line_max_affinity); displacement losses Eq. 5-6;
joint loss Eq. 9. SGD with polynomial decay (power 0.9) from `lr`, weight decay `weight_decay`, the
displacement branch at 10x the learning rate (Sec. 6.1), the backbone frozen; wsss.training's loop (DDP
over the job's GPUs, the loss normalised by pair counts over the whole batch).

The backbone (`irn_backbone`): "pretrained" loads the ImageNet file `pretrained` (the paper's setting:
IRNet shares the classification network's ImageNet-initialised ResNet-50); "cam" copies the trained CAM
network's backbone from `cam_model`, for runs without ImageNet weights (the demo), where a random frozen
backbone would give the branches nothing to work with.

`input_scale` multiplies the random rescale range `scale`; make_sem_seg_labels and make_ins_seg_labels
must use the same value (paper 1; the demo's 128 px images need 2 for a fine enough stride-4 grid).

params (paper / demo): seed, device, split, class_names, backbone (resnet50 / small), pretrained (ImageNet
file / null), irn_backbone (pretrained / cam), crop (512 / 128), scale ([0.5, 1.5]), input_scale (1 / 2),
batch_size (32 / 8), epochs (3 / 5), lr (0.1), momentum (0 / 0.9), weight_decay (1e-4), radius (10 / 5),
source_window (release / release), num_workers.
After training, one eval pass over `split` measures the mean displacement inference subtracts (as released).
Output `out` (irn/model.pt): {"state_dict", "params" (as given, used to rebuild the network),
"history" (mean loss and wall seconds of each epoch)}.
"""
import random
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from wsss import distributed, runtime, training
from wsss.cam import net as cam_net
from wsss.datasets import voc
from wsss.irnet import losses, relations
from wsss.irnet import net as irn_net
from wsss.models import load_pretrained
from wsss.params import Param, resolve
from wsss.training import fit, iterations_per_epoch
from wsss.transforms import TrainAugment, normalize, rescale, to_tensor, top_left_crop

PARAMS = {
    **training.PARAMS,
    "class_names": voc.CLASS_NAMES,
    "split": voc.SPLIT,
    "backbone": Param(str, help="small (CPU demo) | resnet50 | resnet101"),
    "pretrained": Param(str, None, "torchvision-format ImageNet state dict"),
    "irn_backbone": Param(str, "pretrained", "the frozen backbone from: pretrained (ImageNet) | cam (the CAM network)"),
    "radius": Param(int, 10, "Sec. 4.2: pair radius at stride 4"),
    "input_scale": Param(float, 1.0, "images rescaled by this (the label stages use the same)"),
    "crop": Param(int, 512, "square training crop side"),
    "scale": Param(list, [0.5, 1.5], "random rescale range"),
    "epochs": Param(int, 3, "epochs over `split`"),
    "momentum": Param(float, 0.0, "SGD momentum (released PolyOptimizer: none)"),
    "source_window": Param(str, "release", "pair sources: release (rows [0, h-r+1), columns [r-1, w-r+1), "
                           "misc/indexing.py) | all (every pixel with its partner inside)"),
}


def run(params: dict, *, root, ir_labels, cam_model, out):
    """Trains IRNet on the images of `split` with their IR labels; saves it to `out`."""
    distributed.launch(train, resolve(params, PARAMS, "train_irn"), root=root, ir_labels=ir_labels,
                       cam_model=cam_model, out=out)


def train(params: dict, *, root, ir_labels, cam_model, out):
    runtime.seed_everything(params["seed"])
    ids = voc.read_ids(root, params["split"])
    lo, hi = params["scale"]  # the random rescale range around the `input_scale` the label stages use
    augment = TrainAugment(crop=params["crop"], scale=(lo * params["input_scale"], hi * params["input_scale"]))
    dataset = IRLabelDataset(root, ids, ir_labels, len(params["class_names"]), augment)
    per_epoch = iterations_per_epoch(len(dataset), params["batch_size"], voc.path(root, "split", params["split"]))
    model = init_model(params, cam_model)
    boundary, displacement = model.branch_parameters()
    # Sec. 6.1: displacement-branch gradients x10, i.e. 10x its learning rate under SGD. The released
    # PolyOptimizer passes weight_decay into SGD's momentum slot, so it runs with (practically) no momentum:
    # `momentum` 0 is the paper setting; the short CPU demo needs 0.9 to learn in its few steps.
    fit(model, [(boundary, 1.0), (displacement, 10.0)], dataset,
        Objective(params["radius"], params["source_window"]), params, per_epoch * params["epochs"], out=out,
        desc="train_irn", finish=lambda net: measure_mean_displacement(net, root, ids, params), module=__name__,
        inputs=[*voc.split_files(root, params["split"], "image"), ir_labels, cam_model])


@torch.no_grad()
def measure_mean_displacement(model: irn_net.IRNet, root, ids, params: dict):
    """Sets `model.mean_displacement` (Sec. 4.3) to the mean displacement output over the images `ids`, as the
    released step/train_irn.py does after training: one eval-mode pass, each image at `input_scale`, its
    top-left `crop` window zero-padded to crop x crop, no flip; the mean of the per-image means (the
    release averages per-batch means, which is the same over full batches)."""
    model.eval()
    model.mean_displacement.zero_()
    dev = model.mean_displacement.device
    total = torch.zeros(2, dtype=torch.float64)
    for image_id in tqdm(ids, desc="mean displacement", disable=not distributed.is_main()):
        image = voc.load_image(voc.path(root, "image", image_id))
        if params["input_scale"] != 1:
            image = rescale(image, params["input_scale"])[0]
        x = to_tensor(top_left_crop(normalize(image), params["crop"]))
        _, disp = model(x[None].to(dev, memory_format=torch.channels_last))
        total += disp.mean((0, 2, 3)).double().cpu()
    model.mean_displacement.copy_((total / len(ids)).to(model.mean_displacement))


class IRLabelDataset(Dataset):
    """{"image": normalised crop [3, S, S], "label": its IR label reduced to stride 4 [S/4, S/4]}; keyed as
    wsss.training.BatchPlan."""

    def __init__(self, root, ids, label_dir, n_classes, augment):
        self.root, self.ids, self.label_dir = root, ids, Path(label_dir)
        self.n_classes, self.augment = n_classes, augment

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, key):
        index, aug_seed = key
        image = voc.load_image(voc.path(self.root, "image", self.ids[index]))
        label = voc.load_mask(self.label_dir / f"{self.ids[index]}.png", self.n_classes, image.shape)
        image, label = self.augment(image, label, random.Random(aug_seed))
        return {"image": image, "label": relations.downsample_label(label)}


def init_model(params: dict, cam_model) -> irn_net.IRNet:
    """IRNet with its frozen backbone taken from ImageNet weights or from the trained CAM network."""
    model = irn_net.build(params["backbone"])
    if params["irn_backbone"] == "pretrained":
        if not params["pretrained"]:
            raise ValueError("irn_backbone 'pretrained' needs `pretrained`, an ImageNet weights file")
        load_pretrained(model.backbone, params["pretrained"])
    elif params["irn_backbone"] == "cam":
        try:
            model.backbone.load_state_dict(cam_net.load(cam_model).backbone.state_dict())
        except RuntimeError as e:
            raise voc.DataError(f"{cam_model}: the CAM network's backbone is not a {params['backbone']!r} "
                                 f"({e})") from e
    else:
        raise ValueError(f"irn_backbone must be 'pretrained' or 'cam', got {params['irn_backbone']!r}")
    return model


class Objective:
    """loss_fn of wsss.training.fit: Eq. 9 of one batch."""

    def __init__(self, radius: int, window: str):
        self.radius, self.window = radius, window

    def __call__(self, net, batch, it):
        edge, disp = net(batch["image"])
        return losses.total_loss(losses.losses(edge, disp, batch["label"], self.radius, self.window))
