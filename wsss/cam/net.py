"""The classification network behind class activation maps (IRNet Sec. 3, Eq. 1; net/resnet50_cam.py).

Training: features -> global average pooling -> 1x1 classifier without bias -> class logits.
Inference: the same classifier applied at every position, M_c(x) = phi_c^T f(x), ReLU'd (Eq. 1)."""

import torch.nn.functional as F
from torch import nn

from wsss.datasets import voc
from wsss.models import backbone as make_backbone, load_trained
from wsss.params import Param

# What the network depends on, part of train_cam's PARAMS.
PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "backbone": Param(str, help="small (from scratch) | efficientnet_lite0..2 | resnet50 | resnet101 | resnext50 | "
                                "resnext101"),
    "pretrained": Param(str, None, "ImageNet state dict (a file; package / download: wsss.models.weights); "
                                   "null: from scratch"),
    "strides": Param(list, [2, 2, 2, 1], "strides of the four ResNet levels (IRNet: output stride 16)"),
}


IRNET_FROZEN_LEVELS = 3  # resnet50_cam.py detaches after stage2 (stem + layer1 + layer2)


class CAMNet(nn.Module):
    """`frozen_levels`: leading backbone levels left untrained; IRNet trains only layer3, layer4 and the
    classifier on top of ImageNet weights (its features are detached after layer2, i.e. 3 levels)."""

    def __init__(self, backbone: nn.Module, n_classes: int, frozen_levels: int = 0):
        super().__init__()
        self.backbone = backbone
        self.frozen_levels = frozen_levels
        for level in range(frozen_levels):  # no gradient reaches them; DDP needs them marked as such
            for p in backbone.level_parameters(level):
                p.requires_grad_(False)
        self.classifier = nn.Conv2d(backbone.channels[-1], n_classes, 1, bias=False)

    def features(self, x):
        return self.backbone.forward_features(x, self.frozen_levels)[-1]

    def forward(self, x):
        """Class logits [B, K]: the classifier on globally average-pooled features."""
        pooled = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(pooled).flatten(1)

    def cam(self, x):
        """CAMs [B, K, h, w] at the backbone's output stride (Eq. 1, ReLU'd)."""
        return F.relu(F.conv2d(self.features(x), self.classifier.weight))

    def param_groups(self):
        """(backbone parameters that train, new layers): IRNet gives the new layers 10x the learning rate."""
        return [p for p in self.backbone.parameters() if p.requires_grad], list(self.classifier.parameters())


def build(params: dict) -> CAMNet:
    """The CAM network described by train_cam params (backbone, strides, class_names, pretrained; method and
    the RPNet keys, wsss/cam/rpnet.py, for method rpnet).

    With ImageNet weights it follows IRNet (fixed BN statistics, stem..layer2 untrained); from scratch
    every layer and the BN statistics must train."""
    pretrained = params.get("pretrained")
    backbone = make_backbone(params["backbone"], params.get("strides", PARAMS["strides"].default), pretrained,
                             frozen_bn=pretrained is not None)
    n_classes, frozen = len(params["class_names"]) - 1, IRNET_FROZEN_LEVELS if pretrained else 0
    method = params.get("method", "irnet")
    if method == "rpnet":
        from wsss.cam import rpnet  # rpnet builds on CAMNet, so it is imported here, not at the top

        return rpnet.RPNet(backbone, n_classes, frozen, **{k: params[k] for k in rpnet.NETWORK_KEYS if k in params})
    if method != "irnet":
        raise ValueError(f"method must be 'irnet' or 'rpnet', got {method!r}")
    return CAMNet(backbone, n_classes, frozen_levels=frozen)


def load(path, device="cpu") -> CAMNet:
    """The trained CAM network saved by train_cam ({"state_dict", "params", ...}), in eval mode."""
    # the weights come from the checkpoint, not from the ImageNet file it started from
    return load_trained(path, lambda params: build({**params, "pretrained": None}), device)
