"""RPNet's network (Liu et al., "Cross-image region mining with region prototypical network for weakly
supervised segmentation", Sec. III-D, Eq. 3-10), as released (net/resnet50_cam.py class Net / Net_CAM):
the CAM network's main branch (wsss/cam/net.py CAMNet with `neck_channels`), trained together with a region
branch that re-weights its features by their similarity to region prototypes of a group of images sharing a
class. Only the main branch is saved and used at inference.

Per training group (an image x and K references y sharing one of its classes; the release: K = 1):
- Main branch (release `downsample`, `self_atten_x`, `classifierx`): the last backbone level reduced by a 1x1
  conv (2048 -> 512, no bias, no ReLU), a non-local block, the classifier; its CAMs give the GAP logits.
  The references go through their own non-local block and classifier (`self_atten_y`, `classifiery`); the
  reduce conv and the backbone are shared.
- Eq. 4, 6: mask = max over channels of [f / (spatial max of f + 1e-5) >= alpha] (alpha 0.3), f the reduced
  last level, computed once there and reused at every compared level (the release's stage-4 mask at stage 2).
- Eq. 5: prototype = masked mean, sum(f M) / (sum(M) + 5e-4); a "part" prototype from the mask with each
  position kept with probability `keep` (the release: dropout(mask, 0.5) / max, in training and evaluation
  alike; here a Bernoulli mask, which is the same draw without the 0 / 0 of an all-dropped batch).
- Eq. 7-8: F-hat of an image = max over `levels` and over the 2 (1 + K) prototypes of its group of the cosine
  of its features with the prototype (in [-1, 1]: the reduced features are not ReLU'd). The last level is
  the reduced one; an earlier level (the release: layer2) is compared raw, bilinearly resized (corners
  aligned, the release's upsample_bilinear) to the last level's grid.
- Eq. 9-10: F-hat divided by its max (+1e-5), times 1.3 (release), smoothed by a 5x5 Gaussian (sigma 3,
  normalised to sum 1, zero padding), multiplies the reduced features; a non-local block of the region
  branch (`cross_atten_x` / `_y`) and the member's classifier give the region CAMs.
- Scales (release Net_CAM): the region CAMs are the mean of the ReLU'd region CAMs of the group at scale 1
  and, without gradient, at `region_scales` (0.5, 1.5, 2.0), each resized to scale 1's grid.
The paper's Eq. 3 unifies every level by a 256-channel conv and Eq. 7 compares prototypes with the last level
only; the release (followed) compares each level's prototypes with that level's features, and its only
"unifying" conv is the main branch's reduce conv. The loss: wsss/rpnet/losses.py."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from wsss.cam.net import CAMNet, NonLocal
from wsss.params import Param

# What the RPNet network and loss depend on, part of train_cam's PARAMS (ignored by method irnet); the
# workflow's cam.rpnet keys beside the schedule (wsss/pipeline/plan.py train_cam_values passes them on).
PARAMS = {
    "references": Param(int, 1, "rpnet: reference images per training image (RPNet Table VII: 1-4; release 1)"),
    "levels": Param(list, [2, 4], "rpnet: backbone levels whose features give prototypes (RPNet Table IV; "
                                  "the last is the reduced one)"),
    "alpha": Param(float, 0.3, "rpnet: foreground threshold of the normalised activation (RPNet Eq. 6)"),
    "keep": Param(float, 0.5, "rpnet: keep probability of the discarded mask (RPNet Eq. 6, Table V)"),
    "sigma": Param(float, 3.0, "rpnet: sigma of the 5x5 Gaussian smoothing F-hat (RPNet Eq. 9, Table VI)"),
    "region_scales": Param(list, [0.5, 1.5, 2.0], "rpnet: scales besides 1 at which the region branch also "
                                                  "runs, without gradient (release Net_CAM)"),
    "consistency_weight": Param(float, 10.0, "rpnet: lambda of the consistency loss (RPNet Eq. 11)"),
    "peak_floor": Param(float, 1.0, "rpnet: the consistency's gradient divides a CAM peaking below this by it "
                                    "(values as released; wsss/rpnet/losses.py); 0: the release's gradient"),
}
NETWORK_KEYS = ("levels", "alpha", "keep", "sigma", "region_scales")  # RPNet.__init__ arguments
GAUSSIAN_SIZE = 5  # RPNet Table VI / the release: 5x5
EPS = 1e-5  # the release's max-normalisations (as make_cam's)
AREA_EPS = 5e-4  # the release's prototype denominator (cal_cos_vector)
FG_SCALE = 1.3  # the release multiplies the max-normalised F-hat by 1.3 (not in the paper)
NORM_EPS = 1e-12  # F.normalize's: a zero feature vector has cosine 0 with every prototype


def masked_mean(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Eq. 5 as released: prototypes [B, M, C] = sum(features * mask) / (sum(mask) + 5e-4) over the positions
    of features [B, C, h, w], for each of the 0/1 masks [B, M, h, w]; an empty mask gives the zero vector."""
    total = torch.einsum("bchw,bmhw->bmc", features, masks)
    return total / (masks.sum((2, 3)) + AREA_EPS)[..., None]


def discard(mask: torch.Tensor, keep: float, generator=None) -> torch.Tensor:
    """Eq. 6: every position of a 0/1 mask kept with probability `keep` (Bernoulli), the rest set to 0."""
    draw = torch.rand(mask.shape, generator=generator, device=mask.device)
    return mask * (draw < keep).to(mask.dtype)


def gaussian_kernel(size: int = GAUSSIAN_SIZE, sigma: float = 3.0, dtype=torch.float32, device=None) -> torch.Tensor:
    """Eq. 9 on a size x size grid centred at 0, normalised to sum 1: [size, size]."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2)) / (2 * math.pi * sigma ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def max_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each [h, w] map of [..., h, w] divided by its own max (+1e-5)."""
    return maps / (maps.amax((-2, -1), keepdim=True) + EPS)


class RPNet(nn.Module):
    """The main branch `main` (a CAMNet, the saved and inferred network) plus the region branch and the
    references' modules used in training. forward: a group batch [B, 1 + K, 3, H, W] -> (logits [B, G, C],
    main CAMs [B, G, C, h, w], region CAMs [B, G, C, h, w]), G = 1 + K, CAMs ReLU'd."""

    def __init__(self, main: CAMNet, levels=(2, 4), alpha: float = 0.3, keep: float = 0.5, sigma: float = 3.0,
                 region_scales=(0.5, 1.5, 2.0)):
        super().__init__()
        n_levels = len(main.backbone.channels)
        if not levels or any(not 1 <= n < n_levels for n in levels):
            raise ValueError(f"levels must be backbone levels 1..{n_levels - 1}, got {levels}")
        self.main, self.levels, self.alpha, self.keep, self.sigma = main, list(levels), alpha, keep, sigma
        self.region_scales = list(region_scales)
        channels, n_classes = main.classifier.in_channels, main.classifier.out_channels
        self.ref_context = NonLocal(channels) if isinstance(main.context, NonLocal) else nn.Identity()
        self.ref_classifier = nn.Conv2d(channels, n_classes, 1, bias=False)
        self.region_context, self.ref_region_context = NonLocal(channels), NonLocal(channels)

    def param_groups(self):
        backbone, new = self.main.param_groups()
        extra = (self.ref_context, self.ref_classifier, self.region_context, self.ref_region_context)
        return backbone, new + [p for m in extra for p in m.parameters()]

    def forward(self, images: torch.Tensor):
        logits, main_cams, region = self.branches(images)
        region = F.relu(region)
        if self.region_scales:
            with torch.no_grad():
                others = sum(self.region_at(images, s, region.shape[-2:]) for s in self.region_scales)
            region = (region + others) / (1 + len(self.region_scales))
        return logits, F.relu(main_cams), region

    def region_at(self, images: torch.Tensor, scale: float, size) -> torch.Tensor:
        """The ReLU'd region CAMs of the group batch rescaled by `scale` (bilinear, sides int(side x scale)),
        resized (bilinear) to `size`: [B, G, C, *size]."""
        (h, w), group = images.shape[-2:], images.shape[:2]
        scaled = F.interpolate(images.flatten(0, 1), (int(h * scale), int(w * scale)), mode="bilinear",
                               align_corners=False)
        cams = self.branches(scaled.unflatten(0, group))[2].flatten(0, 1)
        return F.relu(F.interpolate(cams, size, mode="bilinear", align_corners=False)).unflatten(0, group)

    def branches(self, images: torch.Tensor):
        """One scale: (logits [B, G, C], main CAMs, region CAMs [B, G, C, h, w], both before the ReLU)."""
        group = images.shape[1]
        flat = images.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        feats = self.main.backbone.forward_features(flat, self.main.frozen_levels)
        reduced = self.main.reduce(feats[-1])
        main_cams = self.per_member(reduced, group, (self.main.context, self.main.classifier),
                                    (self.ref_context, self.ref_classifier))
        logits = main_cams.mean((-2, -1))  # = classifier(GAP(features)): the classifier is linear
        fg = self.foreground(feats, reduced, group)
        kernel = gaussian_kernel(GAUSSIAN_SIZE, self.sigma, fg.dtype, fg.device)[None, None]
        fg = F.conv2d(max_normalise(fg) * FG_SCALE, kernel, padding=GAUSSIAN_SIZE // 2)  # Eq. 9
        region = self.per_member(reduced * fg, group, (self.region_context, self.main.classifier),  # Eq. 10
                                 (self.ref_region_context, self.ref_classifier))
        return logits, main_cams, region

    @staticmethod
    def per_member(x: torch.Tensor, group: int, first, others) -> torch.Tensor:
        """x [B G, D, h, w] -> [B, G, C, h, w]: member 0 of each group through the modules `first` in turn, the
        references through `others` (the release's separate x and y modules)."""
        x = x.unflatten(0, (-1, group))
        head = x[:, 0]
        for module in first:
            head = module(head)
        if group == 1:
            return head[:, None]
        rest = x[:, 1:].flatten(0, 1)
        for module in others:
            rest = module(rest)
        return torch.cat([head[:, None], rest.unflatten(0, (-1, group - 1))], 1)

    def foreground(self, feats, reduced: torch.Tensor, group: int) -> torch.Tensor:
        """Eq. 4-8: F-hat [B G, 1, h, w] on the reduced last level's grid, each image compared with the full
        and discarded prototypes of every image of its group, at every level of `levels`."""
        size = reduced.shape[-2:]
        with torch.no_grad():  # a threshold: no gradient
            confident = (max_normalise(reduced) >= self.alpha).any(1, keepdim=True).to(reduced.dtype)  # Eq. 4, 6
            masks = torch.cat([confident, discard(confident, self.keep)], 1)  # full and part, [BG, 2, h, w]
        best = None
        for n in self.levels:
            u = reduced if n == len(feats) - 1 else F.interpolate(feats[n], size, mode="bilinear", align_corners=True)
            protos = masked_mean(u, masks).unflatten(0, (-1, group)).flatten(1, 2)  # Eq. 5: [B, 2G, D]
            protos = F.normalize(protos, dim=2).repeat_interleave(group, 0)  # one copy per group member
            # Eq. 7, the pixel norms divided out after the product (cheaper than normalising u)
            dots = torch.einsum("bdhw,bmd->bmhw", u, protos).amax(1, keepdim=True)
            level = dots / u.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
            best = level if best is None else torch.maximum(best, level)  # Eq. 8
        return best
