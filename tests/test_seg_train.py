"""train_seg (batches, schedule, kill-and-resume, precise BN), infer_seg and eval_seg on the tiny set."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch

from wsss import training
from wsss.crf import dense_crf
from wsss.datasets import voc
from wsss.io import save_png
from wsss.models import deeplab, load_segmenter
from wsss.models.backbone import FixedBatchNorm
from wsss.seg import eval_seg, infer_seg, train_seg


pytestmark = pytest.mark.usefixtures("one_thread")


def _params(class_names, **over):
    return dict(dict(seed=3, device="cpu", class_names=class_names, split="train", arch="deeplab_v2",
                     backbone="small", pretrained=None, crop=48, scale=[0.5, 2.0], batch_size=2, iterations=6,
                     lr=0.01, lr_policy="poly", power=0.9, momentum=0.9, weight_decay=0.0005, head_lr_mult=10,
                     checkpoint_every=2), **over)


def test_batch_plan_is_a_function_of_the_iteration():
    full = list(training.BatchPlan(5, 2, seed=1, start=0, n_iters=6))
    assert list(training.BatchPlan(5, 2, seed=1, start=3, n_iters=6)) == full[3:]
    for epoch in range(3):  # 2 batches per epoch; the fifth image is dropped
        indices = [i for batch in full[2 * epoch:2 * epoch + 2] for i, _ in batch]
        assert len(set(indices)) == 4
    assert full != list(training.BatchPlan(5, 2, seed=2, start=0, n_iters=6))


def test_ranks_split_every_batch_of_the_plan():
    """Two DDP ranks draw the same global batches as one process, each its half (augmentation seeds too)."""
    whole = list(training.BatchPlan(9, 4, seed=5, start=0, n_iters=6))
    halves = [list(training.BatchPlan(9, 4, seed=5, start=0, n_iters=6, rank=r, world=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == whole
    with pytest.raises(ValueError, match="does not split evenly over 3"):
        training.BatchPlan(9, 4, seed=5, start=0, n_iters=6, rank=0, world=3)


def test_lr_schedules():
    assert training.lr_factor({"lr_policy": "poly", "power": 0.9}, 50, 100) == pytest.approx(0.5 ** 0.9)
    step = {"lr_policy": "step", "lr_step": 2000, "lr_gamma": 0.1}
    assert training.lr_factor(step, 1999, 8000) == 1
    assert training.lr_factor(step, 4000, 8000) == pytest.approx(0.01)


def test_killed_and_resumed_run_ends_with_the_same_weights(tiny_voc, tmp_path, monkeypatch, kill_train_seg_at):
    root, names = tiny_voc
    params = _params(names)
    labels = root / "SegmentationClass"
    train_seg.run(params, root=root, labels=labels, out=tmp_path / "straight.pt")

    seen = kill_train_seg_at(5)  # dies in iteration 5, after the checkpoint of iteration 4
    with pytest.raises(KeyboardInterrupt):
        train_seg.run(params, root=root, labels=labels, out=tmp_path / "resumed.pt")
    assert (tmp_path / "resumed.pt.ckpt").is_file() and not (tmp_path / "resumed.pt").exists()
    monkeypatch.undo()
    seen = kill_train_seg_at(99)
    train_seg.run(params, root=root, labels=labels, out=tmp_path / "resumed.pt")
    assert len(seen) == 2  # only iterations 4 and 5 ran again
    assert not (tmp_path / "resumed.pt.ckpt").exists()

    straight = torch.load(tmp_path / "straight.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert params.items() <= resumed["params"].items()
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key


def test_train_log_has_every_iteration_also_when_resumed(tiny_voc, tmp_path, monkeypatch, kill_train_seg_at):
    """train_log.csv beside the model: one row per iteration (loss, lr of the poly schedule), the same for a
    killed-and-resumed run as for a straight one."""
    root, names = tiny_voc
    params, labels = _params(names), root / "SegmentationClass"
    train_seg.run(params, root=root, labels=labels, out=tmp_path / "straight" / "m.pt")
    kill_train_seg_at(5)
    with pytest.raises(KeyboardInterrupt):
        train_seg.run(params, root=root, labels=labels, out=tmp_path / "resumed" / "m.pt")
    assert len(pd.read_csv(tmp_path / "resumed" / training.TRAIN_LOG)) == 4  # as of the checkpoint
    monkeypatch.undo()
    train_seg.run(params, root=root, labels=labels, out=tmp_path / "resumed" / "m.pt")
    straight, resumed = (pd.read_csv(tmp_path / d / training.TRAIN_LOG) for d in ("straight", "resumed"))
    assert list(straight.iteration) == list(range(6)) and (straight.seconds > 0).all()
    assert straight.lr.tolist() == pytest.approx([0.01 * (1 - i / 6) ** 0.9 for i in range(6)])
    columns = ["iteration", "epoch", "loss", "lr"]
    pd.testing.assert_frame_equal(straight[columns], resumed[columns])


def test_mixed_precision_trains_on_the_cpu(tiny_voc, tmp_path):
    """amp on the CPU: bfloat16 autocast of the forward pass; the loss stays finite and is not the float32
    run's (reduced precision did happen), the network is saved in float32."""
    root, names = tiny_voc
    losses = {}
    for amp in (False, True):
        out = tmp_path / str(amp) / "m.pt"
        train_seg.run(_params(names, amp=amp, iterations=2), root=root, labels=root / "SegmentationClass", out=out)
        losses[amp] = pd.read_csv(out.with_name(training.TRAIN_LOG)).loss
    assert np.isfinite(losses[True]).all() and not np.array_equal(losses[True], losses[False])
    assert losses[True].tolist() == pytest.approx(losses[False].tolist(), rel=0.05)
    state = torch.load(tmp_path / "True" / "m.pt", weights_only=True)["state_dict"]
    assert all(v.dtype != torch.bfloat16 for v in state.values())


def test_checkpoint_of_other_params_is_not_resumed(tiny_voc, tmp_path, monkeypatch, kill_train_seg_at):
    root, names = tiny_voc
    labels = root / "SegmentationClass"
    kill_train_seg_at(3)
    with pytest.raises(KeyboardInterrupt):
        train_seg.run(_params(names, lr=0.02), root=root, labels=labels, out=tmp_path / "m.pt")
    monkeypatch.undo()
    seen = kill_train_seg_at(99)
    train_seg.run(_params(names, iterations=2), root=root, labels=labels, out=tmp_path / "m.pt")
    assert len(seen) == 2


def test_missing_pseudo_label_is_named(tiny_voc, tmp_path):
    root, names = tiny_voc
    first = voc.read_ids(root, "train")[0]
    (root / "SegmentationClass" / f"{first}.png").unlink()
    with pytest.raises(voc.DataError, match=f"{first}.png: pseudo-label not found"):
        train_seg.run(_params(names), root=root, labels=root / "SegmentationClass", out=tmp_path / "m.pt")


def _val_rows(root, names, pred, tmp_path):
    eval_seg.run(dict(split="val", class_names=names, method="m"), root=root, pred=pred, out=tmp_path / "m.csv")
    table = pd.read_csv(tmp_path / "m.csv", keep_default_na=False, na_values={"value": [""]})
    assert set(table["stage"]) == {"seg"} and set(table["method"]) == {"m"}
    return table[table["metric"] == "iou"].set_index("class")["value"]


def test_eval_seg_scores_hand_made_predictions(tiny_voc, tmp_path):
    root, names = tiny_voc
    perfect, everything_bg, n_bg, n_valid = tmp_path / "gt", tmp_path / "bg", 0, 0
    for image_id in voc.read_ids(root, "val"):
        gt = voc.load_mask(voc.path(root, "mask", image_id), len(names))
        save_png(perfect / f"{image_id}.png", np.where(gt == 255, 0, gt), voc.voc_palette())
        save_png(everything_bg / f"{image_id}.png", np.zeros_like(gt), voc.voc_palette())
        n_bg, n_valid = n_bg + (gt == 0).sum(), n_valid + (gt != 255).sum()
    assert _val_rows(root, names, perfect, tmp_path)[""] == 1.0  # void pixels do not count
    iou = _val_rows(root, names, everything_bg, tmp_path)
    assert iou["background"] == pytest.approx(n_bg / n_valid)
    present = [c for c in names[1:] if iou[c] == iou[c]]  # classes in the val ground truth
    assert present and all(iou[c] == 0 for c in present)


def test_eval_seg_rejects_unlabelled_predictions(tiny_voc, tmp_path):
    root, names = tiny_voc
    with pytest.raises(voc.DataError, match="val_00000.png: prediction holds ignore"):
        eval_seg.run(dict(split="val", class_names=names, method="m"), root=root, pred=root / "SegmentationClass",
                     out=tmp_path / "m.csv")


def _random_segmenter(path, names):
    """A DeepLab-v2 file with seeded random weights whose logits vary from pixel to pixel (a barely trained
    network predicts background everywhere, and every way of fusing its outputs gives the same labels)."""
    params = dict(arch="deeplab_v2", backbone="small", class_names=names, pretrained=None)
    torch.manual_seed(0)
    model = deeplab.build(params)
    for conv in model.aspp:
        torch.nn.init.normal_(conv.weight, std=0.05)
        torch.nn.init.zeros_(conv.bias)
    torch.save({"state_dict": model.state_dict(), "params": params}, path)
    return load_segmenter(path)


def _margin(probs):
    top = np.sort(probs, 0)
    return top[-1] - top[-2]


def test_infer_seg_fuses_scales_and_flips_then_applies_the_crf(tiny_voc, tmp_path):
    """Each label is the argmax of softmax(sum of the logits at every scale, of the image and of its mirror
    mirrored back), after the dense CRF when asked: checked against the same sum built in float64 from
    single-scale, unmirrored predictions (log-softmaxes differ from logits by a per-pixel constant, which the
    softmax ignores). Leaving out the flip, a scale or the CRF changes many labels, so each is seen."""
    root, names = tiny_voc
    net = _random_segmenter(tmp_path / "m.pt", names)
    scales = [0.75, 1.0]
    for crf in (False, True):
        infer_seg.run(dict(split="val", scales=scales, flip=True, crf=crf, device="cpu"), root=root,
                      model=tmp_path / "m.pt", out=tmp_path / f"crf{crf}")

    def log_probs(image, scale):
        return np.log(infer_seg.predict(net, np.ascontiguousarray(image), [scale], False, "cpu").astype(np.float64))

    def softmax(z):
        e = np.exp(z - z.max(0))
        return e / e.sum(0)

    changed = dict(flip=[], scale=[], crf=[])
    for image_id in voc.read_ids(root, "val"):
        image = voc.load_image(voc.path(root, "image", image_id))
        plain = {s: log_probs(image, s) for s in scales}
        mirrored = {s: log_probs(image[:, ::-1], s)[..., ::-1] for s in scales}
        fused = softmax(sum(plain.values()) + sum(mirrored.values()))
        refined = dense_crf(image, fused.astype(np.float32))
        for crf, expected in ((False, fused), (True, refined)):
            label = voc.load_mask(tmp_path / f"crf{crf}" / f"{image_id}.png", len(names), image.shape[:2])
            clear = _margin(expected) > 1e-4  # float32 (the stage) and float64 agree away from ties
            assert clear.mean() > 0.99 and np.array_equal(label[clear], expected.argmax(0)[clear]), (image_id, crf)
        labels = fused.argmax(0)
        changed["flip"].append((softmax(sum(plain.values())).argmax(0) != labels).mean())
        changed["scale"].append((softmax(plain[1.0] + mirrored[1.0]).argmax(0) != labels).mean())
        changed["crf"].append((refined.argmax(0) != labels).mean())
    assert all(np.mean(fraction) > 0.01 for fraction in changed.values()), changed


def test_retrain_loss_on_the_output_grid():
    # DSRG's retrain (train-f.prototxt): the labels are sampled onto the 41 x 41 grid (cells at 8 i), the
    # logits are not upsampled
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 41, 41)
    labels = torch.randint(0, 3, (2, 321, 321))
    labels[:, :16] = 255  # grid rows 0 and 1 unlabelled
    net = lambda x: logits  # noqa: E731
    on_grid = train_seg.SegmentationLoss(8)(net, {"image": None, "label": labels}, 0)
    expected = torch.nn.functional.cross_entropy(logits.double(), labels[:, ::8, ::8], ignore_index=255)
    assert on_grid.item() == pytest.approx(expected.item(), rel=1e-5)
    upsampled = train_seg.SegmentationLoss(None)(net, {"image": None, "label": labels}, 0)
    assert upsampled.item() != pytest.approx(on_grid.item(), rel=1e-3)


def test_retrain_without_rescaling_trains(tiny_voc, tmp_path):
    root, names = tiny_voc
    train_seg.run(_params(names, iterations=2, scale=None, label_grid=True), root=root,
                  labels=root / "SegmentationClass", out=tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)["params"]["label_grid"] is True


def test_infer_seg_warps_to_squares_and_flips_only_on_request(monkeypatch):
    seen = []

    def net(x):
        seen.append(x.clone())
        return torch.zeros(len(x), 3, -(-x.shape[-2] // 8), -(-x.shape[-1] // 8))
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    probs = infer_seg.predict(net, image, [1.0], False, "cpu", sizes=[24, 40])
    assert probs.shape == (3, 30, 50)
    assert [tuple(x.shape) for x in seen] == [(1, 3, 24, 24), (1, 3, 40, 40)]  # no mirror: released test-ms.py
    seen.clear()
    infer_seg.predict(net, image, [1.0, 0.5], True, "cpu")
    assert [tuple(x.shape) for x in seen] == [(2, 3, 30, 50), (2, 3, 15, 25)]
    assert infer_seg.PARAMS["flip"].default is False


def _bn_reference(net, batches):
    """Float64 reference of precise BN: per trainable BatchNorm layer, the mean over batches of its input's
    batch mean and unbiased variance, the network run with batch statistics (a copy, so `net` is untouched)."""
    ref = copy.deepcopy(net).double().train()
    layers = [m for m in ref.modules() if type(m) is torch.nn.BatchNorm2d]
    seen = {id(m): [] for m in layers}
    hooks = [m.register_forward_pre_hook(lambda m, args: seen[id(m)].append(args[0])) for m in layers]
    with torch.no_grad():
        for x in batches:
            ref(x.double())
    for h in hooks:
        h.remove()
    return [(torch.stack([x.mean((0, 2, 3)) for x in seen[id(m)]]).mean(0),
             torch.stack([x.transpose(0, 1).flatten(1).var(1) for x in seen[id(m)]]).mean(0)) for m in layers]


def test_precise_bn_recomputes_trainable_batchnorm_on_whole_images(tiny_voc):
    """precise_bn: every trainable BatchNorm's running mean / var become the average over whole-image batches
    (float64 reference); no weight, fixed BatchNorm, momentum or train / eval mode changes."""
    root, names = tiny_voc
    net = deeplab.build(_params(names, arch="deeplab_v3plus"))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # running statistics far from the images'
            m.running_mean.uniform_(-5, 5)
            m.running_var.uniform_(10, 20)
    name, bn = next((n, m) for n, m in net.backbone.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    parent, _, attr = name.rpartition(".")
    setattr(net.backbone.get_submodule(parent), attr, FixedBatchNorm(bn.num_features))  # as ImageNet weights'
    fixed = [m for m in net.modules() if isinstance(m, FixedBatchNorm)]
    frozen = [m.running_mean.clone() for m in fixed]
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    ids = voc.read_ids(root, "train")
    net.eval()
    expected = _bn_reference(net, [x for _, x in voc.image_batches(root, ids, 3)])
    n = training.precise_bn(net, root, ids, len(ids), 3, torch.device("cpu"))
    layers = [m for m in net.modules() if type(m) is torch.nn.BatchNorm2d]
    assert n == len(layers) == len(expected) > 5 and not net.training
    for m, (mean, var) in zip(layers, expected):
        torch.testing.assert_close(m.running_mean.double(), mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.running_var.double(), var, rtol=1e-4, atol=1e-5)
        assert m.momentum == 0.1
    assert all(torch.equal(a, m.running_mean) for a, m in zip(frozen, fixed))
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in weights.items())


def test_precise_bn_takes_image_pooling_statistics_over_the_inference_scales(tiny_voc):
    """precise_bn with scales: the BatchNorm of DeepLab-v3's image pooling (1 x 1 maps) gets the mean / variance
    of its inputs over the images at every scale, through the network with its other statistics recomputed
    (float64 reference); every other layer as with scale 1 alone. One scale's statistics made multi-scale
    inference predict one class everywhere (docs/diagnosis.md "Precise BN and image pooling")."""
    root, names = tiny_voc
    ids, scales = voc.read_ids(root, "train"), [0.75, 1.0, 1.25]
    net = deeplab.build(_params(names, arch="deeplab_v3plus"))
    one_scale = copy.deepcopy(net)
    training.precise_bn(one_scale, root, ids, len(ids), 3, torch.device("cpu"))
    training.precise_bn(net, root, ids, len(ids), 3, torch.device("cpu"), scales)
    pooled = net.aspp.pool[1]
    ref = copy.deepcopy(one_scale).double().eval()
    seen = []
    hook = ref.aspp.pool[1].register_forward_pre_hook(lambda m, args: seen.append(args[0].flatten(1)))
    with torch.no_grad():
        for _, x in voc.image_batches(root, ids, 3):
            for s in scales:
                ref(torch.nn.functional.interpolate(x.double(), scale_factor=s, mode="bilinear"))
    hook.remove()
    inputs = torch.cat(seen)
    torch.testing.assert_close(pooled.running_mean.double(), inputs.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pooled.running_var.double(), inputs.var(0), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(pooled.running_var, one_scale.aspp.pool[1].running_var)
    others = [(a, b) for a, b in zip(net.modules(), one_scale.modules())
              if type(a) is torch.nn.BatchNorm2d and a is not pooled]
    assert len(others) > 5 and all(torch.equal(a.running_var, b.running_var) for a, b in others)


def test_train_seg_bn_images_changes_only_the_statistics(tiny_voc, tmp_path):
    """bn_images > 0: the same weights as without it, BatchNorm statistics from whole images (those precise_bn
    gives the network trained without it)."""
    root, names = tiny_voc
    states = {}
    for n in (0, 8):
        out = tmp_path / str(n) / "m.pt"
        train_seg.run(_params(names, iterations=2, bn_images=n), root=root, labels=root / "SegmentationClass", out=out)
        states[n] = torch.load(out, weights_only=True)["state_dict"]
    stats = [k for k in states[0] if "running" in k or "num_batches" in k]
    assert stats and all(torch.equal(states[0][k], states[8][k]) for k in states[0] if k not in stats)
    assert not all(torch.equal(states[0][k], states[8][k]) for k in stats)
    net = load_segmenter(tmp_path / "0" / "m.pt")
    training.precise_bn(net, root, voc.read_ids(root, "train"), 8, 2, torch.device("cpu"))
    for k in stats:
        torch.testing.assert_close(net.state_dict()[k], states[8][k])
