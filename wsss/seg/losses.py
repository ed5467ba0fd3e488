"""The loss of fully supervised training on pseudo-labels: cross-entropy with ignore."""
import torch
import torch.nn.functional as F

from wsss import distributed

IGNORE = 255


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels of the whole batch (all DDP ranks; 0 when none is
    labelled); logits [B, C, h, w] are upsampled (bilinear) to the label size [B, H, W] first, and label 255
    is ignored."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, labels.shape[-2:], mode="bilinear", align_corners=False)
    labelled = distributed.mean((labels != IGNORE).sum().to(logits.dtype))
    return F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum") / labelled.clamp_min(1)
