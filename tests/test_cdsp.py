"""CDSP: distance maps (hand cases, bytes of the brute-force definition), DEL, LoRM, label-smoothed CE, CAM
pseudo-labels, scribble drop / shrink, tags from scribbles, the stages end to end on the tiny set, and PSI
trained on a derived scribble set (Fig. 7's PSI curve)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from wsss import metrics, training
from wsss.cam import calibration
from wsss.cdsp import cdsp_distance_maps, cdsp_pseudo_labels, cdsp_scribbles, cdsp_tables, distance, train_cdsp
from wsss.cdsp.cdsp_scribbles import drop, shrink, strokes
from wsss.cdsp.distance import boundary, brute_force, distance_bytes, pseudo_map, scribble_map
from wsss.cdsp.losses import LoRM, distance_entropy, foreground_rows, rectification_loss
from wsss.datasets import voc
from wsss.io import save_npz, save_png
from wsss.psi import train_psi
from wsss.seg import eval_seg, infer_seg
from wsss.seg.losses import cross_entropy

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_bytes(points: np.ndarray, lam: float) -> np.ndarray:
    """The release's definition in float64 numpy: min over points of floor(min(sqrt(l dy^2 + l dx^2), 255))."""
    coeff = math.e ** lam  # the release's coefficient (its script's table)
    if not points.any():
        return np.full(points.shape, 255, np.uint8)
    py, px = np.nonzero(points)
    gy, gx = np.indices(points.shape)
    dy, dx = gy.ravel()[:, None] - py[None], gx.ravel()[:, None] - px[None]
    values = np.floor(np.minimum(np.sqrt(coeff * dy ** 2 + coeff * dx ** 2), 255)).min(1)
    return values.reshape(points.shape).astype(np.uint8)


# distance maps -------------------------------------------------------------------------------------------

def test_scribble_map_of_a_single_point():
    scribble = np.full((5, 7), 255, np.uint8)
    scribble[2, 3] = 4
    scribble[0, 0] = 0  # a background scribble is not a point
    out = scribble_map(scribble, 0.0)  # l = 1: plain Euclidean distance
    gy, gx = np.indices(scribble.shape)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, 255 - np.floor(np.hypot(gy - 2, gx - 3)).astype(np.uint8))
    # lam = 2: sqrt(e^2 * 9) = 3e = 8.15 -> 8
    assert scribble_map(scribble, 2.0)[2, 6] == 255 - 8


def test_distance_saturates_at_255():
    points = np.zeros((3, 400), bool)
    points[0, 0] = True
    out = distance_bytes(points, 0.0)
    assert out[0, 254] == 254 and out[0, 255] == 255 and out[2, 399] == 255


def test_empty_foreground():
    only_background = np.where(np.eye(6, dtype=bool), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(scribble_map(only_background, 1.0), 0)
    np.testing.assert_array_equal(pseudo_map(only_background, 6.0), 255)
    np.testing.assert_array_equal(pseudo_map(np.zeros((4, 5), np.uint8), 6.0), 255)


def test_pseudo_boundary_touching_the_image_edge():
    pseudo = np.ones((7, 9), np.uint8)  # foreground everywhere: the boundary is the image's border
    gy, gx = np.indices(pseudo.shape)
    np.testing.assert_array_equal(pseudo_map(pseudo, 0.0), np.minimum.reduce([gy, gx, 6 - gy, 8 - gx]))
    pseudo = np.zeros((5, 6), np.uint8)
    pseudo[:, :2] = 3  # a band along the left edge; 255 (void) is not foreground
    pseudo[0, 2] = 255
    expected = np.zeros((5, 6), bool)
    expected[:, :2] = True  # two columns wide: every pixel touches the edge or the background
    np.testing.assert_array_equal(boundary(pseudo), expected)
    np.testing.assert_array_equal(pseudo_map(pseudo, 0.0)[2], [0, 0, 1, 2, 3, 4])


@pytest.mark.parametrize("lam", [0.0, 1.0, 2.0, 6.0, 7.0, 0.3])
def test_distance_bytes_equal_the_brute_force_definition(lam):
    rng = np.random.default_rng(int(lam * 10))
    for _ in range(12):
        h, w = rng.integers(1, 30, 2)
        points = rng.random((h, w)) < rng.choice([0.003, 0.03, 0.3])
        expected = reference_bytes(points, lam)
        np.testing.assert_array_equal(distance_bytes(points, lam), expected)
        np.testing.assert_array_equal(brute_force(points, lam), expected)
    labels = rng.choice(np.array([0, 1, 2, 255], np.uint8), (23, 31), p=[0.3, 0.05, 0.05, 0.6])
    np.testing.assert_array_equal(scribble_map(labels, lam), 255 - reference_bytes((labels == 1) | (labels == 2), lam))
    np.testing.assert_array_equal(pseudo_map(labels, lam), reference_bytes(boundary(labels), lam))


def test_coefficient_is_the_release_scripts_value():
    """The values makedistancemap_fromCAM_multiprocessing.py lists for lambda 0..9, bit for bit."""
    listed = ["1.0", "2.718281828459045", "7.3890560989306495", "20.085536923187664", "54.59815003314423",
              "148.41315910257657", "403.428793492735", "1096.6331584284583", "2980.957987041727", "8103.08392757538"]
    assert [distance.coefficient(lam) for lam in range(10)] == [float(v) for v in listed]


def test_pseudo_map_keeps_the_release_boxes_below_coefficient_e():
    """The release's 3-d path visits rows py - 155 .. py + 154 around each point (sized for l = e): with
    l = 1 a pixel 155 rows below the last boundary row stays 255 although its distance is 155."""
    pseudo = np.zeros((400, 6), np.uint8)
    pseudo[:2] = 1  # boundary rows 0 and 1
    out = pseudo_map(pseudo, 0.0)
    assert distance.release_box() == 155
    assert out[155, 3] == 154 and out[156, 3] == 255 and out[300, 3] == 255
    assert distance_bytes(boundary(pseudo), 0.0)[156, 3] == 155  # the definition without boxes
    rng = np.random.default_rng(3)
    blobs = (rng.random((8, 10)) < 0.3).repeat(40, 0).repeat(40, 1).astype(np.uint8)  # 320 x 400
    for lam in (1.0, 6.0):  # l >= e: the boxes cover every value below 255
        np.testing.assert_array_equal(pseudo_map(blobs, lam), brute_force(boundary(blobs), lam))


def test_pixels_in_doubt_take_the_brute_force(monkeypatch):
    """With every value 'near an integer', every pixel goes through the brute-force fallback: same bytes."""
    monkeypatch.setattr(distance, "NEAR_INTEGER", 1.0)  # read at each call
    points = np.random.default_rng(7).random((13, 17)) < 0.05
    np.testing.assert_array_equal(distance.distance_bytes(points, 2.0), reference_bytes(points, 2.0))


def test_distance_bytes_of_a_torch_tensor():
    points = torch.rand(9, 11, generator=torch.Generator().manual_seed(0)) < 0.1
    np.testing.assert_array_equal(distance_bytes(points, 1.0), reference_bytes(points.numpy(), 1.0))


# losses --------------------------------------------------------------------------------------------------

def test_distance_entropy_is_lower_for_a_confident_prediction():
    weights = torch.rand(2, 6, 5, generator=torch.Generator().manual_seed(1))
    confident = torch.zeros(2, 3, 6, 5)
    confident[:, 1] = 8.0
    uniform = torch.zeros(2, 3, 6, 5)
    assert distance_entropy(confident, weights) < distance_entropy(uniform, weights)
    # uniform: entropy log 3 everywhere, so the loss is log 3 times the mean weight (all weights > 0)
    assert distance_entropy(uniform, weights).item() == pytest.approx(math.log(3) * weights.mean().item(), rel=1e-5)


def release_distance_entropy(pred: np.ndarray, distancemap: np.ndarray) -> float:
    """loss.py DistanceMapMinEntropy.forward in float64: -sum(d p log p) / count_nonzero(d sum_c p log p)."""
    log_p = pred - pred.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    entropy = (distancemap[:, None] * np.exp(log_p) * log_p).sum(1)
    return -entropy.sum() / np.count_nonzero(entropy)


def test_distance_entropy_equals_the_released_loss():
    """On logits upsampled with corners aligned (train.py's pred_sg_up), averaged over the pixels where
    d * entropy is non-zero: pixels of zero weight and pixels of zero entropy (a saturated prediction) do not
    count."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 3, 5, generator=g, dtype=torch.float64)
    logits[1, 2, 1:] = 1e4  # a saturated prediction: entropy exactly 0 there
    weights = torch.rand(2, 6, 10, generator=g, dtype=torch.float64)
    weights[0, :2] = 0
    up = torch.nn.functional.interpolate(logits, (6, 10), mode="bilinear", align_corners=True).numpy()
    expected = release_distance_entropy(up, weights.numpy())
    got = distance_entropy(logits, weights).item()
    assert got == pytest.approx(expected, rel=1e-10)
    p = np.exp(up - up.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.count_nonzero((weights.numpy() != 0) & ((p * np.log(np.maximum(p, 1e-300))).sum(1) == 0)) > 0


def test_label_smoothed_cross_entropy_equals_eq_9():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 5, 6), generator=g)
    labels[0, 0] = 255
    log_p = torch.log_softmax(logits, 1).numpy()
    lab = labels.numpy()
    valid = lab != 255
    nll = -np.take_along_axis(log_p, np.where(valid, lab, 0)[:, None], 1)[:, 0]
    uniform = -log_p.mean(1)
    expected = (0.9 * nll + 0.1 * uniform)[valid].mean()
    assert cross_entropy(logits, labels, 0.1).item() == pytest.approx(expected, rel=1e-10)


def lorm_reference(module: LoRM, features: torch.Tensor, pseudo: torch.Tensor) -> float:
    """Eq. 10-13 in float64 numpy with the HW x HW matrix, the row mask from the resized foreground."""
    f = features.detach().double().numpy()
    b, c, h, w = f.shape
    wq, bq = module.query.weight.detach().double().numpy()[:, :, 0, 0], module.query.bias.detach().double().numpy()
    wk, bk = module.key.weight.detach().double().numpy()[:, :, 0, 0], module.key.bias.detach().double().numpy()
    fg = ((pseudo != 0) & (pseudo != 255)).float()[:, None]
    rows = (torch.nn.functional.interpolate(fg, (h, w), mode="bilinear", align_corners=True) > 0).flatten(1).numpy()
    total, count = 0.0, 0
    for i in range(b):
        flat = f[i].reshape(c, -1)  # [C, HW]
        q, k = wq @ flat + bq[:, None], wk @ flat + bk[:, None]
        sim = (q.T @ k) / np.outer(np.linalg.norm(q, axis=0), np.linalg.norm(k, axis=0))  # Eq. 10
        a = np.exp(sim - sim.max(1, keepdims=True))
        a /= a.sum(1, keepdims=True)
        a_masked = rows[i][:, None] * a  # Eq. 11
        rectified = module.delta.item() * (flat @ a_masked.T)  # Eq. 12: column j = sum_i A'[j, i] F_i
        error = (flat - rectified) ** 2
        total, count = total + error.sum(), count + np.count_nonzero(error)
    return total / count  # Eq. 13 as released


def test_lorm_equals_the_dense_float64_reference_and_keeps_its_label():
    torch.manual_seed(4)
    module = LoRM(6).double()
    with torch.no_grad():
        module.delta.fill_(0.8)
    features = torch.randn(2, 6, 4, 5, dtype=torch.float64).relu().requires_grad_()
    pseudo = torch.randint(0, 3, (2, 32, 40))
    pseudo[0, :10] = 255
    pseudo[1] = 0  # no foreground: every row masked
    before = pseudo.clone()
    for fn in (module, module.dense):
        loss = fn(features, pseudo)
        assert loss.item() == pytest.approx(lorm_reference(module, features, pseudo), rel=1e-9)
        loss.backward()
        assert torch.equal(pseudo, before)


def lorm_case(seed, batch=3, channels=5, size=(4, 5)):
    """A float64 LoRM with non-zero biases and delta != 1, ReLU features, and pseudo-labels whose row masks
    are mixed (image 0), all background (1) and all foreground (2)."""
    torch.manual_seed(seed)
    module = LoRM(channels).double()
    with torch.no_grad():
        module.delta.fill_(0.8)
        module.query.bias.normal_()
        module.key.bias.normal_()
    features = torch.randn(batch, channels, *size, dtype=torch.float64).relu().requires_grad_()
    pseudo = torch.randint(1, 3, (batch, size[0] * 8, size[1] * 8))
    pseudo[0, :, :20] = 0
    pseudo[1] = 0
    rows = foreground_rows(pseudo, size)
    assert 0 < rows[0].sum() < rows.shape[1] and not rows[1].any() and rows[2].all()
    return module, features, pseudo


@pytest.mark.parametrize("block, memory_format", [(2 ** 20, torch.contiguous_format), (60, torch.channels_last)])
def test_lorm_loss_and_gradients_equal_the_dense_computation(monkeypatch, block, memory_format):
    """All gradients (features, both convolutions, delta), one block per image or blocks of 3 query rows
    (the last one partial), features as trained (channels-last) or not."""
    monkeypatch.setattr("wsss.cdsp.losses._BLOCK", block)
    module, features, pseudo = lorm_case(5)
    features = features.detach().to(memory_format=memory_format).requires_grad_()
    results = []
    for fn in (module, module.dense):
        module.zero_grad()
        features.grad = None
        loss = fn(features, pseudo)
        loss.backward()
        results.append([loss.detach(), features.grad] + [p.grad for p in module.parameters()])
    assert len(results[0]) == 7
    for new, dense in zip(*results):
        torch.testing.assert_close(new, dense, rtol=1e-9, atol=1e-12)


def test_lorm_loss_passes_gradcheck(monkeypatch):
    monkeypatch.setattr("wsss.cdsp.losses._BLOCK", 12)  # 2 query rows per block
    torch.manual_seed(6)
    features = torch.randn(2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    weights = [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in ((3, 3), 3, (3, 3), 3, 1)]
    rows = torch.tensor([[1, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda *inputs: rectification_loss(*inputs, rows), (features, *weights))


def test_lorm_computes_in_float32_under_autocast():
    """Mixed-precision training autocasts the network: LoRM takes the features in its weights' type."""
    torch.manual_seed(7)
    module = LoRM(4)
    features = torch.randn(2, 4, 3, 3).relu()
    pseudo = torch.randint(0, 3, (2, 24, 24))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = module(features.bfloat16(), pseudo)
    assert mixed.dtype == torch.float32
    assert mixed.item() == module(features.bfloat16().float(), pseudo).item()


def release_lr(step: int, max_step: int, warmup: int, lr_max: float = 1.0) -> float:
    """CDSP's train.py adjust_learning_rate(optimizer, step, max_step, 0, lr_max, warmup) for step < max_step."""
    if step < warmup:
        return lr_max * step / warmup
    return (lr_max - 0) * (1 + math.cos(math.pi * (step - warmup) / (max_step - warmup))) / 2


def test_cosine_learning_rate_is_the_releases_from_zero():
    params = dict(lr_policy="cosine", warmup_iters=5)
    for it in range(50):
        assert training.lr_factor(params, it, 50) == pytest.approx(release_lr(it, 50, 5), rel=1e-12, abs=1e-15)
    assert training.lr_factor(params, 0, 50) == 0  # the warm-up starts from 0


# pseudo-labels, scribbles, tags ---------------------------------------------------------------------------

def test_cam_label_thresholds_and_merges():
    cams = np.array([[[0.9, 0.2, 0.5]], [[0.4, 0.1, 0.7]]], np.float32)  # classes 2 and 5
    np.testing.assert_array_equal(cdsp_pseudo_labels.cam_label(cams, np.array([2, 5]), 0.3), [[2, 0, 5]])


def test_pseudo_labels_take_their_classes_from_the_scribbles(tiny_voc, tmp_path):
    """Eq. 4: the classes are those drawn in the scribble set the network trains on (Fig. 7's dropped sets too),
    not the image tags: CAMs of every class of the image, a scribble set with one class dropped per image."""
    root, class_names = tiny_voc
    ids = voc.read_ids(root, "train")
    rng = np.random.default_rng(0)
    (tmp_path / "cams").mkdir()
    (tmp_path / "dropped").mkdir()
    drawn = {}
    for image_id in ids:
        scribble = voc.load_scribble(voc.path(root, "scribble", image_id), len(class_names))
        h, w = scribble.shape
        keys = np.arange(1, len(class_names), dtype=np.int64)  # a CAM for every class, present or not
        high_res = rng.random((len(keys), h, w)).astype(np.float32)
        save_npz(tmp_path / "cams" / f"{image_id}.npz", keys=keys, high_res=high_res,
                 cam=high_res[:, ::4, ::4].copy())
        present = sorted(set(np.unique(scribble).tolist()) - {0, 255})
        kept = present[1:]  # the first class's strokes dropped
        save_png(tmp_path / "dropped" / f"{image_id}.png", np.where(np.isin(scribble, kept) | (scribble == 0),
                                                                    scribble, 255).astype(np.uint8))
        drawn[image_id] = (high_res, present, kept)
    params = dict(class_names=class_names, split="train", threshold=0.3)
    cdsp_pseudo_labels.run(params, root=root, cams=tmp_path / "cams", out=tmp_path / "original")
    cdsp_pseudo_labels.run(params, root=root, cams=tmp_path / "cams", out=tmp_path / "fewer",
                           scribbles=tmp_path / "dropped")
    for image_id, (high_res, present, kept) in drawn.items():
        for folder, classes in (("original", present), ("fewer", kept)):
            expected = np.array([0, *classes])[np.concatenate(
                [np.full((1, *high_res.shape[1:]), 0.3), high_res[np.array(classes, int) - 1]]).argmax(0)]
            got = voc.load_mask(tmp_path / folder / f"{image_id}.png", len(class_names))
            np.testing.assert_array_equal(got, expected)


def two_strokes():
    scribble = np.full((12, 20), 255, np.uint8)
    scribble[2:5, 1:18] = 3  # a 3 px wide object stroke, 17 long
    scribble[8, 3:9] = 0  # a background stroke
    scribble[10, 12] = 1  # a one-pixel stroke
    return scribble


def test_shrink_at_one_leaves_one_point_per_stroke():
    scribble = two_strokes()
    out = shrink(scribble, 1.0)
    found = list(strokes(out))
    assert len(found) == 3 and all(mask.sum() == 1 for _, mask in found)
    assert sorted(label for label, _ in found) == [0, 1, 3]
    assert out[2, 9] == 3  # the object stroke's centre: column 9, the first row in raster order
    np.testing.assert_array_equal(shrink(scribble, 0.0), scribble)


def test_shrink_halves_a_stroke_around_its_centre():
    scribble = np.full((3, 21), 255, np.uint8)
    scribble[1] = 2
    out = shrink(scribble, 0.5)
    np.testing.assert_array_equal(np.nonzero(out[1] != 255)[0], np.arange(5, 16))


def test_drop_at_zero_changes_nothing_and_at_one_keeps_background():
    scribble = two_strokes()
    np.testing.assert_array_equal(drop(scribble, 0.0, np.random.default_rng(0)), scribble)
    dropped = drop(scribble, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(dropped, np.where(scribble == 0, 0, 255))


def test_tags_from_scribbles(tiny_voc):
    root, class_names = tiny_voc
    ids = voc.read_ids(root, "train")
    tags = voc.image_tags(root, ids, class_names, "scribbles")
    for row, image_id in enumerate(ids):
        scribble = voc.load_scribble(voc.path(root, "scribble", image_id), len(class_names))
        present = {c for c in np.unique(scribble) if c not in (0, 255)}
        assert set(np.flatnonzero(tags[row]) + 1) == present


# the stages end to end --------------------------------------------------------------------------------------

def test_cdsp_stages_end_to_end(tiny_voc, tmp_path):
    root, class_names = tiny_voc
    ids = voc.read_ids(root, "train")
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    for image_id in ids:  # the ground truth as pseudo-labels (the CAM route is tested by cam_label above)
        mask = voc.load_mask(voc.path(root, "mask", image_id), len(class_names))
        save_png(pseudo / f"{image_id}.png", np.where(mask == 255, 0, mask).astype(np.uint8), voc.voc_palette())
    cdsp_scribbles.run(dict(class_names=class_names, split="train", mode="drop", ratio=0.5), root=root,
                       out=tmp_path / "drop50")
    cdsp_distance_maps.run(dict(class_names=class_names, split="train", lambda_s=1.0, lambda_c=6.0), root=root,
                           pseudo=pseudo, out_scribble=tmp_path / "ds", out_pseudo=tmp_path / "dc",
                           scribbles=tmp_path / "drop50")
    scribble = voc.load_scribble(tmp_path / "drop50" / f"{ids[0]}.png", len(class_names))
    np.testing.assert_array_equal(voc.load_grey(tmp_path / "ds" / f"{ids[0]}.png", "map"), scribble_map(scribble, 1.0))
    params = dict(seed=0, device="cpu", class_names=class_names, split="train", arch="deeplab_v2", backbone="small",
                  pretrained=None, crop=48, batch_size=4, epochs=20, warmup_epochs=1, lr=0.01, momentum=0.9,
                  weight_decay=0.0005)
    train_cdsp.run(params, root=root, pseudo=pseudo, dist_scribble=tmp_path / "ds", dist_pseudo=tmp_path / "dc",
                   out=tmp_path / "model.pt", scribbles=tmp_path / "drop50")
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert not any(k.startswith(("seg.", "lorm.")) for k in saved["state_dict"])
    assert len(saved["history"]["loss"]) == 20 and all(np.isfinite(saved["history"]["loss"]))
    infer_seg.run(dict(split="val", device="cpu", scales=[1.0], crf=False), root=root, model=tmp_path / "model.pt",
                  out=tmp_path / "pred")
    eval_seg.run(dict(class_names=class_names, split="val", method="cdsp"), root=root, pred=tmp_path / "pred",
                 out=tmp_path / "seg_cdsp.csv")
    # 40 steps from scratch on 8 images of ground truth: 0.36 (2026-12-07); background everywhere scores 0.12,
    # training on the LoRM term alone (no labels) 0.03
    assert cdsp_tables.network_miou([tmp_path / "seg_cdsp.csv"])["cdsp"] > 0.25


def test_one_learning_rate_and_the_release_augmentation_by_default(tiny_voc, tmp_path, monkeypatch):
    """train.py: one SGD group (heads and LoRM at the backbone's rate); transform_exten.py: rotation [-10, 10]
    and a Gaussian blur; only the DeepLab network is saved."""
    root, class_names = tiny_voc
    seen = {}
    monkeypatch.setattr(train_cdsp, "fit", lambda model, groups, dataset, *a, saved, **k: seen.update(
        model=model, groups=groups, augment=dataset.augment, saved=saved))
    folder = tmp_path / "labels"
    folder.mkdir()
    for image_id in voc.read_ids(root, "train"):
        save_png(folder / f"{image_id}.png", np.zeros((64, 64), np.uint8))
    train_cdsp.run(dict(class_names=class_names, split="train", arch="deeplab_v2", backbone="small", pretrained=None,
                        batch_size=4, lr=0.01, weight_decay=0.0005, device="cpu"),
                   root=root, pseudo=folder, dist_scribble=folder, dist_pseudo=folder, out=tmp_path / "m.pt")
    assert {mult for _, mult in seen["groups"]} == {1.0}
    grouped = {id(p) for params, _ in seen["groups"] for p in params}
    assert grouped == {id(p) for p in seen["model"].parameters()}  # LoRM included
    assert seen["augment"].rotate == 10 and seen["augment"].blur and seen["saved"] is seen["model"].seg


def test_psi_trains_on_the_given_scribble_folder(tiny_voc, tmp_path):
    root, class_names = tiny_voc
    cdsp_scribbles.run(dict(class_names=class_names, split="train", mode="drop", ratio=1.0), root=root,
                       out=tmp_path / "drop100")
    params = dict(seed=0, device="cpu", class_names=class_names, split="train", backbone="small", crop=48,
                  batch_size=4, epochs=2, lr=0.01, weight_decay=0.001, cpp=False, head_channels=16, lambda_1=1.0,
                  sld_radius=4, steps=1)
    train_psi.run(params, root=root, out=tmp_path / "psi.pt", supervision=tmp_path / "sup",
                  scores=tmp_path / "scores.csv", scribbles=tmp_path / "drop100")
    for image_id in voc.read_ids(root, "train"):
        given = voc.load_scribble(tmp_path / "drop100" / f"{image_id}.png", len(class_names))
        assert not np.isin(given, range(1, len(class_names))).any()  # every object stroke dropped
        t0, t1 = (voc.load_mask(tmp_path / "sup" / t / f"{image_id}.png", len(class_names)) for t in ("t0", "t1"))
        np.testing.assert_array_equal(t0, given)  # trained on the given set, not the root's scribbles
        assert not np.isin(t1, range(1, len(class_names))).any()  # diffusion spreads only the given classes
    with pytest.raises(voc.DataError):
        train_psi.run(params, root=root, out=tmp_path / "psi2.pt", supervision=tmp_path / "sup2",
                      scores=tmp_path / "scores2.csv", scribbles=tmp_path / "missing")


def test_cdsp_tables(tiny_voc, tmp_path):
    root, class_names = tiny_voc
    full = ["segs", "segc", "lorm", "ds", "dc"]
    nets = {"cdsp": dict(losses=full, source="cam", scribbles="original"),
            "cdsp_segs": dict(losses=["segs"], source="cam", scribbles="original"),
            "cdsp_pl_gt": dict(losses=full, source="gt", scribbles="original"),
            "cdsp_drop50": dict(losses=full, source="cam", scribbles="drop50"),
            "cdsp_segs_shrink100": dict(losses=["segs"], source="cam", scribbles="shrink100")}
    psi_nets = {"psi": "original", "psi_drop50": "drop50"}
    files = []
    for i, net in enumerate([*nets, *psi_nets]):
        files.append(tmp_path / f"seg_{net}.csv")
        metrics.write(files[-1], [dict(stage="seg", method=net, split="val", metric="iou", **{"class": ""},
                                       value=0.5 + i / 10)])
    out = {k: tmp_path / f"{k}.csv" for k in ("table2", "table3", "fig7")}
    cdsp_tables.run(dict(class_names=class_names, split="train", nets=nets, main=dict(losses=full, source="cam"),
                         sources=["cam", "gt"], all_losses=full, psi_nets=psi_nets), root=root, metrics_csv=files,
                    pseudo=[root / "SegmentationClass", root / "SegmentationClass"], plot=tmp_path / "fig7.png", **out)
    table2 = pd.read_csv(out["table2"])
    assert list(table2["net"]) == ["cdsp", "cdsp_segs"] and list(table2["segc"]) == [1, 0]
    table3 = pd.read_csv(out["table3"])
    assert list(table3["net"]) == ["cdsp", "cdsp_pl_gt"] and np.allclose(table3["pseudo_miou"], 1.0)
    fig7 = pd.read_csv(out["fig7"])
    drop = fig7[(fig7["method"] == "cdsp") & (fig7["mode"] == "drop")]
    assert list(drop["ratio"]) == [0.0, 0.5] and np.allclose(drop["miou"], [0.5, 0.8])
    shrink = fig7[(fig7["method"] == "scribble_only") & (fig7["mode"] == "shrink")]
    assert list(shrink["ratio"]) == [0.0, 1.0] and np.allclose(shrink["miou"], [0.6, 0.9])
    psi = fig7[fig7["method"] == "psi"]
    assert list(zip(psi["mode"], psi["ratio"], psi["net"])) == [("drop", 0.0, "psi"), ("drop", 0.5, "psi_drop50"),
                                                                 ("shrink", 0.0, "psi")]
    assert np.allclose(psi["miou"], [1.0, 1.1, 1.0])
    assert (tmp_path / "fig7.png").stat().st_size > 0


def test_pseudo_label_threshold_auto_is_the_cams_otsu_cut(tiny_voc, tmp_path):
    """threshold `auto` (the Lite0 demos) cuts where wsss.cam.calibration's Otsu threshold of the CAMs does."""
    root, class_names = tiny_voc
    ids = voc.read_ids(root, "train")
    rng = np.random.default_rng(1)
    (tmp_path / "cams").mkdir()
    for image_id in ids:
        h, w = voc.image_shape(voc.path(root, "image", image_id))
        high_res = (rng.random((len(class_names) - 1, h, w)) ** 3).astype(np.float32)
        save_npz(tmp_path / "cams" / f"{image_id}.npz", keys=np.arange(1, len(class_names)), high_res=high_res,
                 cam=high_res[:, ::4, ::4].copy())
    t = calibration.otsu_threshold(tmp_path / "cams", ids)
    params = dict(class_names=class_names, split="train")
    cdsp_pseudo_labels.run({**params, "threshold": "auto"}, root=root, cams=tmp_path / "cams", out=tmp_path / "auto")
    cdsp_pseudo_labels.run({**params, "threshold": t}, root=root, cams=tmp_path / "cams", out=tmp_path / "fixed")
    cdsp_pseudo_labels.run({**params, "threshold": 0.05}, root=root, cams=tmp_path / "cams", out=tmp_path / "low")
    labels = {k: np.stack([voc.load_mask(tmp_path / k / f"{i}.png", len(class_names)) for i in ids])
              for k in ("auto", "fixed", "low")}
    assert 0.1 < t < 0.9
    np.testing.assert_array_equal(labels["auto"], labels["fixed"])
    assert not np.array_equal(labels["auto"], labels["low"])
