"""CDSP's losses besides the two cross-entropies (wsss.seg.losses.cross_entropy: partial CE on the scribbles,
Eq. 8, and label-smoothed CE on the pseudo-label, Eq. 9): the localization rectification module (LoRM,
Eq. 10-13) and the distance entropy loss (DEL, Eq. 15, 17, 18)."""
import torch
import torch.nn.functional as F
from torch import nn

from wsss import distributed

IGNORE = 255


def distance_entropy(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 15 / 17 with the release's sign: mean over the pixels of non-zero weight d of -d * sum_c p log p,
    i.e. entropy weighted by d, minimised (the paper's equations omit the minus). logits [B, C, h, w] are
    upsampled (bilinear) to the weights' size [B, H, W] (weights in [0, 1]: the stored maps / 255)."""
    if logits.shape[-2:] != weights.shape[-2:]:
        logits = F.interpolate(logits, weights.shape[-2:], mode="bilinear", align_corners=False)
    log_p = F.log_softmax(logits, 1)
    entropy = -(log_p.exp() * log_p).sum(1)
    count = distributed.mean((weights != 0).sum().to(logits.dtype))
    return (weights * entropy).sum() / count.clamp_min(1)


def foreground_rows(pseudo: torch.Tensor, size) -> torch.Tensor:
    """float [B, h*w] LoRM's row mask M (Eq. 11): 1 where the pseudo-label foreground (not 0, not 255),
    bilinearly resized to the feature grid, is positive (the release resizes the label indices with 255 set
    to 0; the same set). A new tensor: the label is not modified."""
    fg = ((pseudo != 0) & (pseudo != IGNORE)).to(torch.float32)[:, None]
    fg = F.interpolate(fg, size, mode="bilinear", align_corners=True)
    return (fg > 0).flatten(1).to(pseudo.device)


class LoRM(nn.Module):
    """Localization rectification (Eq. 10-13): A = row-softmax of cosine similarities of Q = W_q F and
    K = W_k F (1x1 convolutions, no temperature); A' = M * A (rows of background queries zeroed);
    F-hat = delta * A' F (delta learnable, init 1); loss = sum((F - F-hat)^2) / count_nonzero, as released.
    F-hat only feeds the loss.

    `forward` never builds the HW x HW matrix: A F is torch's fused attention on L2-normalised Q, K with
    scale 1 (flash attention on CPU and GPU), and the row mask multiplies its output rows, which equals
    masking A's rows. `dense` is the release's HW x HW computation (reference and memory baseline)."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, channels, 1)
        self.key = nn.Conv2d(channels, channels, 1)
        self.delta = nn.Parameter(torch.ones(1))
        for conv in (self.query, self.key):  # the release's xavier initialisation
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        q, k, v, rows = self._inputs(features, pseudo)
        attended = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=1.0)[:, 0]
        return self._loss(v, attended * (self.delta * rows[..., None]))  # one [B, HW, C] product

    def dense(self, features: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        q, k, v, rows = self._inputs(features, pseudo)
        attention = torch.softmax(q @ k.transpose(1, 2), -1)  # [B, HW, HW], Eq. 10
        return self._loss(v, self.delta * ((rows[..., None] * attention) @ v))  # Eq. 11-12

    def _inputs(self, features, pseudo):
        """[B, HW, C] L2-normalised queries and keys, the features, and the [B, HW] row mask. The fused kernels
        want the channels contiguous: free for channels-last features (as trained), a copy otherwise."""
        flat = [t.flatten(2).transpose(1, 2).contiguous() for t in (self.query(features), self.key(features), features)]
        q, k = (F.normalize(t, dim=-1) for t in flat[:2])
        return q, k, flat[2], foreground_rows(pseudo, features.shape[-2:]).to(features.dtype)

    @staticmethod
    def _loss(features, rectified):
        """Eq. 13 as released: squared error summed, divided by the number of non-zero entries (all ranks)."""
        error = (features - rectified) ** 2
        count = distributed.mean(torch.count_nonzero(error).to(error.dtype))
        return error.sum() / count.clamp_min(1)
