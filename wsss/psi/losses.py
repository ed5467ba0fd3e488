"""PSI's objectives (Sec. 4): L_seg (Eq. 10-11) for the segmentation network, L_sld (Eq. 12) for the
label-diffusion network g(. | theta)."""
import torch
import torch.nn.functional as F

from wsss.psi.sld import IGNORE, binarisation_logits, one_hot
from wsss.seg.losses import cross_entropy

# the four offsets that, with their opposites, make the 8-neighbourhood
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


def smoothness(probs: torch.Tensor) -> torch.Tensor:
    """L_p of Eq. 11 on probs [B, C, H, W]: "for each location, the mean L1 distance between the prediction and
    its 8-neighbours", "averaged over all positions". The L1 distance of two predictions is that of their
    class vectors, sum_c |M(c, i) - M(c, j)| (2 between two different one-hot labels, whatever C); the mean
    is over the neighbours j inside the map (3 at a corner, 5 on an edge, 8 inside). Taken on the softmax, as
    argmax has no gradient."""
    H, W = probs.shape[-2:]
    total = probs.new_zeros(probs.shape[0], H, W)
    count = probs.new_zeros(H, W)
    for dy, dx in _OFFSETS:  # each unordered pair once, credited to both of its positions
        rows_a, rows_b = slice(dy, H), slice(0, H - dy)
        cols_a, cols_b = slice(max(dx, 0), W + min(dx, 0)), slice(max(-dx, 0), W - max(dx, 0))
        d = (probs[..., rows_a, cols_a] - probs[..., rows_b, cols_b]).abs().sum(1)
        total[:, rows_a, cols_a] += d
        total[:, rows_b, cols_b] += d
        count[rows_a, cols_a] += 1
        count[rows_b, cols_b] += 1
    return (total / count.clamp_min(1)).mean()


def seg_loss(logits: torch.Tensor, labels: torch.Tensor, lambda_1: float) -> torch.Tensor:
    """Eq. 11 on M_t, the prediction at the labels' (image) size, as DeepLab-v3+ predicts it (logits
    upsampled bilinearly): cross-entropy over the labelled pixels of y_R_t (Eq. 10) + lambda_1 L_p."""
    logits = F.interpolate(logits, labels.shape[-2:], mode="bilinear", align_corners=False)
    loss = cross_entropy(logits, labels)
    return loss + lambda_1 * smoothness(F.softmax(logits, 1)) if lambda_1 else loss


def sld_loss(conf: torch.Tensor, gamma: torch.Tensor, k: float, scribbles: torch.Tensor, omega: torch.Tensor,
             present: torch.Tensor, lambda_2: float) -> torch.Tensor:
    """Eq. 12: L_ce(y_B, y_R0) + lambda_2 L_ce(y_seg, y_B), with y_B = B(M, theta) of Eq. 9.

    B is one sigmoid per class (Eq. 9 normalises nothing across classes), so L_ce here is the mean binary
    cross-entropy of B(c, i) against a one-hot target over the classes c of the scribbles: the first term
    over the scribble pixels R_0 (target y_R0), the second over Omega_{c,r} (target y_seg = argmax M). The
    second term is read with B as the prediction and y_seg as the target: Theta is fixed, and the log of
    a hard argmax has no value to learn from."""
    z = binarisation_logits(conf, gamma, k)
    n_classes = conf.shape[1]
    present = present[..., None, None].expand_as(z)
    on_scribble = (scribbles != IGNORE)[:, None].expand_as(z) & present
    seg_target = one_hot(conf.argmax(1), n_classes).to(z.dtype)
    return (_masked_bce(z, one_hot(scribbles, n_classes).to(z.dtype), on_scribble)
            + lambda_2 * _masked_bce(z, seg_target, omega & present))


def _masked_bce(z, target, mask):
    loss = F.binary_cross_entropy_with_logits(z, target, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp_min(1)
