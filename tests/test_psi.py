"""PSI (wsss/psi/): the SLD threshold, soft binarisation and diffusion (Eq. 5-9), the losses (Eq. 11-12), the
CPP layer against a dense masked-attention reference (Eq. 2-4), the train_psi stage end to end and Fig. 2."""
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from wsss.datasets import demo_dataset, voc
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


def smoothness_reference(probs):
    """L_p from Eq. 11's text, float64: at each position the mean over its 8-neighbours inside the map of the L1
    distance between the two class vectors, averaged over all positions and images."""
    probs = np.asarray(probs, dtype=np.float64)
    B, C, H, W = probs.shape
    per_position = []
    for b in range(B):
        for y in range(H):
            for x in range(W):
                distances = [sum(abs(probs[b, c, y, x] - probs[b, c, y + dy, x + dx]) for c in range(C))
                             for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                             if (dy, dx) != (0, 0) and 0 <= y + dy < H and 0 <= x + dx < W]
                per_position.append(sum(distances) / len(distances))
    return sum(per_position) / len(per_position)


def test_smoothness_by_hand():
    # one class, a 2x2 map [[0, 1], [1, 1]]: the corner's 3 neighbours are all 1 away (mean 1), each other
    # position has one of its 3 neighbours 1 away (mean 1/3): (1 + 3 / 3) / 4 = 0.5
    probs = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    assert losses.smoothness(probs).item() == pytest.approx(0.5)
    # a 1x3 row [0, 0.2, 1] and a second class 1 - it: the L1 distance of two positions' class vectors is twice
    # the row's step: x0 0.4, x1 (0.4 + 1.6) / 2, x2 1.6 -> mean 1.0 (the class mean of main at 0b4c5e2: 0.5)
    row = torch.tensor([0.0, 0.2, 1.0])
    probs = torch.stack([row, 1 - row])[None, :, None]
    assert losses.smoothness(probs).item() == pytest.approx(1.0)
    # two different one-hot labels are 2 apart whatever the number of classes
    for n in (2, 21):
        labels = torch.tensor([[[0, 1]]])
        assert losses.smoothness(sld.one_hot(labels, n).float()).item() == pytest.approx(2.0)
    assert losses.smoothness(torch.ones(1, 3, 5, 5)).item() == 0


def test_smoothness_equals_the_float64_reference():
    gen = torch.Generator().manual_seed(3)
    for shape in [(2, 4, 5, 7), (1, 3, 1, 6), (1, 2, 6, 1)]:
        probs = torch.softmax(3 * torch.randn(shape, generator=gen, dtype=torch.float64), 1)
        assert losses.smoothness(probs).item() == pytest.approx(smoothness_reference(probs), rel=1e-12)


def test_seg_loss_is_eq_11_on_the_prediction_at_image_size():
    """L_ce over the labelled pixels + lambda_1 L_p, both on M_t: the softmax of the logits upsampled
    (bilinear) to the labels, as DeepLab-v3+ predicts at the image size."""
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 16, 20), generator=gen)
    labels[torch.rand(2, 16, 20, generator=gen) < 0.7] = IGNORE
    m = torch.softmax(torch.nn.functional.interpolate(logits, (16, 20), mode="bilinear", align_corners=False), 1)
    labelled = (labels != IGNORE).nonzero().tolist()
    ce = -sum(math.log(m[b, labels[b, y, x], y, x]) for b, y, x in labelled) / len(labelled)
    expected = ce + 100 * smoothness_reference(m)
    assert losses.seg_loss(logits, labels, 100.0).item() == pytest.approx(expected, rel=1e-10)
    assert losses.seg_loss(logits, labels, 0.0).item() == pytest.approx(ce, rel=1e-10)


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


def conv1x1(conv, x):
    """W x + b of a 1x1 convolution's weights."""
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias[None, :, None, None]


def project(p, x):
    """Sec. 5.2's 1x1 convolution; with `cpp_bn`, a bias-free one and BN's eval formula on its running stats."""
    if isinstance(p, nn.Conv2d):
        return conv1x1(p, x)
    conv, bn = p
    y = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (y - bn.running_mean[None, :, None, None]) * scale[None, :, None, None] + bn.bias[None, :, None, None]


def dense_cpp_reference(cpp, feats):
    """Eq. 2-4 as masked attention over every position of every level, float64, on the levels projected by a
    1x1 convolution (Sec. 5.2)."""
    levels = [project(p, f) for p, f in zip(cpp.project, feats)]
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
        outs.append(conv1x1(conv, agg))
        start += k.shape[2]
    return torch.relu(sum(outs))


@pytest.mark.parametrize("destination, bn", [(4, False), (2, False), (4, True)])
def test_cpp_layer_equals_dense_masked_attention(destination, bn):
    torch.manual_seed(1)
    channels, sizes = (5, 6, 7, 8), (16, 8, 4, 4)  # conv2..conv5 at strides 4, 8, 16, 16
    cpp = net.CPP(channels, 6, (1, 1, 1, 4), destination, bn).double().eval()
    assert all(isinstance(p, nn.Sequential if bn else nn.Conv2d) for p in cpp.project)
    for m in cpp.modules():  # BN statistics and affine parameters away from the identity
        if isinstance(m, nn.BatchNorm2d):
            for t in (m.running_mean, m.weight, m.bias):
                nn.init.normal_(t)
            m.running_var.uniform_(0.5, 2.0)
    feats = [torch.randn(2, c, s, s, dtype=torch.float64) for c, s in zip(channels, sizes)]
    got = cpp(feats)
    assert got.shape[-1] == sizes[destination - 1]
    torch.testing.assert_close(got, dense_cpp_reference(cpp, feats), rtol=1e-9, atol=1e-9)


def fixed_batch():
    """Two 64 px images of a dark background with a red disc and a blue square, scribbled: a few labelled
    lines per class, the rest unlabelled (255)."""
    gen = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    images, labels = [], []
    for cy, cx in ((20, 24), (40, 36)):
        disc = (ys - cy) ** 2 + (xs - cx) ** 2 < 12 ** 2
        square = ((ys - (64 - cy)).abs() < 10) & ((xs - (64 - cx)).abs() < 10)
        image = 0.1 * torch.randn(3, 64, 64, generator=gen)
        image[0][disc] += 1.5
        image[2][square] += 1.5
        label = torch.full((64, 64), IGNORE)
        label[(ys % 8 == 0) & ~disc & ~square] = 0
        label[disc & (ys == cy)] = 1
        label[square & (xs == 64 - cx)] = 2
        images.append(image)
        labels.append(label)
    return torch.stack(images), torch.stack(labels)


def cpp_channels(model):
    """The decoder's first convolution's input channels that read CPP's map (after the ASPP's)."""
    aspp = model.aspp.project[0].out_channels
    return slice(aspp, aspp + model.cpp.weights[0].out_channels)


@pytest.mark.parametrize("cpp, cpp_bn", [(False, False), (True, False), (True, True)])
def test_network_with_and_without_cpp_trains_end_to_end(cpp, cpp_bn, one_thread):
    """Gradient reaches every parameter (CPP's projections and W^(l) of all four levels through the
    aggregation kernel's backward), the loss of Eq. 11 falls on a fixed batch, and without CPP the network
    is DeepLab-v3+ itself (Table 3's baseline): the same parameters, the same logits."""
    torch.manual_seed(0)
    x, labels = fixed_batch()
    params = dict(backbone="small", class_names=["bg", "disc", "square"], cpp=cpp, cpp_width=8, head_channels=16,
                  cpp_bn=cpp_bn)
    model = net.build(params)
    assert (model.cpp is not None) == cpp
    assert any(name.startswith("cpp.") for name, _ in model.named_parameters()) == cpp
    if not cpp:
        v3plus = deeplab.DeepLabV3Plus(deeplab.backbone({**params, "arch": "deeplab_v3plus"}), 3, channels=16)
        assert {k: v.shape for k, v in v3plus.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
        v3plus.load_state_dict(model.state_dict())
        torch.testing.assert_close(v3plus.eval()(x), model.eval()(x), rtol=0, atol=0)
        model.train()
    out = model(x)
    assert out.shape == (2, 3, 16, 16)
    losses.seg_loss(out, labels, 1.0).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    if cpp:  # CPP's map reaches the decoder
        assert model.decoder[0][0].weight.grad[:, cpp_channels(model)].abs().sum() > 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(15):
        loss = losses.seg_loss(model(x), labels, 1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.5 * history[0], history


def test_phase_epochs():
    assert train_psi.phase_epochs(200, 4) == [50, 50, 50, 50]
    assert train_psi.phase_epochs(10, 4) == [2, 2, 2, 4]
    assert train_psi.phase_epochs(3, 1) == [3]
    with pytest.raises(ValueError):
        train_psi.phase_epochs(3, 4)


NAMES = list(demo_dataset.PARAMS["class_names"].default)
STAGE = dict(seed=0, device="cpu", class_names=NAMES, split="train", backbone="small", crop=48, batch_size=4,
             epochs=4, lr=0.01, weight_decay=0.001, cpp_width=8, head_channels=16, lambda_1=1.0, sld_radius=4,
             steps=3, sld_epochs=2)


@pytest.fixture(scope="module")
def psi_run(tiny_voc_master, tmp_path_factory):
    """(root, output folder) of one train_psi run (CPP + SLD, t = 3: four phases of one epoch) on the tiny
    set, which it only reads."""
    out = tmp_path_factory.mktemp("psi")
    train_psi.run(STAGE, root=tiny_voc_master, out=out / "psi.pt", supervision=out / "sup",
                  scores=out / "scores.csv")
    return tiny_voc_master, out


def test_stage_writes_model_supervision_and_scores(psi_run, tmp_path):
    root, out = psi_run
    table = pd.read_csv(out / "scores.csv")
    assert table.columns.tolist() == train_psi.SupervisionLog.COLUMNS
    assert table["step"].tolist() == [0, 1, 2, 3]
    assert table[["precision", "recall", "iou", "labelled"]].stack().between(0, 1).all()
    assert table["labelled"].is_monotonic_increasing
    for image_id in voc.read_ids(root, "train"):
        scribble = voc.load_scribble(voc.path(root, "scribble", image_id), len(NAMES))
        for step in range(4):
            label = voc.load_mask(out / "sup" / f"t{step}" / f"{image_id}.png", len(NAMES))
            assert np.array_equal(label[scribble != IGNORE], scribble[scribble != IGNORE])
    assert not list(out.glob("psi.pt.t*"))
    model = load_segmenter(out / "psi.pt")
    assert model.cpp is not None and model(torch.zeros(1, 3, 64, 64)).shape == (1, len(NAMES), 16, 16)
    infer_seg.run(dict(split="val", scales=[1.0, 0.5], flip=True, crf=False, device="cpu"), root=root,
                  model=out / "psi.pt", out=tmp_path / "pred")
    assert len(list((tmp_path / "pred").glob("*.png"))) == len(voc.read_ids(root, "val"))


def test_learning_rate_is_one_poly_schedule_over_every_phase(psi_run):
    """Issue 23 item 1: the four phases (scribbles, then y_R1..y_R3) are consecutive parts of ONE poly schedule
    over all epochs (Sec. 5.2), not four schedules that each anneal to ~0; train_log.csv and the saved history
    cover every phase."""
    root, out = psi_run
    total = STAGE["epochs"] * (len(voc.read_ids(root, "train")) // STAGE["batch_size"])
    log = pd.read_csv(out / "train_log.csv")
    assert log["iteration"].tolist() == list(range(total))
    poly = [STAGE["lr"] * (1 - it / total) ** 0.9 for it in range(total)]  # power 0.9, the schema's default
    np.testing.assert_allclose(log["lr"].to_numpy(np.float64), poly, rtol=1e-12)
    assert len(torch.load(out / "psi.pt", weights_only=False)["history"]["loss"]) == STAGE["epochs"]


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


def test_table3_rows_differ_only_by_their_component(tmp_path):
    """Issue 23 item 5: Table 3's rows are comparable. `snakemake -n psi_ablation` on the demo's config plans the
    four trainings; each row's params are the baseline's plus exactly its component's keys (CPP's, SLD's), so
    every row trains on the same L_seg (Eq. 11, the same lambda_1)."""
    repo = Path(__file__).resolve().parents[1]
    shutil.copy(repo / "config.yaml", tmp_path / "config.yaml")
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(repo / "workflow" / "Snakefile"),
                             "--directory", str(tmp_path), "--cores", "1", "--dry-run", "--printshellcmds",
                             "psi_ablation"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {m.group(2): json.loads(m.group(1)) for m in re.finditer(
        r"wsss\.cli train_psi --params '(\{.*?\})' .*?--out \S+/(\w+)/model\.pt", result.stdout)}
    assert set(rows) == {"psi_baseline", "psi_cpp", "psi_sld", "psi"}
    config = yaml.safe_load((repo / "config.yaml").read_text())["psi"]
    base = rows["psi_baseline"]
    assert base["lambda_1"] == config["lambda_1"] and not base["cpp"] and not base["sld"]
    cpp_keys = {"cpp_width", "cpp_radii", "cpp_destination", "cpp_bn"}
    sld_keys = {"steps", "k", "lambda_2", "sld_radius", "sld_hidden", "sld_lr", "sld_epochs"}
    cpp = {k: rows["psi_cpp"][k] for k in cpp_keys}
    sld = {k: rows["psi_sld"][k] for k in sld_keys}
    assert rows["psi_cpp"] == {**base, "cpp": True, **cpp}
    assert rows["psi_sld"] == {**base, "sld": True, **sld}
    assert rows["psi"] == {**base, "cpp": True, "sld": True, **cpp, **sld}


def test_presets_take_the_papers_lambda_1_per_data_set():
    """Sec. 5.2: lambda_1 = 100 on VOC (the schema's default, which voc12_scribble keeps), 1 on PASCAL-Context."""
    repo = Path(__file__).resolve().parents[1]
    schema = yaml.safe_load((repo / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["psi"]["properties"]["lambda_1"]["default"] == 100
    assert "lambda_1" not in (yaml.safe_load((repo / "config" / "voc12_scribble.yaml").read_text()).get("psi") or {})
    assert yaml.safe_load((repo / "config" / "context.yaml").read_text())["psi"]["lambda_1"] == 1
