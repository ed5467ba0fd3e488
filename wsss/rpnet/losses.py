"""RPNet's loss (Eq. 11-13) as released (step/train_cam.py:87-116): for each image of a training group (the
image and its references), the multi-label soft-margin loss of its main-branch GAP logits plus lambda (10) x
the mean over N x C x H x W of the squared difference between its max-normalised main-branch and
region-branch CAMs, absent classes zeroed (so counted as zeros in the mean); the terms of the group's images
are summed (loss1 + loss2 + loss_x + loss_y).

The paper's Eq. 13 writes an MSE between the features f_N and f'_N = G(F-hat) f_N instead; it is minimised by
F-hat = 1 everywhere, i.e. by the region branch switching itself off, and it never reaches the non-local block
or the classifier, whereas the CAM MSE is what Fig. 2 describes ("uses the refined prediction to supervise the
training of the original prediction") and what produced the published numbers. Both branches get the
gradient, through the maxima too, as released.

One guard, for training from scratch (`peak_floor`, default 1; 0 turns it off): the loss values are the
release's, but the gradient of a map whose peak is below the floor is that of the map divided by the floor
(a detached floor: `normalise`). The release's max-normalisation makes the loss scale-invariant, so its gradient
grows as 1 / peak: from scratch a present class's CAM can be nearly dead, its noise is scaled up to [0, 1] and
its gradient spikes, which diverges training (measured in docs/diagnosis.md, issues 16 and 23). ImageNet
features give CAMs peaking above the floor, which are normalised and differentiated exactly as released."""
import torch
import torch.nn.functional as F

from wsss.rpnet.net import EPS  # the release's: relu(cam - 1e-5) / (max + 1e-5)


def rpnet_loss(net, batch, it, weight: float, peak_floor: float) -> torch.Tensor:
    """Eq. 11 as released. batch: "image" [B, 3, H, W], "tags" [B, C], "refs" [B, K, 3, H, W], "ref_tags"
    [B, K, C]; net: an RPNet (or RPNet under DDP: each rank's means, averaged by DDP, are the batch's)."""
    images = torch.cat([batch["image"][:, None], batch["refs"]], 1)
    tags = torch.cat([batch["tags"][:, None], batch["ref_tags"]], 1)
    logits, main, region = net(images)
    classification = sum(F.multilabel_soft_margin_loss(logits[:, g], tags[:, g]) for g in range(tags.shape[1]))
    return classification + weight * consistency(main, region, tags, peak_floor)


def normalise(cams: torch.Tensor, peak_floor: float) -> torch.Tensor:
    """The release's max-normalisation of ReLU'd CAMs [..., h, w], relu(cam - 1e-5) / (max + 1e-5), whose
    gradient, for a map peaking below `peak_floor`, is that of relu(cam - 1e-5) / (peak_floor + 1e-5)."""
    peak = cams.amax((-2, -1), keepdim=True)
    released = F.relu(cams - EPS) / (peak + EPS)
    if not peak_floor:
        return released
    floored = F.relu(cams - EPS) / (peak.clamp_min(peak_floor) + EPS)  # = released where peak >= floor
    return floored + (released - floored).detach()


def consistency(main: torch.Tensor, region: torch.Tensor, tags: torch.Tensor, peak_floor: float) -> torch.Tensor:
    """Sum over the group's images g of the mean over (N, C, h, w) of (n(main) tags - n(region) tags)^2, CAMs
    [N, G, C, h, w] (ReLU'd), tags [N, G, C], n = `normalise`."""
    present = tags[..., None, None]
    squared = (normalise(main, peak_floor) * present - normalise(region, peak_floor) * present) ** 2
    return squared.mean((0, 2, 3, 4)).sum()
