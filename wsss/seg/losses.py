"""The loss of fully supervised training on pseudo-labels: cross-entropy with ignore; labels sampled onto a
network's output grid."""
import torch
import torch.nn.functional as F

from wsss import IGNORE, distributed


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels of the whole batch (all DDP ranks; 0 when none is
    labelled); logits [B, C, h, w] are upsampled (bilinear) to the label size [B, H, W] first, and label 255
    is ignored. smoothing eps: (1 - eps) CE(y, p) + eps CE(1/C, p) (CDSP Eq. 9, label smoothing)."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, labels.shape[-2:], mode="bilinear", align_corners=False)
    labelled = distributed.mean((labels != IGNORE).sum().to(logits.dtype))
    total = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum", label_smoothing=smoothing)
    return total / labelled.clamp_min(1)


def grid_labels(labels: torch.Tensor, size, stride: int) -> torch.Tensor:
    """[B, H, W] label maps sampled onto a stride-`stride` output grid of `size` (h, w): cell (i, j) takes pixel
    (stride * i, stride * j), the cell's own position (0, 8, ..., 320 for a 321 input at stride 8), as the
    released DSRG layers (train-f.prototxt: Interp shrink_factor 8). A grid reaching past the map is an error."""
    h, w = size
    if (h - 1) * stride >= labels.shape[-2] or (w - 1) * stride >= labels.shape[-1]:
        raise ValueError(f"a {h}x{w} grid at stride {stride} does not fit {tuple(labels.shape[-2:])} labels")
    return labels[..., :h * stride:stride, :w * stride:stride]
