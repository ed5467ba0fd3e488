"""Networks: the backbones (torchvision-compatible ResNets, EfficientNet-Lite; one interface,
wsss/models/backbone.py) and the heads of each method."""
import importlib

import torch
from torch import nn

from wsss.errors import DataError
from wsss.io import load_torch
from wsss.models import weights
from wsss.models.backbone import Backbone, FixedBatchNorm, load_state
from wsss.models import efficientnet_lite
from wsss.models.resnet import ARCHITECTURES, resnet

__all__ = ["BACKBONES", "backbone", "resnet", "load_pretrained", "read_checkpoint", "load_trained", "load_segmenter"]

BACKBONES = (*ARCHITECTURES, *efficientnet_lite.VARIANTS)


def backbone(name: str, strides=(2, 2, 2, 1), pretrained=None, frozen_bn: bool = False,
             head: bool = True) -> Backbone:
    """The backbone `name` (BACKBONES) laid out by `strides`, with ImageNet weights from `pretrained` (a file,
    or `package` / `download`: wsss.models.weights) unless None; `frozen_bn`: IRNet's FixedBatchNorm. `head`:
    EfficientNet-Lite's level 4 ends in its 1x1 head convolution (else at its last block; a ResNet has none)."""
    if name in efficientnet_lite.VARIANTS:
        net = efficientnet_lite.build(name, strides, FixedBatchNorm if frozen_bn else nn.BatchNorm2d, head)
    elif name in ARCHITECTURES:
        net = resnet(name, strides, frozen_bn=frozen_bn)
    else:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if pretrained is not None:
        load_pretrained(net, pretrained)
    return net


def load_pretrained(model: Backbone, pretrained):
    """Loads the ImageNet file `pretrained` (a path, or `package` / `download` for the backbone built by
    `backbone`) into `model`; DataError naming the file or the missing package."""
    try:
        file = weights.local_file(getattr(model, "name", None), pretrained)
    except ValueError as e:
        raise DataError(str(e)) from e
    load_state(model, file)

# segmentation architectures (a saved network's params["arch"]) -> the module whose build(params) makes it
SEGMENTERS = {"deeplab_v2": "wsss.models.deeplab", "deeplab_v3plus": "wsss.models.deeplab", "psi": "wsss.psi.net"}


def read_checkpoint(path) -> dict:
    """A wsss model file ({"state_dict", "params", ...}); DataError naming the file if it is not one."""
    ckpt = load_torch(path, "model file")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "params" not in ckpt:
        raise DataError(f"{path}: expected a wsss model file with 'state_dict' and 'params'")
    return ckpt


def load_trained(path, build, device="cpu") -> torch.nn.Module:
    """The network saved at `path`, rebuilt by `build(params)` from its saved params, in eval mode."""
    return _rebuild(path, read_checkpoint(path), build, device)


def _rebuild(path, ckpt: dict, build, device) -> torch.nn.Module:
    """The network of checkpoint `ckpt` (read from `path`); a mismatch is one line naming the file."""
    model = build(ckpt["params"])
    own, saved = model.state_dict(), ckpt["state_dict"]
    missing, unexpected = [k for k in own if k not in saved], [k for k in saved if k not in own]
    wrong = [k for k in own if k in saved and tuple(own[k].shape) != tuple(saved[k].shape)]
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise DataError(f"{path}: weights do not match the network its params describe ({len(missing)} tensors "
                        f"missing, {len(unexpected)} unexpected, {len(wrong)} of another shape; e.g. {example})")
    model.load_state_dict(saved)
    return model.to(device).eval()


# Networks wsss trains that are not segmenters, known by a tensor only they hold: what predict says of them.
NOT_SEGMENTERS = {
    "classifier.weight": "this is a classifier (train_cam's CAM network), not a segmentation network",
    "mean_displacement": "this is IRNet's boundary and displacement network (train_irn), not a segmentation network",
}


def load_segmenter(path, device="cpu") -> torch.nn.Module:
    """Any trained segmentation network (train_seg, train_dsrg, train_psi, train_cdsp), rebuilt by the module
    SEGMENTERS names for its params' `arch` (deeplab_v2 when absent), in eval mode; a CAM network or IRNet is
    a DataError saying what it is."""
    ckpt = read_checkpoint(path)
    if "arch" not in ckpt["params"]:
        for key, what in NOT_SEGMENTERS.items():
            if key in ckpt["state_dict"]:
                raise DataError(f"{path}: {what}; give the model.pt of a segmentation network (seg_irnet, seg_rpnet, "
                                "dsrg, dsrg_nogrowth, dsrg_retrain, psi, cdsp)")

    def build(params):
        arch = params.get("arch", "deeplab_v2")
        if arch not in SEGMENTERS:
            raise DataError(f"{path}: unknown segmentation arch {arch!r} (known: {', '.join(SEGMENTERS)})")
        # the weights come from the checkpoint, not from the ImageNet file it started from
        return importlib.import_module(SEGMENTERS[arch]).build({**params, "pretrained": None})

    return _rebuild(path, ckpt, build, device)
