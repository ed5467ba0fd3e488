"""PSI (wsss/psi/): the SLD threshold, soft binarisation and diffusion (Eq. 5-9), the losses (Eq. 11-12), the
CPP layer against a dense masked-attention reference (Eq. 2-4), the train_psi stage end to end and Fig. 2."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from wsss import training
from wsss.datasets import voc
from wsss.errors import DataError
from wsss.models import deeplab, load_segmenter
from wsss.params import resolve
from wsss.psi import losses, net, psi_fig2, sld, train_psi
from wsss.seg import infer_seg

IGNORE = sld.IGNORE


class Constant(nn.Module):
    """g(mu, sigma^2) = c: the threshold gamma = mu + c sigma."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, mu, var):
        return torch.full_like(mu, self.c)


def test_threshold_and_soft_binarisation_by_hand():
    # one image, two classes, a 1x4 map; class 0 labelled at x = 0, class 1 at x = 3; radius 1
    labels = torch.tensor([[[0, IGNORE, IGNORE, 1]]])
    conf = torch.tensor([[[[0.9, 0.6, 0.3, 0.2]], [[0.1, 0.4, 0.7, 0.8]]]])
    omega = sld.regions(labels, 2, 1)
    assert omega[0, 0, 0].tolist() == [True, True, False, False]
    assert omega[0, 1, 0].tolist() == [False, False, True, True]
    mu, var = sld.region_stats(conf, omega)
    # class 0 over {0.9, 0.6}: mean 0.75, variance 0.0225; class 1 over {0.7, 0.8}: 0.75, 0.0025
    assert torch.allclose(mu, torch.tensor([[0.75, 0.75]]))
    assert torch.allclose(var, torch.tensor([[0.0225, 0.0025]]))
    gamma = sld.threshold(conf, omega, Constant(-1.0))  # mu - sigma
    assert torch.allclose(gamma, torch.tensor([[0.6, 0.7]]), atol=1e-6)
    soft = sld.soft_binarise(conf, gamma, 20)
    # B = 1 / (1 + exp(-20 max(M - gamma, 0)))
    expected0 = [1 / (1 + math.exp(-20 * max(m - 0.6, 0))) for m in (0.9, 0.6, 0.3, 0.2)]
    expected1 = [1 / (1 + math.exp(-20 * max(m - 0.7, 0))) for m in (0.1, 0.4, 0.7, 0.8)]
    assert torch.allclose(soft[0, :, 0], torch.tensor([expected0, expected1]), atol=1e-5)
    assert soft[0, 0, 0, 2] == 0.5  # below the threshold: exactly 1/2, never labelled


def test_diffusion_union_conflicts_and_omega_by_hand():
    labels = torch.tensor([[[0, IGNORE, IGNORE, IGNORE, 1]]])
    omega = torch.tensor([[[[1, 1, 1, 0, 0]], [[0, 0, 1, 1, 1]], [[1, 1, 1, 1, 1]]]]).bool()
    soft = torch.tensor([[[[0.5, 0.9, 0.7, 0.99, 0.99]], [[0.99, 0.5, 0.8, 0.5, 0.6]], [[0.99] * 5]]])
    present = torch.tensor([[True, True, False]])  # class 2 is not in the scribbles: never diffused
    grown = sld.diffuse(labels, soft, omega, present)
    # x0, x4: kept; x1: class 0 (only one above 1/2); x2: the wider margin (0.8 > 0.7); x3: class 0 is
    # above 1/2 but outside its Omega, class 1 is exactly 1/2: unlabelled
    assert grown.tolist() == [[[0, 0, 1, IGNORE, 1]]]


def test_scribbles_survive_every_diffusion_step():
    gen = torch.Generator().manual_seed(0)
    n = 4
    scribbles = torch.full((2, 24, 24), IGNORE)
    scribbles[:, 3:5, 2:20] = torch.randint(0, n, (2, 1, 1), generator=gen)
    scribbles[:, 15:17, 4:18] = torch.randint(0, n, (2, 1, 1), generator=gen)
    labels, g = scribbles.clone(), sld.ThresholdNet()
    for step in range(1, 5):
        conf = torch.softmax(3 * torch.randn(2, n, 24, 24, generator=gen), 1)
        omega = sld.regions(labels, n, 3 * step)
        with torch.no_grad():
            soft = sld.soft_binarise(conf, sld.threshold(conf, omega, g), 20)
        grown = sld.diffuse(labels, soft, omega, sld.present_classes(scribbles, n))
        keep = scribbles != IGNORE
        assert torch.equal(grown[keep], scribbles[keep])
        assert torch.equal(grown[labels != IGNORE], labels[labels != IGNORE])  # the union never shrinks
        labels = grown
    assert (labels != IGNORE).sum() > (scribbles != IGNORE).sum()


def test_gamma_is_differentiable_in_theta():
    torch.manual_seed(0)
    g = sld.ThresholdNet(5).double()
    for p in g.parameters():  # the zero-initialised last layer would hide half the Jacobian
        nn.init.normal_(p)
    conf = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    omega = torch.rand(2, 3, 6, 6) > 0.5
    names = [n for n, _ in g.named_parameters()]

    def gamma(*params):
        return sld.threshold(conf, omega, lambda mu, var: torch.func.functional_call(g, dict(zip(names, params)),
                                                                                      (mu, var)))

    assert torch.autograd.gradcheck(gamma, tuple(p.detach().requires_grad_() for p in g.parameters()))


def test_smoothness_by_hand():
    # one class, a 2x2 map [[0, 1], [1, 1]]: 6 neighbour pairs (2 horizontal, 2 vertical, 2 diagonal);
    # |0-1| for the three pairs with the corner, 0 for the other three: mean 0.5
    probs = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    assert losses.smoothness(probs).item() == pytest.approx(0.5)
    # 1x3 row [0, 0.2, 1] and a second class 1 - it: pairs (0,1), (1,2) -> (0.2 + 0.8) per class / 2
    row = torch.tensor([0.0, 0.2, 1.0])
    probs = torch.stack([row, 1 - row])[None, :, None]
    assert losses.smoothness(probs).item() == pytest.approx(0.5)
    assert losses.smoothness(torch.ones(1, 3, 5, 5)).item() == 0


def test_sld_loss_pulls_gamma_towards_the_scribbles():
    # one class whose scribble pixel has M = 0.6 < gamma: no gradient (Eq. 9 is flat there); a background
    # scribble pixel with M = 0.9 > gamma for class 1 asks gamma_1 up
    conf = torch.tensor([[[[0.1, 0.4]], [[0.9, 0.6]]]])
    scribbles = torch.tensor([[[0, 1]]])
    gamma = torch.tensor([[0.5, 0.7]], requires_grad=True)
    omega = torch.ones(1, 2, 1, 2, dtype=torch.bool)
    loss = losses.sld_loss(conf, gamma, 20, scribbles, omega, torch.tensor([[True, True]]), 0.0)
    loss.backward()
    assert gamma.grad[0, 1] < 0  # raising gamma_1 lowers the loss
    assert gamma.grad[0, 0] == 0  # class 0 is below its threshold everywhere


def dense_cpp_reference(cpp, feats):
    """Eq. 2-4 as masked attention over every position of every level, float64."""
    levels = [p(f) for p, f in zip(cpp.project, feats)]
    q = levels[cpp.destination]
    B, C, H, W = q.shape
    keys, masks = [], []
    for lv, r in zip(levels, cpp.radii):
        h, w = lv.shape[-2:]
        s = round(math.log2(W / w))
        proj = (lambda i: i >> s) if s > 0 else (lambda i: i << -s)
        ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        jy, jx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        dy = (proj(ys.flatten())[:, None] - jy.flatten()[None]).abs()
        dx = (proj(xs.flatten())[:, None] - jx.flatten()[None]).abs()
        masks.append(torch.maximum(dy, dx) < r)
        keys.append(lv.flatten(2))
    logits = torch.einsum("bci,bcj->bij", q.flatten(2), torch.cat(keys, 2))
    A = torch.softmax(logits.masked_fill(~torch.cat(masks, 1), -math.inf), 2)
    outs, start = [], 0
    for k, conv in zip(keys, cpp.weights):
        agg = torch.einsum("bij,bcj->bci", A[..., start:start + k.shape[2]], k).reshape(B, C, H, W)
        outs.append(conv(agg))
        start += k.shape[2]
    return torch.relu(sum(outs))


@pytest.mark.parametrize("destination", [4, 2])
def test_cpp_layer_equals_dense_masked_attention(destination):
    torch.manual_seed(1)
    channels, sizes = (5, 6, 7, 8), (16, 8, 4, 4)  # conv2..conv5 at strides 4, 8, 16, 16
    cpp = net.CPP(channels, 6, (1, 1, 1, 4), destination).double().eval()
    feats = [torch.randn(2, c, s, s, dtype=torch.float64) for c, s in zip(channels, sizes)]
    got = cpp(feats)
    assert got.shape[-1] == sizes[destination - 1]
    torch.testing.assert_close(got, dense_cpp_reference(cpp, feats), rtol=1e-9, atol=1e-9)


def test_network_with_and_without_cpp_trains_end_to_end():
    names = ["bg", "a", "b"]
    for cpp in (False, True):
        model = net.build(dict(backbone="small", class_names=names, cpp=cpp, cpp_width=8, head_channels=16))
        out = model(torch.randn(2, 3, 64, 64))
        assert out.shape == (2, 3, 16, 16)
        out.sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        assert (model.cpp is not None) == cpp


def test_phase_epochs():
    assert train_psi.phase_epochs(200, 4) == [50, 50, 50, 50]
    assert train_psi.phase_epochs(10, 4) == [2, 2, 2, 4]
    assert train_psi.phase_epochs(3, 1) == [3]
    with pytest.raises(ValueError):
        train_psi.phase_epochs(3, 4)


def test_stage_writes_model_supervision_and_scores(tiny_voc, tmp_path):
    root, names = tiny_voc
    params = dict(seed=0, device="cpu", class_names=names, split="train", backbone="small", crop=48, batch_size=4,
                  epochs=4, lr=0.01, weight_decay=0.001, cpp_width=8, head_channels=16, lambda_1=1.0,
                  sld_radius=4, steps=3, sld_epochs=2)
    train_psi.run(params, root=root, out=tmp_path / "psi.pt", supervision=tmp_path / "sup",
                  scores=tmp_path / "scores.csv")
    table = pd.read_csv(tmp_path / "scores.csv")
    assert table.columns.tolist() == train_psi.SupervisionLog.COLUMNS
    assert table["step"].tolist() == [0, 1, 2, 3]
    assert table[["precision", "recall", "iou", "labelled"]].stack().between(0, 1).all()
    assert table["labelled"].is_monotonic_increasing
    ids = voc.read_ids(root, "train")
    for image_id in ids:
        scribble = voc.load_scribble(voc.path(root, "scribble", image_id), len(names))
        for step in range(4):
            label = voc.load_mask(tmp_path / "sup" / f"t{step}" / f"{image_id}.png", len(names))
            assert np.array_equal(label[scribble != IGNORE], scribble[scribble != IGNORE])
    assert not list(tmp_path.glob("psi.pt.t*"))
    log = pd.read_csv(tmp_path / "train_log.csv")  # the last phase continues the one poly schedule
    per_epoch, total = len(ids) // 4, 4 * (len(ids) // 4)
    assert log["iteration"].tolist() == list(range(3 * per_epoch, total))
    assert log["lr"].iloc[0] == pytest.approx(0.01 * training.lr_factor(resolve(
        params, train_psi.PARAMS, "train_psi"), 3 * per_epoch, total))
    model = load_segmenter(tmp_path / "psi.pt")
    assert model.cpp is not None and model(torch.zeros(1, 3, 64, 64)).shape == (1, len(names), 16, 16)
    infer_seg.run(dict(split="val", scales=[1.0, 0.5], flip=True, crf=False, device="cpu"), root=root,
                  model=tmp_path / "psi.pt", out=tmp_path / "pred")
    assert len(list((tmp_path / "pred").glob("*.png"))) == len(voc.read_ids(root, "val"))


def test_load_segmenter_rebuilds_by_arch_and_names_an_unknown_one(tmp_path):
    names = ["bg", "a"]
    for params in (dict(arch="deeplab_v3plus", backbone="small", class_names=names),
                   dict(arch="psi", backbone="small", class_names=names, cpp=True, cpp_width=8, head_channels=8)):
        model = (net.build if params["arch"] == "psi" else deeplab.build)(params)
        torch.save({"state_dict": model.state_dict(), "params": params}, tmp_path / "m.pt")
        assert type(load_segmenter(tmp_path / "m.pt")) is type(model)
    torch.save({"state_dict": {}, "params": dict(arch="fcn")}, tmp_path / "m.pt")
    with pytest.raises(DataError, match="unknown segmentation arch 'fcn'"):
        load_segmenter(tmp_path / "m.pt")


def test_fig2_draws_image_truth_and_each_step_and_names_a_missing_step(tiny_voc, tmp_path):
    root, names = tiny_voc
    ids = voc.read_ids(root, "train")
    for step in range(3):  # t0 .. t2: the scribbles, as train_psi writes t0
        for image_id in ids[:2]:
            (tmp_path / "sup" / f"t{step}").mkdir(parents=True, exist_ok=True)
            Image.open(voc.path(root, "scribble", image_id)).save(tmp_path / "sup" / f"t{step}" / f"{image_id}.png")
    params = dict(class_names=names, split="train", steps=2, n_images=2, panel=40)
    psi_fig2.run(params, root=root, supervision=tmp_path / "sup", out=tmp_path / "fig2.png")
    with Image.open(tmp_path / "fig2.png") as fig:  # 5 columns (image, truth, t0..t2), 2 rows, a header
        assert fig.size == (5 * 40 + 4 * psi_fig2.GAP, psi_fig2.HEADER + 2 * (40 + psi_fig2.GAP))
        pixels = np.asarray(fig.convert("RGB"))
    top = psi_fig2.HEADER + psi_fig2.GAP
    for column in range(5):  # every panel drawn (not the white canvas)
        left = column * (40 + psi_fig2.GAP)
        assert (pixels[top:top + 40, left:left + 40] != 255).any()
    with pytest.raises(DataError, match="no supervision folder .*t3"):
        psi_fig2.run({**params, "steps": 3}, root=root, supervision=tmp_path / "sup", out=tmp_path / "f.png")
    with pytest.raises(DataError, match=f"{ids[2]}.png is missing"):
        psi_fig2.run({**params, "n_images": 3}, root=root, supervision=tmp_path / "sup", out=tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()
