"""DSRG's losses: the balanced seeding loss (Eq. 1) and the constrain-to-boundary loss of SEC that DSRG
adds (Eq. 2).

Probabilities follow SEC's and DSRG's released layers: the network's softmax is floored with MIN_PROB
(`seg_probs`) and so is the CRF output (`floor_probs`), which keeps every log finite."""
import torch
import torch.nn.functional as F

MIN_PROB = 1e-4  # min_prob of SEC's / DSRG's pylayers.py
# DSRG's ConstrainLossLayer clips Q / P to this range (SEC's does not clip); clamp's zero gradient outside
# it matches Theano's T.clip
RATIO_CLIP = (0.05, 20.0)


def seg_probs(logits: torch.Tensor, min_prob: float = MIN_PROB) -> torch.Tensor:
    """SEC's SoftmaxLayer: softmax over dim 1, plus min_prob, renormalised."""
    probs = F.softmax(logits, 1) + min_prob
    return probs / probs.sum(1, keepdim=True)


def floor_probs(probs: torch.Tensor, min_prob: float = MIN_PROB) -> torch.Tensor:
    """SEC's CRFLayer on its output: values below min_prob raised to it, renormalised over dim 1."""
    probs = probs.clamp_min(min_prob)
    return probs / probs.sum(1, keepdim=True)


def balanced_seed_loss(probs: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """Eq. 1 averaged over the batch: per image, -(1/sum_{c in C} |S_c|) sum_{c in C} sum_{u in S_c} log H_uc
    over the foreground classes C (channels 1..) minus the same average over the background S_0 (channel 0).

    probs [B, C, h, w] (H); seeds bool [B, C, h, w] (S_c; a pixel may seed several classes). An image
    with no foreground (background) seed gets 0 for that term (the released SeedLossLayer3 divides by
    max(count, min_prob))."""
    log_p = probs.log()
    s = seeds.to(probs.dtype)
    fg = (s[:, 1:] * log_p[:, 1:]).sum((1, 2, 3)) / s[:, 1:].sum((1, 2, 3)).clamp_min(MIN_PROB)
    bg = (s[:, 0] * log_p[:, 0]).sum((1, 2)) / s[:, 0].sum((1, 2)).clamp_min(MIN_PROB)
    return -(fg + bg).mean()


class _CRFLogMarginals(torch.autograd.Function):
    """log Q of the CRF marginals Q of P, with the released CRFLayer's backward (pylayers.py:90-92, reached
    because train-s.prototxt gives the CRF layer `propagate_down: 1` on P): dL/dP = (1 - Q) dL/dlog Q, the
    diagonal of d log Q / dP if Q were softmax(P), i.e. the CRF's unary -P alone."""

    @staticmethod
    def forward(ctx, probs, crf_probs):
        ctx.save_for_backward(crf_probs)
        return crf_probs.log()

    @staticmethod
    def backward(ctx, grad):
        q, = ctx.saved_tensors
        return (1 - q) * grad, None


def constrain_loss(probs: torch.Tensor, crf_probs: torch.Tensor, ratio_clip=RATIO_CLIP) -> torch.Tensor:
    """SEC's constrain-to-boundary loss (DSRG's l_boundary, Eq. 2): the mean over pixels of
    sum_c Q_uc log(Q_uc / P_uc), with P = `probs` and Q = `crf_probs` [B, C, h, w] the dense-CRF marginals of P
    (computed outside autograd).

    The gradient reaches P directly and, as released (ConstrainLossLayer differentiates both inputs; the
    CRF layer passes its part on), through Q: dL/dlog Q times (1 - Q) (`_CRFLogMarginals`). `ratio_clip`
    bounds Q / P as DSRG's released layer does; None gives SEC's unclipped form."""
    q = _CRFLogMarginals.apply(probs, crf_probs.detach()).exp()
    ratio = q / probs
    if ratio_clip is not None:
        ratio = ratio.clamp(*ratio_clip)
    return (q * ratio.log()).sum(1).mean()
