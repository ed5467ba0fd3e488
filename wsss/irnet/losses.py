"""IRNet's losses (Sec. 4.2-4.4): the boundary loss on line-max affinities (Eq. 7-8), the displacement
losses (Eq. 5-6) and their sum (Eq. 9), normalised by pair counts over the whole batch (all DDP ranks)."""
import torch

from kernels import line_max_affinity
from wsss import distributed
from wsss.irnet import relations

EPS = 1e-5  # the released code's guard inside the logarithms and the pair-count divisions


def losses(edge: torch.Tensor, disp: torch.Tensor, label: torch.Tensor, radius: int,
           window: str = "release") -> dict[str, torch.Tensor]:
    """The five loss terms of one batch: boundary logits [B, 1, h, w], displacement [B, 2, h, w], IR labels
    [B, h, w] at stride 4; pairs from the source `window` (relations.source_window)."""
    pairs = relations.pair_sets(label, radius, window)
    affinity = line_max_affinity(torch.sigmoid(edge[:, 0]), radius)  # Eq. 7
    return {**boundary_losses(affinity, pairs), **displacement_losses(disp, pairs, radius)}


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` over the whole batch (all DDP ranks, wsss.distributed.mean)."""
    return (values * mask).sum() / (distributed.mean(mask.sum()) + EPS)


def boundary_losses(affinity: torch.Tensor, pairs: dict) -> dict[str, torch.Tensor]:
    """Eq. 8's three cross-entropy terms, each normalised by its own pair count: same-class pairs want
    affinity 1 (no boundary on the line between them), different-class pairs want 0."""
    return {"aff_fg": masked_mean(-torch.log(affinity + EPS), pairs["fg_pos"]),
            "aff_bg": masked_mean(-torch.log(affinity + EPS), pairs["bg_pos"]),
            "aff_neg": masked_mean(-torch.log(1 + EPS - affinity), pairs["neg"])}


def displacement_losses(disp: torch.Tensor, pairs: dict, radius: int) -> dict[str, torch.Tensor]:
    """Eq. 5 (foreground pairs: D(x_i) - D(x_j) should equal x_j - x_i) and Eq. 6 (background pairs: no
    difference), L1 averaged over the two components as released."""
    delta = relations.pair_differences(disp, radius)
    target = relations.pair_offsets(radius, disp.device)
    return {"dp_fg": masked_mean((delta - target).abs().mean(1), pairs["fg_pos"]),
            "dp_bg": masked_mean(delta.abs().mean(1), pairs["bg_pos"])}


def total_loss(parts: dict) -> torch.Tensor:
    """Eq. 9 with L^B as in Eq. 8 (positive terms halved); the whole is halved as released, the scale
    the released learning rate 0.1 goes with."""
    boundary = parts["aff_fg"] / 2 + parts["aff_bg"] / 2 + parts["aff_neg"]
    return (boundary + parts["dp_fg"] + parts["dp_bg"]) / 2
