"""RPNet (wsss/rpnet/, train_cam method rpnet) against float64 references written from the release
(liuweide01/RPNet-Weakly-Supervised-Segmentation: net/resnet50_cam.py, step/train_cam.py) and the paper:
pairing, prototypes (Eq. 5, +5e-4), the discarded mask (Eq. 6), the stage-4 mask reused at stage 2 and
cosines in [-1, 1] (Eq. 7-8), F-hat x 1.3 and the Gaussian (Eq. 9-10), the non-local block, the main branch
(reduce conv + non-local) and the references' own modules, the region CAMs averaged over scales, the loss
(Eq. 11-13 as released), the saved main branch, train_fraction, Table II."""
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from scipy import ndimage

from wsss import metrics
from wsss.cam import make_cam, train_cam
from wsss.cam import net as cam_net
from wsss.cam.net import CAMNet, NonLocal
from wsss.cam.train_cam import TaggedImages, train_subset
from wsss.datasets.voc import VOCDataset
from wsss.models import resnet
from wsss.rpnet import cam_vs_fraction, losses
from wsss.rpnet import net as rpnet
from wsss.rpnet.pairs import PairedImages, class_members, draw_reference
from wsss.transforms import TrainAugment

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = dict(seed=0, device="cpu", tags_from="masks", split="train", backbone="small", pretrained=None,
             crop=64, resize_long=[48, 80], batch_size=4, epochs=1, lr=0.1, weight_decay=0.0001, method="rpnet",
             neck_channels=16)
SCHEMA = Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def _tags(rng, n=60, k=6):
    tags = rng.random((n, k)) < 0.3
    tags[np.arange(n), rng.integers(0, k, n)] = True  # every image has a class
    return tags.astype(np.float32)


def _net(strides=(2, 2, 2, 1), n_classes=3, neck=8, **kwargs):
    torch.manual_seed(0)
    main = CAMNet(resnet("small", strides=list(strides)), n_classes, neck_channels=neck)
    return rpnet.RPNet(main, **kwargs)


# pairing ------------------------------------------------------------------------------------------------

def test_pairing_draws_only_images_sharing_a_class():
    rng = np.random.default_rng(0)
    tags = _tags(rng)
    members = class_members(tags)
    draws = random.Random(0)
    for i in range(len(tags)):
        refs = [draw_reference(tags[i], members, draws) for _ in range(200)]
        assert all((tags[i] * tags[j]).sum() > 0 for j in refs)
        eligible = {j for c in np.flatnonzero(tags[i]) for j in members[c]}
        assert set(refs) <= eligible
    single = np.zeros((4, 3), np.float32)
    single[:, 0] = 1  # one class, four images: the image itself is drawn as often as the others
    counts = np.bincount([draw_reference(single[0], class_members(single), draws) for _ in range(4000)], minlength=4)
    assert np.all(np.abs(counts / 4000 - 0.25) < 0.03)


def test_pairing_picks_the_class_uniformly():
    """Image 0 has classes 0 and 1; class 0 has 1 image, class 1 has 9: a uniform class gives image 0 about
    half the time (plus 1/9 of the other half), a uniform image among the eligible ones 1/10."""
    tags = np.zeros((10, 2), np.float32)
    tags[0] = 1
    tags[1:, 1] = 1
    draws = random.Random(1)
    refs = np.array([draw_reference(tags[0], class_members(tags), draws) for _ in range(6000)])
    assert abs((refs == 0).mean() - (0.5 + 0.5 / 10)) < 0.02


def test_paired_images_share_a_class_and_repeat(tiny_voc):
    root, class_names = tiny_voc
    images = VOCDataset(root, "train", class_names, with_mask=False)
    data = PairedImages(TaggedImages(images, range(len(images)), TrainAugment(64, resize_long=[48, 80])), 3)
    for index in range(len(images)):
        item = data[(index, 100 + index)]
        assert item["refs"].shape == (3, 3, 64, 64) and item["ref_tags"].shape == (3, len(class_names) - 1)
        assert torch.all((item["ref_tags"] * item["tags"]).sum(1) > 0)
        again = data[(index, 100 + index)]
        assert torch.equal(again["refs"], item["refs"]) and torch.equal(again["image"], item["image"])


# prototypes, masks, F-hat -------------------------------------------------------------------------------

def test_prototype_is_the_released_masked_mean():
    """cal_cos_vector: sum(f M) / (sum(M) + 5e-4); an empty mask gives the zero vector."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 5, 4, 6))
    mask = (rng.random((3, 4, 6)) < 0.4).astype(np.float64)
    mask[2] = 0
    protos = rpnet.masked_mean(torch.from_numpy(features), torch.from_numpy(mask)[:, None]).numpy()[:, 0]
    for b in range(3):
        expected = [sum(features[b, c, y, x] for y in range(4) for x in range(6) if mask[b, y, x])
                    / (mask[b].sum() + 5e-4) for c in range(5)]
        np.testing.assert_allclose(protos[b], expected, rtol=1e-12, atol=0)
    assert np.array_equal(protos[2], np.zeros(5))


def test_discard_keeps_about_half_and_never_divides_by_zero():
    mask = torch.ones(50, 40, 40)
    kept = rpnet.discard(mask, 0.5, torch.Generator().manual_seed(0))
    assert set(kept.unique().tolist()) == {0.0, 1.0}
    assert abs(kept.mean().item() - 0.5) < 0.01  # 80,000 draws: the standard error is 0.002
    partial = torch.zeros(50, 40, 40)
    partial[:, :10] = 1
    assert torch.all(rpnet.discard(partial, 0.5)[:, 10:] == 0)  # only mask positions can be kept
    gone = rpnet.discard(torch.ones(2, 3, 3), 0.0)
    assert gone.sum() == 0
    assert torch.all(torch.isfinite(rpnet.masked_mean(torch.rand(2, 4, 3, 3), gone[:, None])))


def test_region_branch_is_finite_when_every_mask_is_discarded():
    net = _net(n_classes=4, keep=0.0).train()
    _, main, region = net(torch.randn(2, 2, 3, 64, 64))
    assert torch.all(torch.isfinite(main)) and torch.all(torch.isfinite(region))


def test_part_mask_is_drawn_in_evaluation_too():
    """The release's dropout(mask, 0.5) is F.dropout, on in both modes."""
    net = _net(keep=0.5).double().eval()
    images = torch.randn(1, 2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        draws = [net(images)[2] for _ in range(3)]
    assert not all(torch.equal(draws[0], d) for d in draws[1:])


def test_gaussian_kernel_has_sigma_3():
    kernel = rpnet.gaussian_kernel(5, 3.0).double().numpy()
    delta = np.zeros((5, 5))
    delta[2, 2] = 1
    # scipy's 5x5 Gaussian of sigma 3: radius int(truncate * sigma + 0.5) = 2
    np.testing.assert_allclose(kernel, ndimage.gaussian_filter(delta, 3.0, truncate=2 / 3, mode="constant"),
                               rtol=1e-6)
    r2 = (np.arange(5)[:, None] - 2) ** 2 + (np.arange(5)[None] - 2) ** 2
    np.testing.assert_allclose(kernel / kernel[2, 2], np.exp(-r2 / 18), rtol=1e-6)
    assert kernel.sum() == pytest.approx(1, abs=1e-6)


def resize_corners_aligned(x: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of [N, C, H, W] with the corner pixels aligned (the release's F.upsample_bilinear)."""
    (h_in, w_in), (h, w) = x.shape[-2:], size
    ys, xs = (np.arange(n) * (m - 1) / max(n - 1, 1) for n, m in ((h, h_in), (w, w_in)))
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h_in - 1), np.minimum(x0 + 1, w_in - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None]
    top = x[..., y0, :][..., x0] * (1 - wx) + x[..., y0, :][..., x1] * wx
    bottom = x[..., y1, :][..., x0] * (1 - wx) + x[..., y1, :][..., x1] * wx
    return top * (1 - wy) + bottom * wy


def release_foreground(reduced: np.ndarray, lower: list, alpha: float, group: int) -> np.ndarray:
    """net/resnet50_cam.py Net.forward / cal_mask in float64 (part prototypes = full ones: keep 1): the mask
    max_c [f / (max f + 1e-5) >= alpha] of the reduced last level, reused at every level; per level the
    masked means (+5e-4) of every image of the group; F-hat = max of the cosines over levels and prototypes."""
    mask = (reduced / (reduced.max((2, 3), keepdims=True) + 1e-5) >= alpha).max(1)
    best = np.full((len(reduced), *reduced.shape[2:]), -np.inf)
    for u in [*lower, reduced]:
        protos = [(u[i] * mask[i]).sum((1, 2)) / (mask[i].sum() + 5e-4) for i in range(len(u))]
        for i in range(len(u)):
            first = group * (i // group)
            for p in protos[first:first + group]:
                norm = np.linalg.norm(p)
                dots = np.einsum("chw,c->hw", u[i], p)
                pixels = np.maximum(np.linalg.norm(u[i], axis=0), 1e-12)
                cos = np.zeros_like(dots) if norm == 0 else dots / (pixels * norm)
                best[i] = np.maximum(best[i], cos)
    return best


@pytest.mark.parametrize("strides, levels", [((2, 2, 1, 1), [2, 4]), ((2, 2, 2, 1), [2, 4]), ((2, 2, 2, 1), [3, 4]),
                                             ((2, 2, 2, 1), [4])])
def test_foreground_is_the_released_max_cosine(strides, levels):
    """Eq. 4-8 as released, against release_foreground: levels 2 and 4 on one grid, level 2 resized (corners
    aligned) from stride 8 to 16, level 3, the last level alone."""
    net = _net(strides, levels=levels, keep=1.0).double().eval()
    images = torch.randn(4, 3, 64, 64, dtype=torch.float64)  # 2 groups of 2
    with torch.no_grad():
        feats = net.main.backbone.forward_features(images)
        reduced = net.main.reduce(feats[-1])
        fg = net.foreground(feats, reduced, group=2)[:, 0].numpy()
    size = reduced.shape[-2:]
    lower = [resize_corners_aligned(feats[n].numpy(), size) for n in levels[:-1]]
    expected = release_foreground(reduced.numpy(), lower, net.alpha, 2)
    np.testing.assert_allclose(fg, expected, atol=1e-9)
    assert reduced.min() < 0  # not ReLU'd, as released: cosines in [-1, 1]


def release_non_local(block: NonLocal, x: np.ndarray) -> np.ndarray:
    """_NonLocalBlockND.forward(x, x) in float64, BN in evaluation: x + BN(W (g x)(theta x^T phi x) / N)."""
    def conv(layer, t):
        return np.einsum("oc,bchw->bohw", layer.weight.detach().double().numpy()[:, :, 0, 0], t) + \
            layer.bias.detach().double().numpy()[None, :, None, None]
    b, _, h, w = x.shape
    theta, phi, g = (conv(layer, x).reshape(b, -1, h * w) for layer in (block.theta, block.phi, block.g))
    y = np.einsum("bij,bcj->bci", np.einsum("bci,bcj->bij", theta, phi) / (h * w), g).reshape(b, -1, h, w)
    z, bn = conv(block.w[0], y), block.w[1]
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()[None, :, None, None]
    shift = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    return x + z * scale + shift[None, :, None, None]


def test_non_local_block_is_the_released_one_and_starts_as_the_identity():
    torch.manual_seed(0)
    block = NonLocal(6).double().eval()
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    assert torch.equal(block(x), x)  # W's BN starts at zero
    with torch.no_grad():
        block.w[1].weight.normal_()
        block.w[1].bias.normal_()
        block.w[1].running_mean.normal_()
        block.w[1].running_var.uniform_(0.5, 2)
    np.testing.assert_allclose(block(x).detach().numpy(), release_non_local(block, x.numpy()), rtol=1e-10)


def _randomise_batch_norms(net):
    """Non-zero BN scales in every non-local block, so none is an identity."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, NonLocal):
                module.w[1].weight.normal_()


def test_branches_are_the_released_main_and_region_branches():
    """Net.forward as released, in float64: main CAMs = classifier(non-local(reduce(layer4))), with the x
    image's modules for member 0 and the y image's for the reference; region CAMs = classifier(non-local(f x
    Gaussian(1.3 F-hat / (max F-hat + 1e-5)))), with the member's own modules; logits = GAP of the main CAMs."""
    net = _net((2, 2, 1, 1), n_classes=3, keep=1.0).double().eval()
    _randomise_batch_norms(net)
    images = torch.randn(2, 2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        logits, main, region = net.branches(images)
        feats = net.main.backbone.forward_features(images.flatten(0, 1))
        reduced = net.main.reduce(feats[-1]).numpy()
    fg = release_foreground(reduced, [feats[2].numpy()], net.alpha, 2)
    fg = fg / (fg.max((1, 2), keepdims=True) + 1e-5) * 1.3
    r2 = (np.arange(5)[:, None] - 2) ** 2 + (np.arange(5)[None] - 2) ** 2
    kernel = np.exp(-r2 / 18) / np.exp(-r2 / 18).sum()
    smooth = np.stack([ndimage.correlate(f, kernel, mode="constant", cval=0) for f in fg])
    weighted = reduced * smooth[:, None]

    def classify(classifier, x):
        return np.einsum("kc,bchw->bkhw", classifier.weight.detach().double().numpy()[:, :, 0, 0], x)
    for member, (context, region_context, classifier) in enumerate([
            (net.main.context, net.region_context, net.main.classifier),
            (net.ref_context, net.ref_region_context, net.ref_classifier)]):
        rows = slice(member, None, 2)
        expected_main = classify(classifier, release_non_local(context, reduced[rows]))
        expected_region = classify(classifier, release_non_local(region_context, weighted[rows]))
        np.testing.assert_allclose(main[:, member].numpy(), expected_main, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(region[:, member].numpy(), expected_region, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(logits.numpy(), main.mean((-2, -1)).numpy(), rtol=1e-12)


def test_region_cams_are_averaged_over_scales_and_only_scale_1_has_a_gradient():
    """Net_CAM.forward: (relu(r_1) + relu(r_0.5) + ...) / 4, the others at int(side x s), resized (bilinear) to
    scale 1's grid and computed without gradient."""
    net = _net(n_classes=3, keep=1.0, region_scales=[0.5, 1.5, 2.0]).double().eval()
    _randomise_batch_norms(net)
    images = torch.randn(1, 2, 3, 64, 64, dtype=torch.float64)
    _, main, region = net(images)
    size = region.shape[-2:]
    with torch.no_grad():
        expected = F.relu(net.branches(images)[2])
        for s in (0.5, 1.5, 2.0):
            scaled = F.interpolate(images[0], (int(64 * s), int(64 * s)), mode="bilinear", align_corners=False)
            cams = net.branches(scaled[None])[2][0]
            expected = expected + F.relu(F.interpolate(cams, size, mode="bilinear", align_corners=False))[None]
    torch.testing.assert_close(region, expected / 4, rtol=1e-10, atol=1e-12)
    region.sum().backward()
    got = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    net.zero_grad()
    (F.relu(net.branches(images)[2]).sum() / 4).backward()
    want = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(got) == len(want) and all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(got, want))


def test_inference_is_the_main_branch_and_ignores_the_reference(tiny_voc, tmp_path):
    net = _net(n_classes=4).double().eval()
    x, y1, y2 = torch.randn(3, 1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        _, main1, region1 = net(torch.stack([x, y1], 1))
        _, main2, region2 = net(torch.stack([x, y2], 1))
        torch.testing.assert_close(main1[0, 0], net.main.cam(x)[0], rtol=1e-10, atol=1e-12)
    assert torch.equal(main1[0, 0], main2[0, 0])
    assert not torch.allclose(region1[0, 0], region2[0, 0])  # the reference does reach the region branch
    with torch.no_grad():  # the reference's own classifier: member 0's CAMs do not use it
        net.ref_classifier.weight.mul_(2)
        _, main3, _ = net(torch.stack([x, y1], 1))
    assert torch.equal(main3[0, 0], main1[0, 0]) and not torch.allclose(main3[0, 1], main1[0, 1])


# loss ------------------------------------------------------------------------------------------------

def release_loss(x, y, x_cam, y_cam, cam_x, cam_y, label, label_ref) -> float:
    """step/train_cam.py:87-116 in float64: loss1 + loss2 + 10 mean((n(x_cam) l - n(cam_x) l)^2) + the same for
    y, n(c) = relu(relu(c) - 1e-5) / (max relu(c) + 1e-5), means over N x C x H x W."""
    def mlsm(logits, labels):
        log_p, log_not = -np.logaddexp(0, -logits), -np.logaddexp(0, logits)
        return -(labels * log_p + (1 - labels) * log_not).mean()

    def n(c):
        c = np.maximum(c, 0)
        return np.maximum(c - 1e-5, 0) / (c.max((2, 3), keepdims=True) + 1e-5)
    lx, ly = label[:, :, None, None], label_ref[:, :, None, None]
    return (mlsm(x, label) + mlsm(y, label_ref) + np.mean((n(x_cam) * lx - n(cam_x) * lx) ** 2) * 10
            + np.mean((n(y_cam) * ly - n(cam_y) * ly) ** 2) * 10)


class _Fixed(torch.nn.Module):
    """A stand-in network returning given outputs (the loss is tested on its own)."""

    def __init__(self, *outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, images):
        return self.outputs


def test_loss_is_the_released_one():
    """Both images' classification losses summed, the consistency a mean over N x C x H x W (absent classes
    count as zeros): with 2 of 6 classes present the former mean over present classes weighed it 3x."""
    rng = np.random.default_rng(0)
    n, c = 3, 6
    label = (rng.random((n, c)) < 0.3).astype(np.float64)
    label[:, 0] = 1
    label_ref = label.copy()
    label_ref[:, 4] = 1
    x, y = rng.normal(size=(2, n, c))
    x_cam, y_cam, cam_x, cam_y = rng.normal(size=(4, n, c, 5, 7)) * rng.uniform(0.01, 5, (4, n, c, 1, 1))
    relu = np.maximum
    net = _Fixed(torch.from_numpy(np.stack([x, y], 1)), torch.from_numpy(relu(np.stack([x_cam, y_cam], 1), 0)),
                 torch.from_numpy(relu(np.stack([cam_x, cam_y], 1), 0)))
    batch = {"image": torch.zeros(n, 3, 4, 4), "refs": torch.zeros(n, 1, 3, 4, 4),
             "tags": torch.from_numpy(label), "ref_tags": torch.from_numpy(label_ref)[:, None]}
    expected = release_loss(x, y, x_cam, y_cam, cam_x, cam_y, label, label_ref)
    for floor in (0.0, 1.0):  # the floor changes gradients, never values
        got = losses.rpnet_loss(net, batch, 0, weight=10.0, peak_floor=floor).item()
        assert got == pytest.approx(expected, rel=1e-12)


def test_loss_sums_every_member_of_a_larger_group():
    """K references: each image's terms as the release's two, summed over the 1 + K images."""
    torch.manual_seed(0)
    logits, main, region = torch.randn(2, 3, 4, dtype=torch.float64), torch.rand(2, 3, 4, 5, 5, dtype=torch.float64), \
        torch.rand(2, 3, 4, 5, 5, dtype=torch.float64)
    tags = (torch.rand(2, 3, 4) < 0.5).double()
    batch = {"image": torch.zeros(2, 3, 4, 4), "refs": torch.zeros(2, 2, 3, 4, 4), "tags": tags[:, 0],
             "ref_tags": tags[:, 1:]}
    got = losses.rpnet_loss(_Fixed(logits, main, region), batch, 0, weight=10.0, peak_floor=1.0)
    per_image = [F.multilabel_soft_margin_loss(logits[:, g], tags[:, g])
                 + 10 * losses.consistency(main[:, g:g + 1], region[:, g:g + 1], tags[:, g:g + 1], 1.0)
                 for g in range(3)]
    torch.testing.assert_close(got, sum(per_image), rtol=1e-12, atol=0)


def test_peak_floor_keeps_the_released_values_and_bounds_the_gradient_of_weak_cams():
    """normalise(c, 1): the release's values for every map; the release's gradient for a map peaking at 1 or
    more; for a nearly dead map (peak 1e-3) the gradient of c / 1 instead of c / peak (~1000x)."""
    torch.manual_seed(0)
    peaks = torch.tensor([3.0, 1e-3], dtype=torch.float64)[:, None, None]
    cams = (torch.rand(2, 6, 7, dtype=torch.float64) * peaks).requires_grad_()
    weights = torch.randn(2, 6, 7, dtype=torch.float64)

    def release(c):  # step/train_cam.py:93-95
        return F.relu(F.relu(c) - 1e-5) / (F.relu(c).amax((-2, -1), keepdim=True) + 1e-5)
    (release(cams) * weights).sum().backward()
    expected = cams.grad.clone()
    cams.grad = None
    normalised = losses.normalise(cams, 1.0)
    torch.testing.assert_close(normalised, release(cams), rtol=1e-15, atol=0)
    (normalised * weights).sum().backward()
    torch.testing.assert_close(cams.grad[0], expected[0], rtol=1e-12, atol=0)
    above = (cams[1] > 1e-5).detach()
    torch.testing.assert_close(cams.grad[1][above], weights[1][above] / (1 + 1e-5), rtol=1e-12, atol=0)
    assert expected[1].abs().max() > 500 * cams.grad[1].abs().max()
    cams.grad = None
    (losses.normalise(cams, 0.0) * weights).sum().backward()  # 0: the release's gradient
    torch.testing.assert_close(cams.grad, expected, rtol=1e-12, atol=0)


def test_loss_trains_every_module():
    net = _net(n_classes=3, neck=8).train()
    tags = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    batch = {"image": torch.randn(2, 3, 64, 64), "tags": tags, "refs": torch.randn(2, 1, 3, 64, 64),
             "ref_tags": tags[:, None]}
    losses.rpnet_loss(net, batch, 0, weight=10.0, peak_floor=1.0).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    trained = (net.main.reduce, net.main.context, net.main.classifier, net.ref_context, net.ref_classifier,
               net.region_context, net.ref_region_context)
    _, new = net.param_groups()
    assert {id(p) for p in new} == {id(p) for m in trained for p in m.parameters()}


# the stage --------------------------------------------------------------------------------------------------

def test_train_subset_keeps_every_class():
    rng = np.random.default_rng(0)
    tags = _tags(rng, n=200, k=8)
    tags[:, 7] = 0
    tags[123, 7] = 1  # a class of one image
    for fraction in (1, 1 / 2, 1 / 4, 1 / 8, 1 / 16):
        subset = train_subset(tags, fraction, seed=3)
        assert np.all(tags[subset].sum(0) > 0)
        assert np.ceil(200 * fraction) <= len(subset) <= np.ceil(200 * fraction) + 8
        assert np.array_equal(subset, train_subset(tags, fraction, seed=3))
    assert np.array_equal(train_subset(tags, 1, 0), np.arange(200))
    assert not np.array_equal(train_subset(tags, 1 / 4, 0), train_subset(tags, 1 / 4, 1))
    with pytest.raises(ValueError, match="train_fraction"):
        train_subset(tags, 0, 0)


def test_train_cam_rpnet_saves_the_main_branch_and_make_cam_reads_it(tiny_voc, tmp_path):
    root, class_names = tiny_voc
    params = {**TRAIN, "class_names": class_names, "train_fraction": 0.5, "references": 2, "region_scales": [0.5]}
    train_cam.run(params, root=root, out=tmp_path / "rp.pt")
    ckpt = torch.load(tmp_path / "rp.pt", weights_only=True)
    assert len(ckpt["history"]["loss"]) == 1 and np.isfinite(ckpt["history"]["loss"][0])
    net = cam_net.load(tmp_path / "rp.pt")
    assert type(net) is CAMNet and isinstance(net.context, NonLocal) and net.classifier.in_channels == 16
    assert set(ckpt["state_dict"]) == set(net.state_dict())  # no region branch, no reference modules
    make_cam.run(dict(device="cpu", class_names=class_names, split="val", scales=[1.0]), root=root,
                 model=tmp_path / "rp.pt", out=tmp_path / "maps")
    assert len(list((tmp_path / "maps").iterdir())) == 4
    with pytest.raises(ValueError, match="method"):
        train_cam.run({**params, "method": "cam"}, root=root, out=tmp_path / "x.pt")


def test_workflow_rpnet_keys_are_the_networks():
    """cam.rpnet in the schema: the schedule, neck_channels and exactly the keys wsss/rpnet/net.py declares
    (wsss/pipeline/plan.py train_cam_values passes them on), with the same defaults."""
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]["cam"]["properties"]["rpnet"]["properties"]
    schedule = {"crop", "resize_long", "batch_size", "epochs", "lr", "weight_decay", "neck_channels"}
    assert set(schema) == schedule | set(rpnet.PARAMS)
    for key, param in rpnet.PARAMS.items():
        assert schema[key]["default"] == param.default, key


def test_cam_vs_fraction_collects_table_ii(tmp_path):
    files, expected = [], []
    for method in ("irnet", "rpnet"):
        for fraction in (1, 0.5):
            conf = np.random.default_rng(len(files)).integers(0, 50, (3, 3))
            files.append(tmp_path / f"{method}_{fraction}.csv")
            metrics.write(files[-1], metrics.rows("cam", method, "train", ["bg", "a", "b"], conf))
            expected.append(metrics.scores(conf)["iou"].mean())
    cam_vs_fraction.run({"methods": ["irnet", "rpnet"], "fractions": [1, 0.5]}, inputs=files,
                        table=tmp_path / "t.csv", plot=tmp_path / "p.png")
    table = pd.read_csv(tmp_path / "t.csv")
    assert list(table.method) == ["irnet", "irnet", "rpnet", "rpnet"] and list(table.train_fraction) == [1, 0.5, 1, 0.5]
    np.testing.assert_allclose(table.miou, expected)
    assert (tmp_path / "p.png").stat().st_size > 0
