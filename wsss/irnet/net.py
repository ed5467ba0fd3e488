"""IRNet (Ahn et al., CVPR 2019, Sec. 4.1): a boundary branch and a displacement branch on a frozen ResNet.

Both branches read the five backbone levels (stride 4, 4, 8, 16, 16) and predict at stride 4. Every
convolution but the last of each branch is followed by GroupNorm and ReLU. Widths follow the released
ResNet-50 model (boundary: 32 per level; displacement: 64, 128, 256, 256, 256 and 256 in the top-down
path), capped at the backbone's own widths so a narrow backbone gets a proportionally narrow head.
"""

import torch
import torch.nn.functional as F
from torch import nn

from kernels import random_walk
from wsss.models import backbone as make_backbone, load_trained, read_checkpoint
from wsss.models.backbone import Backbone

EDGE_WIDTH = 32
DP_WIDTHS = (64, 128, 256, 256, 256)
DP_TOP_WIDTH = 256


def conv_gn_relu(c_in: int, c_out: int, upsample: int = 1) -> nn.Sequential:
    """1x1 conv, GroupNorm (the released group counts: c/8, at most 16), optional bilinear x`upsample`
    (before the ReLU, as released), ReLU."""
    layers = [nn.Conv2d(c_in, c_out, 1, bias=False), nn.GroupNorm(max(1, min(16, c_out // 8)), c_out)]
    if upsample > 1:
        layers.append(nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def crop_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Top-left crop to `ref`'s size: an upsampled coarse map can overhang when the size is not a multiple."""
    return x[..., :ref.shape[-2], :ref.shape[-1]]


class IRNet(nn.Module):
    """forward(x [B, 3, H, W]) -> (boundary logits [B, 1, h, w], displacement [B, 2, h, w]) with
    h, w = ceil(H / 4), ceil(W / 4); displacement channel 0 is y, 1 is x, in stride-4 pixels."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        if backbone.output_stride != 16:
            raise ValueError(f"IRNet needs an output-stride-16 backbone (strides (2, 2, 2, 1)), "
                             f"got {backbone.output_stride}")
        self.backbone = backbone.requires_grad_(False)  # Sec. 6.1: "The backbone of IRNet is frozen"
        ch = backbone.channels
        up = (1, 1, 2, 4, 4)  # level strides 4, 4, 8, 16, 16 -> stride 4
        self.edge = nn.ModuleList(conv_gn_relu(c, EDGE_WIDTH, u) for c, u in zip(ch, up))
        self.edge_out = nn.Conv2d(5 * EDGE_WIDTH, 1, 1, bias=True)

        dpw = [min(c, w) for c, w in zip(ch, DP_WIDTHS)]
        top = min(DP_TOP_WIDTH, max(ch))
        self.dp = nn.ModuleList(conv_gn_relu(c, w, u) for c, w, u in zip(ch, dpw, (1, 1, 1, 2, 2)))
        self.dp_top = conv_gn_relu(sum(dpw[2:]), top, upsample=2)  # merge at stride 8, then up to 4
        self.dp_out = nn.Sequential(conv_gn_relu(dpw[0] + dpw[1] + top, top), nn.Conv2d(top, 2, 1, bias=False))
        self.register_buffer("mean_displacement", torch.zeros(2))

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: its BatchNorm keeps its stored statistics
        return self

    def branch_parameters(self):
        """(boundary branch parameters, displacement branch parameters): the trainer gives the second
        group a 10x learning rate (Sec. 6.1: its gradients "are amplified by a factor of 10")."""
        return ([*self.edge.parameters(), *self.edge_out.parameters()],
                [*self.dp.parameters(), *self.dp_top.parameters(), *self.dp_out.parameters()])

    def forward(self, x):
        with torch.no_grad():
            feats = self.backbone.forward_features(x)
        e = [layer(f) for layer, f in zip(self.edge, feats)]
        edge = self.edge_out(torch.cat([e[0], e[1], *(crop_to(t, e[1]) for t in e[2:])], 1))

        d = [layer(f) for layer, f in zip(self.dp, feats)]
        top = crop_to(self.dp_top(torch.cat([d[2], crop_to(d[3], d[2]), crop_to(d[4], d[2])], 1)), d[1])
        disp = self.dp_out(torch.cat([d[0], d[1], top], 1))
        return edge, self._centre(disp)

    def _centre(self, disp):
        """Sec. 4.3: "Displacement vectors are then further refined by subtracting the mean of D". Inference
        subtracts `mean_displacement`, which train_irn measures in one pass after training (as released:
        step/train_irn.py; training itself never updates it)."""
        if self.training:
            return disp
        return disp - self.mean_displacement.view(1, 2, 1, 1)

    @torch.no_grad()
    def infer(self, image: torch.Tensor, pad_to: int = 0):
        """(boundary [h, w] in [0, 1], displacement [2, h, w]) for one normalised image [3, H, W], h, w =
        ceil(H / 4), ceil(W / 4): the boundary averages the logits of the image and of its mirror image, the
        displacement is the image's own (as released: a mirrored field would point the wrong way).

        Each input is zero-padded right and bottom to `pad_to` (the training crop) and the outputs cropped
        back, as released (net/resnet50_irn.py, EdgeDisplacement.forward): GroupNorm's statistics cover the
        whole map, so the branches see what they were trained on (padded crops)."""
        h, w = image.shape[-2:]
        pad = (0, max(pad_to - w, 0), 0, max(pad_to - h, 0))
        edge, disp = self(torch.stack([F.pad(image, pad), F.pad(image.flip(-1), pad)]))
        edge, disp = edge[..., :-(-h // 4), :-(-w // 4)], disp[..., :-(-h // 4), :-(-w // 4)]
        return torch.sigmoid((edge[0, 0] + edge[1, 0].flip(-1)) / 2), disp[0]


def build(backbone: str) -> IRNet:
    """An untrained IRNet on a randomly initialised `backbone` (the trainer loads its weights)."""
    return IRNet(make_backbone(backbone, strides=(2, 2, 2, 1), frozen_bn=True))


def load(path, device="cpu") -> tuple[IRNet, int]:
    """(the IRNet saved by train_irn ({"state_dict", "params", ...}) in eval mode, its training crop side:
    the `pad_to` of `infer`)."""
    params = read_checkpoint(path)["params"]
    return load_trained(path, lambda p: build(p["backbone"]), device), params["crop"]


def propagate(scores: torch.Tensor, boundary: torch.Tensor, input_size, image_size, beta: float, steps: int,
              radius: int) -> torch.Tensor:
    """Random walk of stride-4 score maps [C, h, w] within the boundaries [h, w] (Eq. 12-13: x0 = scores *
    (1 - B), T = S^-1 A^beta, t steps), upsampled x4 bilinearly and cropped to the `input_size` IRNet saw (as
    released: step/make_sem_seg_labels.py), resized to `image_size` if that differs (IRNet ran on a rescaled
    image), divided by the global maximum: [C, H, W] in [0, 1]."""
    up = to_image(random_walk(scores[None], boundary[None], radius=radius, beta=beta, steps=steps)[0],
                  input_size, image_size)
    return up / up.max().clamp_min(1e-5)  # the guard only matters for all-zero scores


def to_image(maps: torch.Tensor, input_size, image_size) -> torch.Tensor:
    """Stride-4 maps [C, h, w] upsampled x4 bilinearly, cropped to the `input_size` IRNet saw and resized to
    `image_size` if that differs: [C, H, W]."""
    up = F.interpolate(maps[None], scale_factor=4, mode="bilinear", align_corners=False)[..., :input_size[0],
                                                                                       :input_size[1]]
    if tuple(input_size) != tuple(image_size):
        up = F.interpolate(up, size=tuple(image_size), mode="bilinear", align_corners=False)
    return up[0]
