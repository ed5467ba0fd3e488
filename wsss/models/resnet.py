"""In-project ResNets (torchvision has no CPU build here) with torchvision's module names, so a
torchvision-format ImageNet state dict loads as-is.

`strides` = (conv1, layer2, layer3, layer4) as in IRNet's net/resnet50.py; the max-pool always halves and
layer1 keeps the size, so IRNet's (2, 2, 2, 1) gives output stride 16 (IRNet Sec. 3: "reduce the stride of
its last downsampling layer from 2 to 1"). The last stride is reduced without dilation, as IRNet does.
`forward_features` returns the five levels IRNet's branches read (IRNet Sec. 4.1 and footnote 1); the interface
every backbone shares is wsss/models/backbone.py."""

from torch import nn

from wsss.models.backbone import Backbone, FixedBatchNorm, load_state

# name -> (block, blocks per layer, widths of layer1..4 before expansion, stem width)
ARCHITECTURES = {
    "resnet50": ("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 64),
    "resnet101": ("bottleneck", (3, 4, 23, 3), (64, 128, 256, 512), 64),
    "resnext50": ("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 64),  # torchvision resnext50_32x4d
    "resnext101": ("bottleneck", (3, 4, 23, 3), (64, 128, 256, 512), 64),  # torchvision resnext101_32x8d
    # the CPU demo: narrow basic blocks, trained from scratch on a few hundred 128 px images
    "small": ("basic", (1, 1, 1, 1), (32, 64, 96, 128), 32),
}
# ResNeXt (Xie et al. 2017; RPNet's release uses resnext101): name -> (groups, width per group) of the 3x3 convs
GROUPS = {"resnext50": (32, 4), "resnext101": (32, 8)}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, downsample, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """torchvision's (and IRNet's) ResNet v1.5 bottleneck: the stride sits on the 3x3 convolution. ResNeXt:
    the 3x3 convolution has `groups` groups of `base_width` / 64 * planes channels (torchvision's formula)."""
    expansion = 4

    def __init__(self, inplanes, planes, stride, downsample, norm, groups=1, base_width=64):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = norm(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = norm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(Backbone):
    def __init__(self, block, layers, widths, stem, strides, norm, **block_options):
        super().__init__()
        self.block_options = block_options  # ResNeXt: groups, base_width
        if len(strides) != 4:
            raise ValueError(f"strides must be 4 ints (conv1, layer2, layer3, layer4), got {strides}")
        self.conv1 = nn.Conv2d(3, stem, 7, strides[0], 3, bias=False)
        self.bn1 = norm(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.inplanes = stem
        layer_strides = (1, *strides[1:])
        for i, (n, width, stride) in enumerate(zip(layers, widths, layer_strides), 1):
            setattr(self, f"layer{i}", self._make_layer(block, width, n, stride, norm))
        self.channels = (stem, *(w * block.expansion for w in widths))
        self.output_stride = strides[0] * 2 * strides[1] * strides[2] * strides[3]
        self._init_weights()

    def _make_layer(self, block, planes, n, stride, norm):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       norm(planes * block.expansion))
        blocks = [block(self.inplanes, planes, stride, downsample, norm, **self.block_options)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes, 1, None, norm, **self.block_options) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def _init_weights(self):
        """torchvision's initialisation (He normal for convolutions, unit BN), for training from scratch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def levels(self):
        """The five feature levels as callables: stem (to stride 4), layer1, ..., layer4."""
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def level_parameters(self, level: int):
        """Parameters of feature level `level` (0 = stem, i = layer{i})."""
        names = ("conv1", "bn1") if level == 0 else (f"layer{level}",)
        return [p for name in names for p in getattr(self, name).parameters()]

    def dilate(self, level: int, dilation: int):
        """Atrous 3x3 convolutions in layer `level` (whose stride `strides` removed; DeepLab-v2 Sec. 3.1)."""
        dilate_layer(getattr(self, f"layer{level}"), dilation)


def dilate_layer(layer: nn.Sequential, dilation: int):
    """Sets the dilation (and the padding keeping the size) of every 3x3 convolution of a ResNet layer,
    the atrous form of a layer whose stride was removed (DeepLab-v2 Sec. 3.1)."""
    for block in layer:
        convs = [block.conv2] if isinstance(block, Bottleneck) else [block.conv1, block.conv2]
        for conv in convs:
            conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)


def resnet(name: str, strides=(2, 2, 2, 1), pretrained: str | None = None, frozen_bn: bool = False) -> ResNet:
    """A ResNet by name ("resnet50", "resnet101", "resnext50", "resnext101" or "small"), optionally with
    torchvision-format weights from the local file `pretrained`; `frozen_bn` uses IRNet's FixedBatchNorm (stored
    statistics)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(ARCHITECTURES)}")
    kind, layers, widths, stem = ARCHITECTURES[name]
    block = Bottleneck if kind == "bottleneck" else BasicBlock
    groups = dict(zip(("groups", "base_width"), GROUPS[name])) if name in GROUPS else {}
    model = ResNet(block, layers, widths, stem, tuple(strides), FixedBatchNorm if frozen_bn else nn.BatchNorm2d,
                   **groups)
    model.name = name
    if pretrained is not None:
        load_state(model, pretrained)
    return model
