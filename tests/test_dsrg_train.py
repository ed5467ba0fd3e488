"""train_dsrg: growth from the original cues every iteration (Sec. 1, 3.3), the loss it trains on
(Eq. 1 + Eq. 2), the supervision-quality log (Fig. 4) and the whole stage on the tiny set."""
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from wsss.datasets import voc
from wsss.dsrg import dsrg_seeds, train_dsrg
from wsss.dsrg.losses import balanced_seed_loss, constrain_loss, seg_probs
from wsss.models import deeplab
from wsss.seg.losses import grid_labels
from wsss.transforms import normalize, warp


@pytest.fixture(autouse=True)
def torch_kernels(monkeypatch):
    """region_grow's torch backend (exact like the others) needs no numba compilation; one thread is
    faster than two on these tiny tensors."""
    monkeypatch.setenv("WSSS_KERNEL_BACKEND", "torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FixedLogits(torch.nn.Module):
    """A 'network' whose output is a fixed 8 x 8 logit map, whatever the image."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, x):
        return self.logits.expand(len(x), -1, -1, -1)


def _case():
    """Grid 8 x 8 (64 px images at stride 8), classes (bg, 1, 2), class 1 present. The network is sure of
    class 1 on the left half and of background on the right; one cue of each sits in a corner."""
    logits = torch.zeros(1, 3, 8, 8)
    logits[0, 1, :, :4] = 10
    logits[0, 0, :, 4:] = 10
    cues = torch.full((1, 64, 64), 255)
    cues[0, :8, :8] = 1          # lands on grid cell (0, 0)
    cues[0, 56:, 56:] = 0        # grid cell (7, 7)
    gt = torch.zeros(1, 64, 64, dtype=torch.long)
    gt[0, :, :32] = 1
    batch = {"image": torch.zeros(1, 3, 64, 64), "cues": cues, "gt": gt, "tags": torch.tensor([[True, False]])}
    return FixedLogits(logits), batch


STEP = dict(crf_scale=12, crf_log_unary=True, th_fg=0.85, th_bg=0.99)


def test_growth_starts_from_the_original_cues_every_iteration(monkeypatch):
    model, batch = _case()
    calls, grow = [], train_dsrg.region_grow

    def recording(q, seeds, present, th_fg, th_bg):
        grown = grow(q, seeds, present, th_fg, th_bg)
        calls.append((seeds.clone(), grown, q))
        return grown
    monkeypatch.setattr(train_dsrg, "region_grow", recording)
    log = train_dsrg.SupervisionLog(3, per_epoch=2)
    step = train_dsrg.DSRGStep(dict(STEP, growth=True), log, 8)
    losses = [step(model, batch, it) for it in range(2)]

    original = torch.zeros(1, 3, 8, 8, dtype=torch.bool)
    original[0, 1, 0, 0] = original[0, 0, 7, 7] = True
    left = torch.zeros(8, 8, dtype=torch.bool)
    left[:, :4] = True
    for it, (seeds, grown, q) in enumerate(calls):
        assert torch.equal(seeds, original), f"iteration {it} did not start from the original cues"
        # the confident halves joined their cue's class (class 2, absent, never grows)
        assert torch.equal(grown[0, 1], left) and torch.equal(grown[0, 0], ~left) and not grown[0, 2].any()
        probs = seg_probs(model.logits)
        expected = balanced_seed_loss(probs, grown) + constrain_loss(probs, q)
        assert losses[it].item() == pytest.approx(expected.item(), rel=1e-6)
    assert log.grown[:3, 3].sum() == 0  # every grid cell labelled in both iterations


def test_growth_off_trains_on_the_original_cues(monkeypatch):
    model, batch = _case()

    def forbidden(*args):
        raise AssertionError("region_grow called with growth off")
    monkeypatch.setattr(train_dsrg, "region_grow", forbidden)
    uniform = torch.full((1, 3, 8, 8), 1 / 3)
    monkeypatch.setattr(train_dsrg, "crf_batch", lambda *args: uniform)  # a known Q
    loss = train_dsrg.DSRGStep(dict(STEP, growth=False), train_dsrg.SupervisionLog(3, 1), 8)(model, batch, 0)
    p = seg_probs(model.logits).detach()
    # Eq. 1 with one foreground and one background cue, plus Eq. 2 against Q
    expected = -math.log(p[0, 1, 0, 0]) - math.log(p[0, 0, 7, 7]) + constrain_loss(p, uniform).item()
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_supervision_log_hand_computed():
    log = train_dsrg.SupervisionLog(2, per_epoch=1)
    gt = torch.tensor([[[0, 0, 1, 1]]])
    original = torch.zeros(1, 2, 1, 4, dtype=torch.bool)
    original[0, 0, 0, 0] = True                               # supervision 0, -, -, -
    grown = original.clone()
    grown[0, 1, 0, 2] = grown[0, 0, 0, 3] = True              # supervision 0, -, 1, 0
    log.add(0, original, grown, gt, crf_s=0.1, grow_s=0.2)
    log.end_iteration(0, seconds=1.0)
    table = log.table()
    assert table["epoch"].tolist() == [0, 1]
    # cues: class 0 precision 1, recall 1/2, IoU 1/2; class 1 never predicted (precision NaN), recall 0
    assert table.iloc[0, 1:5].tolist() == pytest.approx([1.0, 0.25, 0.25, 0.25])
    # grown: class 0 precision 1/2, recall 1/2, IoU 1/3; class 1 precision 1, recall 1/2, IoU 1/2
    assert table.iloc[1, 1:5].tolist() == pytest.approx([0.75, 0.5, 5 / 12, 0.75])
    assert table.iloc[1, 5:].tolist() == pytest.approx([0.7, 0.1, 0.2])
    copy = train_dsrg.SupervisionLog(2, per_epoch=1)
    copy.load_state_dict(log.state_dict())  # what a checkpoint restores
    pd.testing.assert_frame_equal(copy.table(), table)


def _fake_cams(root, names, folder):
    """CAM files from the ground truth: each present class's mask, box-blurred and cut so they peak inside."""
    folder.mkdir()
    for image_id in voc.read_ids(root, "train"):
        gt = voc.load_mask(voc.path(root, "mask", image_id), len(names))
        keys = np.array([c for c in range(1, len(names)) if (gt == c).any()])
        masks = torch.from_numpy(np.stack([gt == c for c in keys]).astype(np.float32))[None]
        cam = F.avg_pool2d(masks, 9, 1, 4)[0]
        cam = cam / cam.amax((1, 2), keepdim=True)
        np.savez(folder / f"{image_id}.npz", keys=keys, cam=cam[:, ::4, ::4].numpy(), high_res=cam.numpy())


def test_stage_writes_model_log_and_plot_and_growth_labels_more(tiny_voc, tmp_path):
    root, names = tiny_voc
    _fake_cams(root, names, tmp_path / "cams")
    dsrg_seeds.run(dict(split="train", fg_rule="top_fraction", fg_fraction=0.2, bg_cam=0.05, bg_saliency=0.06),
                   root=root, cams=tmp_path / "cams", out=tmp_path / "seeds")
    params = dict(seed=0, device="cpu", class_names=names, split="train", tags_from="masks", arch="deeplab_v2",
                  backbone="small", pretrained=None, crop=64, scale=None, batch_size=4, iterations=4, lr=0.001,
                  lr_policy="step", lr_step=2000, lr_gamma=0.1, momentum=0.9, weight_decay=0.0005,
                  head_lr_mult=10, checkpoint_every=3, th_fg=0.85, th_bg=0.99)  # the released CRF (unary -P)
    tables = {}
    for growth in (True, False):
        train_dsrg.run(dict(params, growth=growth), root=root, seeds=tmp_path / "seeds", out=tmp_path / f"{growth}.pt",
                       supervision=tmp_path / f"{growth}.csv", plot=tmp_path / f"{growth}.png")
        tables[growth] = pd.read_csv(tmp_path / f"{growth}.csv")
    table = tables[True]
    assert table.columns.tolist() == train_dsrg.SupervisionLog.COLUMNS
    assert table["epoch"].tolist() == [0, 1, 2]
    assert table[["precision", "recall", "iou", "labelled"]].stack().between(0, 1).all()
    assert (tmp_path / "True.png").read_bytes()[:4] == b"\x89PNG"
    assert deeplab.load(tmp_path / "True.pt")(torch.zeros(1, 3, 64, 64)).shape == (1, len(names), 8, 8)
    # Fig. 4: growth labels more of the output grid every epoch than the original cues (epoch 0; 93 % here,
    # every CAM < 0.05 being background), and recall follows; without growth the fraction stays the cues'
    labelled = table["labelled"].tolist()
    assert labelled[0] + 0.03 < labelled[1] <= labelled[2], labelled
    assert table["recall"].iloc[2] > table["recall"].iloc[0]
    assert tables[False]["labelled"].tolist() == pytest.approx([labelled[0]] * 3, abs=0.01)


def test_cues_are_sampled_at_the_output_cells_own_positions():
    # a 321 px input at stride 8 gives a 41 x 41 grid; cell i sits at pixel 8 i (0, 8, ..., 320), as the
    # released layers (Interp shrink_factor 8); nearest resampling would take 0, 7, ..., 313
    labels = torch.arange(321)[None, None, :].expand(1, 321, 321)
    grid = grid_labels(labels, (41, 41), 8)
    assert grid[0, 0].tolist() == list(range(0, 321, 8))
    assert torch.equal(grid[0, :, 0], torch.zeros(41, dtype=torch.long))
    with pytest.raises(ValueError, match="does not fit"):
        grid_labels(labels, (42, 41), 8)


def test_the_released_input_warps_the_whole_image_and_keeps_every_cue():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 140, 3), dtype=np.uint8)
    cues = np.full((90, 140), 255, np.uint8)
    cues[:6, :6] = 1  # a cue in a corner, which a 64 px random crop of a 140 px image may miss
    cues[-6:, -6:] = 0
    base = dict(crop=64, scale=None)
    x, y = train_dsrg.augment(dict(base, input="resize"))(image, cues, random.Random(0))
    assert x.shape == (3, 64, 64) and y.shape == (64, 64)
    assert {0, 1} <= set(y.unique().tolist())
    warped, warped_cues = warp(image, 64, cues)
    flipped = not np.array_equal(y.numpy(), warped_cues)
    expected = normalize(warped)[:, ::-1] if flipped else normalize(warped)
    np.testing.assert_allclose(x.numpy(), expected.transpose(2, 0, 1), atol=1e-6)
    assert np.array_equal(y.numpy(), warped_cues[:, ::-1] if flipped else warped_cues)
    cropped = [train_dsrg.augment(dict(base, input="crop"))(image, cues, random.Random(s))[1] for s in range(20)]
    assert any(not {0, 1} <= set(c.unique().tolist()) for c in cropped)  # a crop loses cues
    with pytest.raises(ValueError, match="scale"):
        train_dsrg.augment(dict(crop=64, scale=[0.5, 1.0], input="resize"))


def test_schedule_is_in_iterations(tiny_voc, tmp_path, monkeypatch):
    root, names = tiny_voc
    _fake_cams(root, names, tmp_path / "cams")
    dsrg_seeds.run(dict(split="train", fg_rule="top_fraction", fg_fraction=0.2, bg_cam=0.05, bg_saliency=0.06),
                   root=root, cams=tmp_path / "cams", out=tmp_path / "seeds")
    seen = []
    monkeypatch.setattr(train_dsrg, "fit", lambda *args, **kw: seen.append((args[4], args[5])))
    params = dict(seed=0, device="cpu", class_names=names, split="train", arch="deeplab_v2", backbone="small",
                  crop=64, batch_size=4, iterations=7, lr=0.001, lr_policy="step", lr_step=1000, lr_gamma=0.33,
                  weight_decay=0.0005)
    train_dsrg.run(params, root=root, seeds=tmp_path / "seeds", out=tmp_path / "dsrg.pt",
                   supervision=tmp_path / "sup.csv", plot=tmp_path / "sup.png")
    resolved, n_iters = seen[0]
    assert n_iters == 7  # not epochs x len(split) / batch
    assert (resolved["input"], resolved["lr_step"], resolved["lr_gamma"]) == ("resize", 1000, 0.33)
    assert train_dsrg.PARAMS["iterations"].default == 8000
    assert train_dsrg.PARAMS["crf_log_unary"].default is False  # the released unary -P


def test_log_says_when_the_background_cues_come_from_the_cams(tiny_voc, tmp_path, capsys):
    root, names = tiny_voc
    _fake_cams(root, names, tmp_path / "cams")
    dsrg_seeds.run(dict(split="train", fg_rule="top_fraction", fg_fraction=0.2, bg_cam=0.05, bg_saliency=0.06),
                   root=root, cams=tmp_path / "cams", out=tmp_path / "seeds")
    assert "background cues from the CAMs" in capsys.readouterr().out
