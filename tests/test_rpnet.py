"""RPNet (wsss/cam/rpnet.py, train_cam method rpnet): pairing, prototypes (Eq. 5), the discarded mask
(Eq. 6), the Gaussian (Eq. 9), the region branch and loss, inference = main branch, train_fraction."""
import random

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from wsss import metrics
from wsss.cam import make_cam, rpnet, train_cam
from wsss.cam import net as cam_net
from wsss.cam.net import CAMNet
from wsss.cam.train_cam import PairedImages, class_members, draw_reference, train_subset
from wsss.datasets.voc import VOCDataset
from wsss.models import resnet
from wsss.rpnet import cam_vs_fraction
from wsss.transforms import TrainAugment

TRAIN = dict(seed=0, device="cpu", tags_from="masks", split="train", backbone="small", pretrained=None,
             crop=64, resize_long=[48, 80], batch_size=4, epochs=1, lr=0.1, weight_decay=0.0001, method="rpnet")


def _tags(rng, n=60, k=6):
    tags = rng.random((n, k)) < 0.3
    tags[np.arange(n), rng.integers(0, k, n)] = True  # every image has a class
    return tags.astype(np.float32)


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
    data = PairedImages(images, range(len(images)), TrainAugment(64, resize_long=[48, 80]), references=3)
    for index in range(len(images)):
        item = data[(index, 100 + index)]
        assert item["refs"].shape == (3, 3, 64, 64) and item["ref_tags"].shape == (3, len(class_names) - 1)
        assert torch.all((item["ref_tags"] * item["tags"]).sum(1) > 0)
        again = data[(index, 100 + index)]
        assert torch.equal(again["refs"], item["refs"]) and torch.equal(again["image"], item["image"])


def test_prototype_is_the_masked_mean():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 5, 4, 6))
    mask = (rng.random((3, 4, 6)) < 0.4).astype(np.float64)
    mask[2] = 0  # an empty mask: the zero prototype, not 0 / 0
    protos = rpnet.masked_mean(torch.from_numpy(features), torch.from_numpy(mask)[:, None]).numpy()[:, 0]
    for b in range(2):
        expected = [sum(features[b, c, y, x] for y in range(4) for x in range(6) if mask[b, y, x]) / mask[b].sum()
                    for c in range(5)]
        np.testing.assert_allclose(protos[b], expected, rtol=1e-12)
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
    torch.manual_seed(0)
    net = rpnet.RPNet(resnet("small"), n_classes=4, keep=0.0).train()
    _, main, region = net(torch.randn(2, 2, 3, 64, 64))
    assert torch.all(torch.isfinite(main)) and torch.all(torch.isfinite(region))


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


def test_foreground_is_the_max_cosine_over_levels_and_prototypes():
    """Eq. 7-8 against a float64 loop: every image of a group against the full prototypes of the group
    (keep = 1, so the discarded prototype equals the full one)."""
    torch.manual_seed(0)
    net = rpnet.RPNet(resnet("small", strides=[2, 2, 1, 1]), n_classes=3, levels=[3, 4], proto_channels=8,
                      keep=1.0).double().eval()
    images = torch.randn(4, 3, 32, 32, dtype=torch.float64)  # 2 groups of 2
    with torch.no_grad():
        feats = net.backbone.forward_features(images)
        fg = net.foreground(feats, group=2)[:, 0].numpy()
        units = [torch.relu(unify(feats[n])).numpy() for n, unify in zip(net.levels, net.unify)]
    expected = np.zeros_like(fg)
    for u in units:  # both levels are at stride 8 here, so no resizing
        normalised = u / (u.max((2, 3), keepdims=True) + rpnet.EPS)
        mask = normalised.max(1) > net.alpha
        protos = [(u[i] * mask[i]).sum((1, 2)) / mask[i].sum() for i in range(4)]
        for i in range(4):
            for j in (2 * (i // 2), 2 * (i // 2) + 1):
                cos = np.einsum("chw,c->hw", u[i], protos[j])
                cos /= np.maximum(np.linalg.norm(u[i], axis=0), 1e-12) * np.linalg.norm(protos[j])
                expected[i] = np.maximum(expected[i], cos)
    np.testing.assert_allclose(fg, expected, atol=1e-9)


def test_inference_is_the_main_branch_and_ignores_the_reference(tiny_voc, tmp_path):
    root, class_names = tiny_voc
    torch.manual_seed(0)
    net = rpnet.RPNet(resnet("small"), n_classes=len(class_names) - 1).eval()
    x, y1, y2 = torch.randn(3, 1, 3, 64, 64)
    with torch.no_grad():
        _, main1, region1 = net(torch.stack([x, y1], 1))
        _, main2, region2 = net(torch.stack([x, y2], 1))
    assert torch.equal(main1[0], main2[0])
    assert not torch.allclose(region1[0], region2[0])  # the reference does reach the region branch
    # make_cam on an RPNet checkpoint = make_cam on a CAMNet holding only its backbone and classifier
    params = {**TRAIN, "class_names": class_names}
    torch.save({"state_dict": net.state_dict(), "params": params, "history": []}, tmp_path / "rp.pt")
    loaded = cam_net.load(tmp_path / "rp.pt")
    plain = CAMNet(resnet("small"), len(class_names) - 1).eval()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if k.split(".")[0] in ("backbone", "classifier")})
    image = np.asarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3)), np.uint8)
    with torch.no_grad():
        ours, theirs = (make_cam.image_cams(n, image, np.array([1, 2]), [1.0, 0.5]) for n in (loaded, plain))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_loss_trains_the_region_branch():
    torch.manual_seed(0)
    net = rpnet.RPNet(resnet("small"), n_classes=3).train()
    tags = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    batch = {"image": torch.randn(2, 3, 64, 64), "tags": tags, "refs": torch.randn(2, 1, 3, 64, 64),
             "ref_tags": tags[:, None]}
    rpnet.rpnet_loss(net, batch, 0, weight=10.0).backward()
    for module in (net.unify, net.non_local, net.classifier, net.backbone.layer4):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
    assert any(p.grad.abs().sum() > 0 for p in net.unify.parameters())
    _, new = net.param_groups()
    assert {id(p) for p in new} == {id(p) for m in (net.unify, net.non_local, net.classifier) for p in m.parameters()}


def test_consistency_is_the_released_mse_but_never_scales_a_weak_cam_up():
    torch.manual_seed(0)
    peaks = torch.tensor([5.0, 1e-3])[None, :, None, None]  # a trained CAM and a nearly dead one
    main, region = torch.rand(1, 2, 8, 8) * peaks, torch.rand(1, 2, 8, 8) * peaks
    one = torch.ones(1, 1)
    release = ((rpnet.max_normalise(main[:, :1]) - rpnet.max_normalise(region[:, :1])) ** 2).mean()
    torch.testing.assert_close(rpnet.consistency(main[:, :1], region[:, :1], one), release, atol=1e-5, rtol=1e-5)
    weak = main[:, 1:].clone().requires_grad_()
    rpnet.consistency(weak, region[:, 1:], one).backward()
    # divided by its peak, the weak map's noise would weigh as much as a trained CAM, its gradient ~1000x
    assert weak.grad.abs().max() < 1e-4
    assert rpnet.consistency(main, region, torch.tensor([[0.0, 1.0]])) < 1e-6  # absent classes do not count


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


def test_train_cam_rpnet_runs_and_make_cam_reads_it(tiny_voc, tmp_path):
    root, class_names = tiny_voc
    params = {**TRAIN, "class_names": class_names, "train_fraction": 0.5, "references": 2}
    train_cam.run(params, root=root, out=tmp_path / "rp.pt")
    ckpt = torch.load(tmp_path / "rp.pt", weights_only=True)
    assert len(ckpt["history"]["loss"]) == 1 and np.isfinite(ckpt["history"]["loss"][0])
    assert isinstance(cam_net.load(tmp_path / "rp.pt"), rpnet.RPNet)
    make_cam.run(dict(device="cpu", class_names=class_names, split="val", scales=[1.0]), root=root,
                 model=tmp_path / "rp.pt", out=tmp_path / "maps")
    assert len(list((tmp_path / "maps").iterdir())) == 4


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
