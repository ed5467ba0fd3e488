"""The loss of fully supervised training on pseudo-labels: cross-entropy with ignore."""
import torch
import torch.nn.functional as F

from wsss import distributed

IGNORE = 255


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels of the whole batch (all DDP ranks; 0 when none is
    labelled); logits [B, C, h, w] are upsampled (bilinear) to the label size [B, H, W] first, and label 255
    is ignored. smoothing eps: (1 - eps) CE(y, p) + eps CE(1/C, p) (CDSP Eq. 9, label smoothing)."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, labels.shape[-2:], mode="bilinear", align_corners=False)
    labelled = distributed.mean((labels != IGNORE).sum().to(logits.dtype))
    total = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum", label_smoothing=smoothing)
    return total / labelled.clamp_min(1)
