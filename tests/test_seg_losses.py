"""wsss.dsrg.losses and wsss.seg.losses on hand-computed cases: DSRG's balanced seeding loss (Eq. 1), SEC's
constrain loss as DSRG uses it (Eq. 2, with the released clipping), SEC's probability floors, cross-entropy with
ignore."""
import math

import pytest
import torch

from wsss.dsrg.losses import balanced_seed_loss, constrain_loss, floor_probs, seg_probs
from wsss.seg.losses import cross_entropy


def _probs(*columns):
    """[1, C, 1, W] float64 from per-pixel class distributions."""
    return torch.tensor(columns, dtype=torch.float64).t()[None, :, None, :]


def test_balanced_seed_loss_hand_computed():
    # three pixels, classes (bg, 1, 2): pixel 0 seeds bg, pixel 1 class 1, pixel 2 both 1 and 2
    probs = _probs([0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.4, 0.4])
    seeds = torch.zeros(1, 3, 1, 3, dtype=torch.bool)
    seeds[0, 0, 0, 0] = seeds[0, 1, 0, 1] = seeds[0, 1, 0, 2] = seeds[0, 2, 0, 2] = True
    # Eq. 1: foreground normalised by sum_c |S_c| = 3, background by |S_0| = 1
    expected = -(math.log(0.6) + math.log(0.4) + math.log(0.4)) / 3 - math.log(0.5)
    assert balanced_seed_loss(probs, seeds).item() == pytest.approx(expected, rel=1e-12)


def test_balanced_seed_loss_balances_per_image_and_averages_the_batch():
    probs = torch.cat([_probs([0.5, 0.5], [0.25, 0.75]), _probs([0.8, 0.2], [0.9, 0.1])])
    seeds = torch.zeros(2, 2, 1, 2, dtype=torch.bool)
    seeds[0, 1] = True            # image 0: two foreground seeds, no background seed: that term is 0
    seeds[1, 0, 0, 0] = True      # image 1: one background seed
    image0 = -(math.log(0.5) + math.log(0.75)) / 2
    image1 = -math.log(0.8)
    assert balanced_seed_loss(probs, seeds).item() == pytest.approx((image0 + image1) / 2, rel=1e-12)


def test_balanced_seed_loss_gradient_weights_rare_background_up():
    probs = _probs([0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]).requires_grad_()
    seeds = torch.zeros(1, 2, 1, 4, dtype=torch.bool)
    seeds[0, 1, 0, :3] = True  # three foreground seeds
    seeds[0, 0, 0, 3] = True   # one background seed
    balanced_seed_loss(probs, seeds).backward()
    # d/dH of -(1/|S|) log H = -1 / (|S| H): the lone background pixel weighs three times a foreground one
    assert probs.grad[0, 1, 0, 0].item() == pytest.approx(-1 / (3 * 0.5))
    assert probs.grad[0, 0, 0, 3].item() == pytest.approx(-1 / 0.5)
    assert probs.grad[0, 0, 0, 0].item() == 0


def test_constrain_loss_hand_computed():
    p = _probs([0.5, 0.5], [0.9, 0.1])
    q = _probs([0.8, 0.2], [0.9, 0.1])
    pixel0 = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert constrain_loss(p, q).item() == pytest.approx(pixel0 / 2, rel=1e-12)  # mean over 2 pixels


def test_constrain_loss_clips_the_ratio():
    p = _probs([0.99, 0.01])
    q = _probs([0.5, 0.5])  # Q/P = 0.505 and 50: the second is clipped to 20 (its gradient: the next test)
    loss = constrain_loss(p, q)
    assert loss.item() == pytest.approx(0.5 * math.log(0.5 / 0.99) + 0.5 * math.log(20), rel=1e-12)
    unclipped = constrain_loss(p, q, ratio_clip=None)  # SEC's form
    assert unclipped.item() == pytest.approx(0.5 * math.log(0.5 / 0.99) + 0.5 * math.log(50), rel=1e-12)


def test_constrain_loss_sends_the_gradient_through_the_crf_as_released():
    # DSRG's train-s.prototxt: the CRF layer has propagate_down 1 on P, ConstrainLossLayer differentiates both
    # P and log Q, and CRFLayer.backward passes (1 - Q) dL/dlog Q on to P (pylayers.py)
    p = _probs([0.6, 0.4], [0.99, 0.01]).requires_grad_()
    q = _probs([0.7, 0.3], [0.5, 0.5]).requires_grad_()  # pixel 1, class 1: Q/P = 50, clipped to 20
    constrain_loss(p, q).backward()
    n = 2  # pixels averaged

    def expected(pc, qc, clipped=False):
        # L_u = Q log(clip(Q / P)): directly -Q / P (0 where clipped); through log Q: Q (log(clip(Q/P)) + 1),
        # the + 1 only where unclipped, times (1 - Q)
        ratio = 20 if clipped else qc / pc
        direct = 0 if clipped else -qc / pc
        return (direct + (1 - qc) * qc * (math.log(ratio) + (0 if clipped else 1))) / n
    want = [[expected(0.6, 0.7), expected(0.99, 0.5)], [expected(0.4, 0.3), expected(0.01, 0.5, clipped=True)]]
    assert p.grad[0, :, 0, :].tolist() == [pytest.approx(row, rel=1e-12) for row in want]
    assert q.grad is None  # the CRF's marginals themselves are computed outside autograd


def test_sec_probability_floors():
    probs = seg_probs(torch.tensor([[0.0, -200.0]], dtype=torch.float64)[:, :, None, None])[:, :, 0, 0]
    assert probs[0].tolist() == pytest.approx([(1 + 1e-4) / (1 + 2e-4), 1e-4 / (1 + 2e-4)], rel=1e-12)
    floored = floor_probs(_probs([0.99995, 0.00005]))[0, :, 0, 0]
    assert floored.tolist() == pytest.approx([0.99995 / 1.00005, 1e-4 / 1.00005], rel=1e-12)


def test_cross_entropy_ignores_255_and_upsamples_logits():
    logits = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)[:, :, None, None]  # p = (1/4, 3/4)
    labels = torch.tensor([[[0, 1], [255, 255]]])  # 1x1 logits spread over a 2x2 label map
    assert cross_entropy(logits, labels).item() == pytest.approx(-(math.log(0.25) + math.log(0.75)) / 2)
