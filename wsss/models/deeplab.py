"""DeepLab segmentation networks on the wsss ResNets.

- DeepLab-v2 (Chen et al., TPAMI 2017; DSRG's "DeepLab-ASPP"): output stride 8 with layer3 / layer4 atrous
  (dilation 2 / 4 instead of stride), ASPP-L: four 3x3 classifiers with rates 6, 12, 18, 24, summed.
- DeepLab-v3+ (Chen et al., ECCV 2018): output stride 16 (layer4 dilation 2), ASPP (1x1, three 3x3 with
  rates 6, 12, 18, image pooling; 256 channels, BN) and the decoder (48-channel stride-4 skip from
  layer1, two 3x3 convolutions), without multi-grid.

`forward` returns class logits at the network's output stride; callers upsample them.
"""

import torch
import torch.nn.functional as F
from torch import nn

from wsss.datasets import voc
from wsss.errors import DataError
from wsss.models import backbone as make_backbone, load_trained, read_checkpoint
from wsss.models.backbone import FixedBatchNorm
from wsss.params import Param

# What the network depends on, part of the segmentation trainers' PARAMS.
PARAMS = {
    "class_names": voc.CLASS_NAMES,
    "arch": Param(str, "deeplab_v2", "deeplab_v2 (DSRG, output stride 8) | deeplab_v3plus (output stride 16)"),
    "backbone": Param(str, help="small (from scratch) | efficientnet_lite0..2 | resnet50 | resnet101"),
    "pretrained": Param(str, None, "ImageNet state dict (a file; package / download: wsss.models.weights); "
                                   "null: from scratch"),
    "output_stride": Param(int, None, "8 | 16; null: the arch's own (DeepLab-v2: 8, v3+: 16)"),
}


ARCHS = ("deeplab_v2", "deeplab_v3plus")
ARCH_OUTPUT_STRIDE = {"deeplab_v2": 8, "deeplab_v3plus": 16}
# (strides, dilations of levels 3 / 4, i.e. ResNet's layer3 / layer4) per output stride
BACKBONE_LAYOUT = {8: ((2, 2, 1, 1), (2, 4)), 16: ((2, 2, 2, 1), (1, 2))}


class DeepLabV2(nn.Module):
    def __init__(self, backbone, n_classes: int, rates=(6, 12, 18, 24)):
        super().__init__()
        self.backbone = backbone
        self.aspp = nn.ModuleList(nn.Conv2d(backbone.channels[-1], n_classes, 3, padding=r, dilation=r)
                                  for r in rates)
        for conv in self.aspp:  # DeepLab-v2's fc8 initialisation
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        return self.forward_with_features(x)[0]

    def forward_with_features(self, x):
        """(logits, the last backbone features): CDSP's LoRM reads the features."""
        features = self.backbone.forward_features(x)[-1]
        return sum(branch(features) for branch in self.aspp), features

    def heads(self):
        return [self.aspp]


def conv_bn_relu(cin, cout, kernel=1, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                                   bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """DeepLab-v3 ASPP: parallel 1x1, atrous 3x3 and image-pooling branches, concatenated and projected."""

    def __init__(self, cin, channels=256, rates=(6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, channels)] +
                                      [conv_bn_relu(cin, channels, 3, r) for r in rates])
        self.pool = conv_bn_relu(cin, channels)
        self.project = conv_bn_relu(channels * (len(rates) + 2), channels)

    def forward(self, x):
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1)).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], 1))


class DeepLabV3Plus(nn.Module):
    def __init__(self, backbone, n_classes: int, channels=256, skip_channels=48):
        super().__init__()
        self.backbone = backbone
        self.aspp = ASPP(backbone.channels[-1], channels)
        self.skip = conv_bn_relu(backbone.channels[1], skip_channels)
        self.decoder = nn.Sequential(conv_bn_relu(channels + skip_channels, channels, 3),
                                     conv_bn_relu(channels, channels, 3), nn.Conv2d(channels, n_classes, 1))

    def forward(self, x):
        return self.forward_with_features(x)[0]

    def forward_with_features(self, x):
        """(logits, the last backbone features): CDSP's LoRM reads the features."""
        feats = self.backbone.forward_features(x)
        low, high = self.skip(feats[1]), self.aspp(feats[-1])
        high = F.interpolate(high, low.shape[-2:], mode="bilinear", align_corners=False)
        return self.decoder(torch.cat([high, low], 1)), feats[-1]

    def heads(self):
        return [self.aspp, self.skip, self.decoder]


def build(params: dict) -> nn.Module:
    """The network described by params: arch (ARCHS), backbone, class_names, pretrained (ImageNet file).

    With ImageNet weights the BN layers stay fixed, statistics and scale / shift (batches of a few crops
    estimate them poorly; DeepLab-v2's prototxt: use_global_stats, scale lr_mult 0); from scratch they train."""
    arch = params.get("arch", PARAMS["arch"].default)
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")
    net = DeepLabV2 if arch == "deeplab_v2" else DeepLabV3Plus
    return net(backbone(params), len(params["class_names"]))


def backbone(params: dict):
    """The backbone of `params` (backbone, pretrained) laid out for its output stride (BACKBONE_LAYOUT: strides,
    atrous levels 3 and 4), BN statistics fixed with ImageNet weights (see build). Output stride 16 for
    DeepLab-v2 is a CPU setting (a 5x cheaper EfficientNet-Lite step at 128 px), not the paper's."""
    stride = params.get("output_stride") or ARCH_OUTPUT_STRIDE[params.get("arch", PARAMS["arch"].default)]
    if stride not in BACKBONE_LAYOUT:
        raise ValueError(f"output_stride must be 8 or 16, got {stride}")
    strides, (d3, d4) = BACKBONE_LAYOUT[stride]
    pretrained = params.get("pretrained")
    # EfficientNet-Lite without its head convolution, as DeepLab's MobileNetV2 (wsss/models/efficientnet_lite.py)
    net = make_backbone(params["backbone"], strides, pretrained, frozen_bn=pretrained is not None, head=False)
    for m in net.modules():
        if isinstance(m, FixedBatchNorm):
            m.requires_grad_(False)
    net.dilate(3, d3)
    net.dilate(4, d4)
    return net


def backbone_and_heads(model: nn.Module) -> tuple[list, list]:
    """(the network's parameters outside its heads, the heads' parameters)."""
    heads = [p for m in model.heads() for p in m.parameters()]
    head_ids = {id(p) for p in heads}
    return [p for p in model.parameters() if id(p) not in head_ids], heads


def param_groups(model: nn.Module, head_lr_mult: float = 10.0) -> list[tuple]:
    """wsss.training.fit groups [(parameters, lr multiplier, weight-decay multiplier)] of DeepLab-v2's
    released prototxt (as DSRG's train-s / train-f): backbone weights x1, backbone biases x2 without weight
    decay, new-layer weights x`head_lr_mult` (10), new-layer biases x2 that (20) without weight decay.
    Frozen parameters (fixed BN) are left out. Biases are the 1-d `bias` tensors of convolutions and
    linear layers; a trainable BN's scale and shift count as weights (x1 or x`head_lr_mult`, decayed)."""
    backbone, heads = backbone_and_heads(model)
    biases = {id(m.bias) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None}

    def select(params, bias: bool):
        return [p for p in params if p.requires_grad and (id(p) in biases) == bias]

    groups = [(select(backbone, False), 1.0, 1.0), (select(backbone, True), 2.0, 0.0),
              (select(heads, False), head_lr_mult, 1.0), (select(heads, True), 2 * head_lr_mult, 0.0)]
    return [g for g in groups if g[0]]  # e.g. the wsss ResNets' convolutions have no biases


def load_weights(model: nn.Module, path) -> int:
    """Initialises `model` from a saved wsss network ({"state_dict", ...}: a segmentation model, or a CAM
    network whose backbone has the same names): every tensor whose name and shape match is copied. The
    whole backbone must be covered. Returns the number of tensors copied."""
    state = read_checkpoint(path)["state_dict"]
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k.startswith("backbone.") and k not in matched]
    if missing:
        raise DataError(f"{path}: does not hold this backbone ({len(missing)} tensors missing or of another "
                        f"shape, e.g. {missing[0]})")
    model.load_state_dict({**own, **matched})
    return len(matched)


def load(path, device="cpu") -> nn.Module:
    """A trained segmentation network saved by train_seg / train_dsrg, in eval mode."""
    # the weights come from the checkpoint, not from the ImageNet file it started from
    return load_trained(path, lambda params: build({**params, "pretrained": None}), device)
