"""CDSP's losses besides the two cross-entropies (wsss.seg.losses.cross_entropy: partial CE on the scribbles,
Eq. 8, and label-smoothed CE on the pseudo-label, Eq. 9): the localization rectification module (LoRM,
Eq. 10-13) and the distance entropy loss (DEL, Eq. 15, 17, 18)."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from wsss import IGNORE, distributed


def distance_entropy(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 15 / 17 as released (loss.py DistanceMapMinEntropy): -sum(d * sum_c p log p) / count_nonzero(d *
    sum_c p log p), i.e. entropy weighted by d, minimised (the paper's equations omit the minus), averaged over
    the pixels where that product is non-zero (a pixel of zero entropy does not count). logits [B, C, h, w]
    are upsampled (bilinear, corners aligned as the release's pred_sg_up) to the weights' size [B, H, W]
    (weights in [0, 1]: the stored maps / 255)."""
    logits = upsample(logits, weights.shape[-2:])
    log_p = F.log_softmax(logits, 1)
    weighted = weights * (log_p.exp() * log_p).sum(1)
    count = distributed.mean(torch.count_nonzero(weighted).to(logits.dtype))
    return -weighted.sum() / count.clamp_min(1)


def upsample(logits: torch.Tensor, size) -> torch.Tensor:
    """logits [B, C, h, w] resized to `size` as the release's training (train.py: bilinear, align_corners=True)."""
    if logits.shape[-2:] == tuple(size):
        return logits
    return F.interpolate(logits, size, mode="bilinear", align_corners=True)


def foreground_rows(pseudo: torch.Tensor, size) -> torch.Tensor:
    """bool [B, h*w] LoRM's row mask M (Eq. 11): true where the pseudo-label foreground (not 0, not 255),
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

    `forward` is `rectification_loss`: one autograd function that never builds the HW x HW matrix and saves
    nothing per image for backward. `dense` is the release's HW x HW computation (reference and memory
    baseline)."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, channels, 1)
        self.key = nn.Conv2d(channels, channels, 1)
        self.delta = nn.Parameter(torch.ones(1))
        for conv in (self.query, self.key):  # the release's xavier initialisation
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        rows = foreground_rows(pseudo, features.shape[-2:])
        # under autocast the backbone's features may be half precision: the loss is computed in the weights' type
        return rectification_loss(features.to(self.delta.dtype), self.query.weight.flatten(1), self.query.bias,
                                  self.key.weight.flatten(1), self.key.bias, self.delta, rows)

    def dense(self, features: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
        flat = [t.flatten(2).transpose(1, 2) for t in (self.query(features), self.key(features), features)]
        q, k = (F.normalize(t, dim=-1) for t in flat[:2])
        rows = foreground_rows(pseudo, features.shape[-2:]).to(features.dtype)
        attention = torch.softmax(q @ k.transpose(1, 2), -1)  # [B, HW, HW], Eq. 10
        error = (flat[2] - self.delta * ((rows[..., None] * attention) @ flat[2])) ** 2  # Eq. 11-13
        count = distributed.mean(torch.count_nonzero(error).to(error.dtype))
        return error.sum() / count.clamp_min(1)


def rectification_loss(features, query_weight, query_bias, key_weight, key_bias, delta, rows) -> torch.Tensor:
    """LoRM's loss (class LoRM) of features [B, C, H, W] with Q = F W_q^T + b_q, K = F W_k^T + b_k (weights
    [C, C]), delta [1] and the bool row mask rows [B, H*W]; equals `LoRM.dense` (tested)."""
    return _RectificationLoss.apply(features, query_weight, query_bias, key_weight, key_bias, delta, rows)


_BLOCK = 2 ** 20  # elements of one [query rows, HW] similarity block: the transient memory per step


class _RectificationLoss(torch.autograd.Function):
    """Flash-attention style: images one at a time, query rows in blocks against all keys (so each block's
    softmax is exact), only the foreground rows attend (background rows have F-hat = 0). Backward recomputes
    the projections and each block's attention; saved are the inputs and the count, nothing per image.
    Memory per image beyond the inputs: the gradient of F; per call: one image's K, dK and a block's
    [rows, HW] terms (the work is in functions so that one image's or block's tensors are freed before the
    next one's are made). The set of non-zero error entries is a constant of the gradient, as the count is
    in the release."""

    @staticmethod
    def forward(ctx, features, wq, bq, wk, bk, delta, rows):
        with torch.autocast(features.device.type, enabled=False):
            sums = [_image_loss(_positions(features, image), rows[image], wq, bq, wk, bk, delta)
                    for image in range(features.shape[0])]
            total, count = (torch.stack(terms).sum() for terms in zip(*sums))
            count = distributed.mean(count.to(features.dtype)).clamp_min(1)
        ctx.save_for_backward(features, wq, bq, wk, bk, delta, rows, count)
        return total / count

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        features, wq, bq, wk, bk, delta, rows, count = ctx.saved_tensors
        d_features = torch.empty_like(features, memory_format=torch.channels_last)  # images are [HW, C] views
        d_weights = [torch.zeros_like(t) for t in (wq, bq, wk, bk, delta)]
        with torch.autocast(features.device.type, enabled=False):
            for image in range(features.shape[0]):
                _image_backward(_positions(features, image), _positions(d_features, image), rows[image],
                                (wq, bq, wk, bk, delta), d_weights, 2 * grad / count)
        return d_features, *d_weights, None


def _image_loss(v, rows, wq, bq, wk, bk, delta):
    """(sum of the squared errors, count of the non-zero ones) of one image, v [HW, C]."""
    kn = _projected(v, wk, bk)[0] if rows.any() else None  # no keys for a background image
    total, count = v.new_zeros(()), torch.zeros((), dtype=torch.long, device=v.device)
    for block, attending in _blocks(rows, v.shape[0]):
        error = v[block].clone()
        if attending.numel():
            qn, _ = _projected(error[attending], wq, bq)
            error[attending] -= delta * (torch.softmax(qn @ kn.T, -1) @ v)
        total, count = total + error.square().sum(), count + torch.count_nonzero(error)
    return total, count


def _image_backward(v, dv, rows, weights, d_weights, scale):
    """Writes d loss / d v into dv and adds the weights' gradients to d_weights; scale = 2 d loss / d error."""
    torch.mul(v, scale, out=dv)  # F as the target; F as values and through the projections below
    if not rows.any():
        return
    wk, bk = weights[2:4]
    kn, k_norm = _projected(v, wk, bk)
    dkn = torch.zeros_like(kn)
    for block, attending in _blocks(rows, v.shape[0]):
        if attending.numel():
            _block_backward(v, dv, block.start + attending, kn, dkn, weights, d_weights, scale)
    dk = _normalise_backward(dkn, kn, k_norm)
    d_weights[2].addmm_(dk.T, v)
    d_weights[3] += dk.sum(0)
    dv.addmm_(dk, wk)


def _block_backward(v, dv, index, kn, dkn, weights, d_weights, scale):
    """One block of attending query rows (positions `index`): adds to dv, dkn and d_weights."""
    wq, bq, _, _, delta = weights
    x = v[index]
    qn, q_norm = _projected(x, wq, bq)
    p = torch.softmax(qn @ kn.T, -1)
    o = p @ v
    d_rectified = scale * (delta * o - x)  # d loss / d F-hat
    d_weights[4] += (d_rectified * o).sum()
    do = delta * d_rectified  # d loss / d (A F)
    dv.addmm_(p.T, do)
    ds = p * (do @ v.T - (do * o).sum(-1, keepdim=True))  # through the softmax
    dkn.addmm_(ds.T, qn)
    dq = _normalise_backward(ds @ kn, qn, q_norm)
    d_weights[0].addmm_(dq.T, x)
    d_weights[1] += dq.sum(0)
    dv.index_add_(0, index, dq @ wq - scale * delta * o)


def _positions(features, image):
    """Image `image` of [B, C, H, W] as [HW, C]: a view for channels-last tensors, a copy otherwise."""
    return features[image].flatten(1).T.contiguous()


def _projected(x, weight, bias, eps=1e-12):
    """(x W^T + b, L2-normalised per row as F.normalize does, in place; the norms [n, 1])."""
    y = torch.addmm(bias, x, weight.T)
    norm = torch.linalg.vector_norm(y, dim=-1, keepdim=True)
    return y.div_(norm.clamp_min(eps)), norm


def _normalise_backward(grad, normalised, norm, eps=1e-12):
    """Gradient through y / max(|y|, eps) (row-wise), in place on grad: (g - y^ <g, y^>) / |y|, or g / eps
    where the norm was clamped. No [n, C] temporary (the row products are a batched matmul)."""
    grad.div_(norm.clamp_min(eps))
    dot = (grad[:, None] @ normalised[:, :, None])[:, 0]
    return grad.addcmul_(normalised, dot * (norm > eps), value=-1)


def _blocks(rows, positions):
    """(slice of query rows, indices of the foreground rows within it) covering all positions."""
    size = max(1, _BLOCK // positions)
    for start in range(0, positions, size):
        block = slice(start, min(start + size, positions))
        yield block, rows[block].nonzero()[:, 0]
