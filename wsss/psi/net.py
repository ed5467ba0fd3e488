"""PSI's segmentation network: DeepLab-v3+ with the contextual pattern propagation module (Sec. 3.2).

CPP: the backbone's conv2..conv5 (the last four levels of its `forward_features`, `channels`; ResNet
layer1..layer4, strides 4, 8, 16, 16 at output stride 16) are each projected to one width by a 1x1
convolution (Sec. 5.2, "to uniform the semantic domain"; `cpp_bn` adds a BN, which the paper does not name);
the destination X^(k) (default k = 4, conv5) is the query, every level is key and value, the neighbourhoods
are Eq. 2-3 with radii (1, 1, 1, 4), the edge weights are plain inner products under ONE softmax over all
levels' neighbours (kernels.neighborhood_aggregate, Eq. 2-3, with its own backward: no dense HW x HW
attention), and Eq. 4 applies W^(l), b^(l) per level (a 1x1 convolution per level), sums and applies a ReLU.
The unscaled inner product in `cpp_width` dimensions makes this softmax pick about one neighbour, with or
without the BN (docs/psi.md, "CPP's attention").

Decoder (Sec. 3.2, "following DeepLabV3+"): the aggregated map and the ASPP output are upsampled
(bilinear) to conv2's size and concatenated with conv2's 48-channel projection, then DeepLab-v3+'s two
3x3 convolutions and the classifier. With `cpp` false the network is DeepLab-v3+ itself (Table 3's
baseline). `forward` returns logits at stride 4; callers upsample them.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from kernels import neighborhood_aggregate
from wsss.models import deeplab
from wsss.params import Param

PARAMS = {
    **deeplab.PARAMS,
    "arch": Param(str, "psi", "psi (DeepLab-v3+ with or without CPP)"),
    "cpp": Param(bool, True, "contextual pattern propagation (false: plain DeepLab-v3+, Table 3 baseline)"),
    "cpp_width": Param(int, 256, "channels of the projected levels and of the aggregated map"),
    "cpp_radii": Param(list, [1, 1, 1, 4], "Eq. 3 neighbour radius rho of conv2..conv5"),
    "cpp_destination": Param(int, 4, "destination layer k (1..4 = conv2..conv5; Table 5)"),
    "cpp_bn": Param(bool, False, "a BatchNorm after each 1x1 projection (not in Sec. 5.2: DeepLab-v3+'s conv-BN "
                    "habit; it bounds Eq. 3's inner products, docs/psi.md)"),
    "head_channels": Param(int, 256, "channels of ASPP and the decoder (DeepLab-v3+: 256)"),
}


class CPP(nn.Module):
    """Eq. 1-4 over the levels `feats` (conv2..conv5): the enhanced map on the destination level's grid."""

    def __init__(self, in_channels, width: int, radii, destination: int, bn: bool = False):
        super().__init__()
        if len(radii) != len(in_channels) or not 1 <= destination <= len(in_channels):
            raise ValueError(f"cpp_radii needs one radius per level ({len(in_channels)}) and cpp_destination "
                             f"must be 1..{len(in_channels)}; got {radii}, {destination}")
        # Sec. 5.2: "each feature map is processed by a 1x1 convolution before CPP"
        self.project = nn.ModuleList(nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width)) if bn
                                     else nn.Conv2d(c, width, 1) for c in in_channels)
        self.weights = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in in_channels)  # W^(l), b^(l) of Eq. 4
        self.radii, self.destination = [int(r) for r in radii], destination - 1

    def forward(self, feats):
        levels = [p(f) for p, f in zip(self.project, feats)]
        query = levels[self.destination]
        # strides: log2 of each level's stride over the destination's (Eq. 2's S_k - S_l)
        strides = [round(math.log2(query.shape[-1] / lv.shape[-1])) for lv in levels]
        aggregated = neighborhood_aggregate(query, levels, levels, self.radii, strides)
        return F.relu(sum(w(a) for w, a in zip(self.weights, aggregated)))  # Eq. 4, sigma = ReLU


class PSINet(nn.Module):
    """DeepLab-v3+ (ASPP + decoder) whose decoder also takes the CPP map (module docstring)."""

    def __init__(self, backbone, n_classes: int, cpp: bool = True, width: int = 256, radii=(1, 1, 1, 4),
                 destination: int = 4, channels: int = 256, skip_channels: int = 48, cpp_bn: bool = False):
        super().__init__()
        self.backbone = backbone
        self.aspp = deeplab.ASPP(backbone.channels[-1], channels)
        levels = backbone.channels[-4:]  # conv2..conv5: the last four levels of forward_features
        self.skip = deeplab.conv_bn_relu(levels[0], skip_channels)
        self.cpp = CPP(levels, width, radii, destination, cpp_bn) if cpp else None
        cin = channels + skip_channels + (width if cpp else 0)
        self.decoder = nn.Sequential(deeplab.conv_bn_relu(cin, channels, 3),
                                     deeplab.conv_bn_relu(channels, channels, 3), nn.Conv2d(channels, n_classes, 1))
        for conv in (m for head in self.heads() for m in head.modules() if isinstance(m, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")  # Sec. 5.2: the new layers
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, x):
        feats = self.backbone.forward_features(x)[-4:]  # conv2..conv5
        low = self.skip(feats[0])
        maps = [self.aspp(feats[-1])] + ([self.cpp(feats)] if self.cpp is not None else [])
        maps = [F.interpolate(m, low.shape[-2:], mode="bilinear", align_corners=False) for m in maps]
        return self.decoder(torch.cat(maps + [low], 1))

    def heads(self):
        return [m for m in (self.aspp, self.skip, self.cpp, self.decoder) if m is not None]


def build(params: dict) -> PSINet:
    """The network of `params` (PARAMS): DeepLab-v3+'s backbone layout (output stride 16), with CPP or not."""
    backbone = deeplab.backbone({**params, "arch": "deeplab_v3plus"})
    p = {name: params.get(name, spec.default) for name, spec in PARAMS.items() if name.startswith(("cpp", "head"))}
    return PSINet(backbone, len(params["class_names"]), p["cpp"], p["cpp_width"], p["cpp_radii"],
                  p["cpp_destination"], p["head_channels"], cpp_bn=p["cpp_bn"])
