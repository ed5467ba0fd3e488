"""The classification network behind class activation maps (IRNet Sec. 3, Eq. 1; net/resnet50_cam.py), shared
by both CAM methods: IRNet's plain network, and RPNet's main branch, which is also its inference network
(wsss/rpnet/net.py trains it inside its region branch).

Training: features -> global average pooling -> 1x1 classifier without bias -> class logits.
Inference: the same classifier applied at every position, M_c(x) = phi_c^T f(x), ReLU'd (Eq. 1).
With `neck_channels` (RPNet's release, net/resnet50_cam.py class Net: `downsample` 2048 -> 512 and
`self_atten_x`), f is the last backbone level reduced by a 1x1 conv without bias and passed through a
non-local block; without (IRNet), f is the last backbone level."""

import torch
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
    "neck_channels": Param(int, None, "1x1 conv to this many channels + non-local block before the classifier "
                                      "(RPNet's release: 512); null: none (IRNet)"),
}


IRNET_FROZEN_LEVELS = 3  # resnet50_cam.py detaches after stage2 (stem + layer1 + layer2)


class NonLocal(nn.Module):
    """Non-local block (Wang et al. 2018) as RPNet's release (net/resnet50_cam.py `_NonLocalBlockND`, no
    sub-sampling): embedded dot product divided by the number of positions; the output transform W ends in a
    BN initialised to zero, so the block starts as the identity."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 2)
        self.theta, self.phi, self.g = (nn.Conv2d(channels, inner, 1) for _ in range(3))
        self.w = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.w[1].weight)

    def forward(self, x):
        b, _, h, w = x.shape
        theta, phi, g = (f(x).flatten(2) for f in (self.theta, self.phi, self.g))  # [B, C', N]
        affinity = torch.einsum("bci,bcj->bij", theta, phi) / (h * w)
        y = torch.einsum("bij,bcj->bci", affinity, g).reshape(b, -1, h, w)
        return x + self.w(y)


class CAMNet(nn.Module):
    """`frozen_levels`: leading backbone levels left untrained; IRNet trains only layer3, layer4 and the
    classifier on top of ImageNet weights (its features are detached after layer2, i.e. 3 levels).
    `neck_channels`: RPNet's main branch (module docstring); `reduce` and `context` are identities without."""

    def __init__(self, backbone: nn.Module, n_classes: int, frozen_levels: int = 0, neck_channels: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.frozen_levels = frozen_levels
        for level in range(frozen_levels):  # no gradient reaches them; DDP needs them marked as such
            for p in backbone.level_parameters(level):
                p.requires_grad_(False)
        channels = neck_channels or backbone.channels[-1]
        self.reduce = nn.Conv2d(backbone.channels[-1], channels, 1, bias=False) if neck_channels else nn.Identity()
        self.context = NonLocal(channels) if neck_channels else nn.Identity()
        self.classifier = nn.Conv2d(channels, n_classes, 1, bias=False)

    def features(self, x):
        return self.context(self.reduce(self.backbone.forward_features(x, self.frozen_levels)[-1]))

    def forward(self, x):
        """Class logits [B, K]: the classifier on globally average-pooled features."""
        pooled = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(pooled).flatten(1)

    def cam(self, x):
        """CAMs [B, K, h, w] at the backbone's output stride (Eq. 1, ReLU'd)."""
        return F.relu(F.conv2d(self.features(x), self.classifier.weight))

    def param_groups(self):
        """(backbone parameters that train, new layers): IRNet gives the new layers 10x the learning rate."""
        new = [p for m in (self.reduce, self.context, self.classifier) for p in m.parameters()]
        return [p for p in self.backbone.parameters() if p.requires_grad], new


def build(params: dict) -> CAMNet:
    """The CAM network described by train_cam params (backbone, strides, class_names, pretrained, neck_channels).

    With ImageNet weights it follows IRNet (fixed BN statistics, stem..layer2 untrained); from scratch
    every layer and the BN statistics must train."""
    pretrained = params.get("pretrained")
    backbone = make_backbone(params["backbone"], params.get("strides", PARAMS["strides"].default), pretrained,
                             frozen_bn=pretrained is not None)
    return CAMNet(backbone, len(params["class_names"]) - 1, IRNET_FROZEN_LEVELS if pretrained else 0,
                  params.get("neck_channels"))


def load(path, device="cpu") -> CAMNet:
    """The trained CAM network saved by train_cam ({"state_dict", "params", ...}), in eval mode: for RPNet its
    main branch, the only part train_cam saves."""
    # the weights come from the checkpoint, not from the ImageNet file it started from
    return load_trained(path, lambda params: build({**params, "pretrained": None}), device)
