"""RPNet (Liu et al., "Cross-image region mining with region prototypical network for weakly supervised
segmentation"): the CAM network trained on pairs of images sharing a class, with a region branch that
re-weights the last features by their similarity to region prototypes of both images (Sec. III-D, Eq. 3-10).

Per training group (an image x and K references y sharing one of its classes, K = 1 in the paper):
- Eq. 3-4: each compared level n (`levels`, the release: layer2 and layer4) is unified by a 1x1 conv to
  `proto_channels` channels (ReLU'd, so max-normalising and cosines behave), u_n; O_n = u_n divided by its
  spatial max per channel; O'_n = max over channels.
- Eq. 5-6: mask M_n = [O'_n > alpha] (alpha 0.3); a prototype is the masked mean of u_n. Each image gives a
  full prototype and a "part" prototype whose mask is randomly discarded with keep probability `keep`
  (Bernoulli per position, 0.5; the release applies dropout to the mask in training). A mask left empty gives
  the zero prototype (the denominator is clamped at 1 pixel, never 0/0), whose cosine with anything is 0:
  since u_n >= 0 every cosine is >= 0, so a zero prototype is neutral in the max below.
  The mask is computed per level as Eq. 6 says (the release computes it on layer4 and reuses it for layer2).
- Eq. 7-8: F-hat of an image = max over levels and over all 2 (1 + K) prototypes of its group of the cosine
  of its u_n with the prototype, each level bilinearly resized to the last level's grid.
- Eq. 9-10: F-hat divided by its max, smoothed by a 5x5 Gaussian (sigma 3, normalised to sum 1, zero padding),
  multiplies the last backbone features; a non-local block (embedded dot product / N, W = 1x1 conv + BN
  initialised to zero so it starts as the identity) and the classifier shared with the main branch give
  the region-branch CAMs. (The release also scales F-hat by 1.3 after the max; not done here.)
- Eq. 11-13, as released: L = multi-label soft-margin loss of both images' main-branch GAP logits + lambda
  (10) x the mean squared difference between the max-normalised main-branch and region-branch CAMs of the
  present classes. The paper's Eq. 13 writes an MSE between the features f_N and f'_N = G(F-hat) f_N instead;
  it is minimised by F-hat = 1 everywhere, i.e. by the region branch switching itself off, and it never
  reaches the non-local block or the classifier, whereas the CAM MSE is what Fig. 2 describes ("uses the
  refined prediction to supervise the training of the original prediction") and what produced the published
  numbers. Both branches get the gradient, so the region branch trains through it. (The release also
  averages the region branch over four input scales, three without gradient; here one scale, for cost.)
  One departure: the loss divides each CAM by max(its peak, 1) (`PEAK_FLOOR`) where the release divides by
  peak + 1e-5. The max-normalised MSE is scale-invariant, so its gradient grows as 1 / peak: a present
  class whose CAM is nearly dead (peaks of 0.002-0.04 are common from scratch, never with the release's
  ImageNet weights) gets its noise scaled up to [0, 1] and a gradient spike (backbone gradient up to 16x
  the classification term's), which once blew up training on the photo set (loss 0.46 -> 20 in one step,
  docs/diagnosis.md). A CAM peaking at 1 or more (a pixel logit >= 1) is normalised exactly as released.

Inference is the main branch only (`cam`, `forward` inherited from CAMNet), so make_cam and everything
downstream read the same `cam/maps/<id>.npz` files whatever the method."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from wsss import distributed
from wsss.cam.net import CAMNet
from wsss.params import Param

# What the RPNet network and loss depend on, part of train_cam's PARAMS (ignored by method irnet).
PARAMS = {
    "method": Param(str, "irnet", "CAM network: irnet (plain CAM) | rpnet (region prototypes)"),
    "references": Param(int, 1, "rpnet: reference images per training image (RPNet Table VII: 1-4)"),
    "levels": Param(list, [2, 4], "rpnet: backbone layers whose features give prototypes (RPNet Table IV)"),
    "proto_channels": Param(int, 256, "rpnet: channels of the 1x1 conv unifying each level (RPNet Eq. 3)"),
    "alpha": Param(float, 0.3, "rpnet: foreground threshold of the normalised activation (RPNet Eq. 6)"),
    "keep": Param(float, 0.5, "rpnet: keep probability of the discarded mask (RPNet Eq. 6, Table V)"),
    "sigma": Param(float, 3.0, "rpnet: sigma of the 5x5 Gaussian smoothing F-hat (RPNet Eq. 9, Table VI)"),
    "consistency_weight": Param(float, 10.0, "rpnet: lambda of the consistency loss (RPNet Eq. 11)"),
}
NETWORK_KEYS = ("levels", "proto_channels", "alpha", "keep", "sigma")  # RPNet.__init__ arguments
GAUSSIAN_SIZE = 5  # RPNet Table VI / the release: 5x5
EPS = 1e-5  # max-normalisation of CAMs and F-hat (as make_cam)
PEAK_FLOOR = 1.0  # the loss never scales a CAM up: its divisor is max(peak, 1) (module docstring)
NORM_EPS = 1e-12  # F.normalize's: a zero feature vector has cosine 0 with every prototype


def masked_mean(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Eq. 5: prototypes [B, M, C] = sum(features * mask) / sum(mask) over the positions of features
    [B, C, h, w], for each of the 0/1 masks [B, M, h, w]; an empty mask gives the zero vector (its count is
    clamped to 1)."""
    total = torch.einsum("bchw,bmhw->bmc", features, masks)
    return total / masks.sum((2, 3)).clamp_min(1)[..., None]


def discard(mask: torch.Tensor, keep: float, generator=None) -> torch.Tensor:
    """Eq. 6: every position of a 0/1 mask kept with probability `keep` (Bernoulli), the rest set to 0."""
    draw = torch.rand(mask.shape, generator=generator, device=mask.device)
    return mask * (draw < keep).to(mask.dtype)


def gaussian_kernel(size: int = GAUSSIAN_SIZE, sigma: float = 3.0) -> torch.Tensor:
    """Eq. 9 on a size x size grid centred at 0, normalised to sum 1: [size, size]."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2)) / (2 * math.pi * sigma ** 2)
    return (g / g.sum()).float()


def max_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each [h, w] map of [B, C, h, w] divided by its own max."""
    return maps / (maps.amax((2, 3), keepdim=True) + EPS)


class NonLocal(nn.Module):
    """Non-local block (Wang et al. 2018), embedded dot product divided by the number of positions; the
    output transform W ends in a BN initialised to zero, so the block starts as the identity."""

    def __init__(self, channels: int):
        super().__init__()
        inner = channels // 2
        self.theta, self.phi, self.g = (nn.Conv2d(channels, inner, 1) for _ in range(3))
        self.w = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.w[1].weight)

    def forward(self, x):
        b, _, h, w = x.shape
        theta, phi, g = (f(x).flatten(2) for f in (self.theta, self.phi, self.g))  # [B, C', N]
        affinity = torch.einsum("bci,bcj->bij", theta, phi) / (h * w)
        y = torch.einsum("bij,bcj->bci", affinity, g).reshape(b, -1, h, w)
        return x + self.w(y)


class RPNet(CAMNet):
    """CAMNet plus the region branch used in training (`pair_forward`)."""

    def __init__(self, backbone: nn.Module, n_classes: int, frozen_levels: int = 0, levels=(2, 4),
                 proto_channels: int = 256, alpha: float = 0.3, keep: float = 0.5, sigma: float = 3.0):
        super().__init__(backbone, n_classes, frozen_levels)
        if not levels or any(not 1 <= n <= 4 for n in levels):
            raise ValueError(f"levels must be backbone layers 1..4, got {levels}")
        self.levels, self.alpha, self.keep = list(levels), alpha, keep
        self.unify = nn.ModuleList(nn.Conv2d(backbone.channels[n], proto_channels, 1) for n in self.levels)
        self.register_buffer("gaussian", gaussian_kernel(GAUSSIAN_SIZE, sigma)[None, None], persistent=False)
        self.non_local = NonLocal(backbone.channels[-1])

    def param_groups(self):
        backbone, classifier = super().param_groups()
        return backbone, classifier + [p for m in (self.unify, self.non_local) for p in m.parameters()]

    def forward(self, x):
        """[B, 3, H, W] -> class logits (CAMNet); a training group batch [B, 1 + K, 3, H, W] -> `pair_forward`
        (through forward, so that DDP synchronises its gradients)."""
        return self.pair_forward(x) if x.dim() == 5 else super().forward(x)

    def pair_forward(self, images: torch.Tensor):
        """images [B, 1 + K, 3, H, W] (each image with its K references) -> (main logits, main CAMs,
        region CAMs), each over the B (1 + K) images in that order: [B(1+K), C], [B(1+K), C, h, w] x 2."""
        group = images.shape[1]
        flat = images.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        feats = self.backbone.forward_features(flat, self.frozen_levels)
        last = feats[-1]
        main_cams = F.conv2d(last, self.classifier.weight)
        logits = main_cams.mean((2, 3))  # = classifier(GAP(features)): the classifier is linear
        fg = self.foreground(feats, group)
        fg = F.conv2d(fg / (fg.amax((2, 3), keepdim=True) + EPS), self.gaussian, padding=GAUSSIAN_SIZE // 2)
        region = self.non_local(last * fg)  # Eq. 10, then the non-local block
        return logits, F.relu(main_cams), F.relu(F.conv2d(region, self.classifier.weight))

    def foreground(self, feats, group: int) -> torch.Tensor:
        """Eq. 3-8: F-hat [B(1+K), 1, h, w] on the last level's grid, each image compared with the full and
        discarded prototypes of every image of its group."""
        size = feats[-1].shape[2:]
        best = None
        for n, unify in zip(self.levels, self.unify):
            u = F.relu(unify(feats[n]))  # Eq. 3
            with torch.no_grad():  # a threshold: no gradient
                confident = (max_normalise(u).amax(1) > self.alpha).to(u.dtype)  # Eq. 4, 6
                part = discard(confident, self.keep) if self.training else confident
            protos = masked_mean(u, torch.stack([confident, part], 1))  # Eq. 5: [BG, 2, D], full and part
            protos = protos.unflatten(0, (-1, group)).flatten(1, 2)  # [B, 2G, D]: the group's prototypes
            protos = F.normalize(protos, dim=2).repeat_interleave(group, 0)  # one copy per group member
            # Eq. 7, the pixel norms divided out after the product (cheaper than normalising u)
            dots = torch.einsum("bdhw,bmd->bmhw", u, protos).amax(1, keepdim=True)
            cosine = dots / u.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
            level = F.interpolate(cosine, size, mode="bilinear", align_corners=False)
            best = level if best is None else torch.maximum(best, level)  # Eq. 8
        return best


def rpnet_loss(net, batch, it, weight: float):
    """Eq. 11-13 as released (module docstring): soft-margin loss of all images' main-branch logits plus
    `weight` x the mean squared difference of the max-normalised main and region CAMs of present classes.

    batch: "image" [B, 3, H, W], "tags" [B, C], "refs" [B, K, 3, H, W], "ref_tags" [B, K, C]."""
    images = torch.cat([batch["image"][:, None], batch["refs"]], 1)
    tags = torch.cat([batch["tags"][:, None], batch["ref_tags"]], 1).flatten(0, 1)
    logits, main, region = net(images)
    return F.multilabel_soft_margin_loss(logits, tags) + weight * consistency(main, region, tags)


def consistency(main: torch.Tensor, region: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the main and region CAMs [B, C, h, w] of the present classes (tags
    [B, C]), each map divided by max(its peak, PEAK_FLOOR) (module docstring: why not by its peak)."""
    def normalise(maps):
        return maps / maps.amax((2, 3), keepdim=True).clamp_min(PEAK_FLOOR)

    squared = (normalise(main) - normalise(region)) ** 2 * tags[:, :, None, None]
    return squared.sum() / distributed.mean(tags.sum() * squared.shape[2] * squared.shape[3])
