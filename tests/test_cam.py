"""The CAM stage: training on tiny_voc, the make_cam file format, the eval_cam threshold sweep."""
import numpy as np
import pandas as pd
import pytest
import torch

from wsss.cam import eval_cam, make_cam, train_cam
from wsss.cam import net as cam_net
from wsss.datasets.voc import image_tags, path, read_ids, voc_palette
from wsss.errors import DataError
from wsss.io import save_npz, save_png

TRAIN = dict(seed=0, device="cpu", tags_from="masks", split="train", backbone="small", pretrained=None,
             crop=64, resize_long=[48, 80], batch_size=4, epochs=8, lr=0.1, weight_decay=0.0001)


def _model_file(tmp_path, class_names):
    """An untrained CAM checkpoint in train_cam's format (make_cam's tests need the format, not the skill)."""
    params = {**TRAIN, "class_names": class_names}
    torch.manual_seed(0)
    file = tmp_path / "model.pt"
    torch.save({"state_dict": cam_net.build(params).state_dict(), "params": params, "history": []}, file)
    return file


def test_train_cam_loss_decreases_and_repeats(tiny_voc, tmp_path):
    root, class_names = tiny_voc
    params = {**TRAIN, "class_names": class_names}
    for name, epochs in [("a", params["epochs"]), ("b", 1), ("c", 1)]:
        train_cam.run({**params, "epochs": epochs}, root=root, out=tmp_path / f"{name}.pt")
    a, b, c = (torch.load(tmp_path / f"{name}.pt", weights_only=True) for name in "abc")
    loss = a["history"]["loss"]
    assert len(loss) == len(a["history"]["seconds"]) == params["epochs"]
    assert np.mean(loss[-2:]) < 0.9 * np.mean(loss[:2])
    assert b["history"]["loss"] == c["history"]["loss"]  # same seed, same run on the CPU
    assert all(torch.equal(v, c["state_dict"][k]) for k, v in b["state_dict"].items())
    assert a["params"]["strides"] == [2, 2, 2, 1]
    net = cam_net.load(tmp_path / "a.pt")
    assert net.classifier.out_channels == len(class_names) - 1 and not net.training


def test_train_cam_needs_a_full_batch(tiny_voc, tmp_path):
    root, class_names = tiny_voc
    with pytest.raises(DataError, match="train.txt.*fewer than one batch"):
        train_cam.run({**TRAIN, "class_names": class_names, "batch_size": 64}, root=root, out=tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_make_cam_format(tiny_voc, tmp_path):
    root, class_names = tiny_voc
    params = dict(device="cpu", class_names=class_names, tags_from="masks", split="val", scales=[1.0, 0.5])
    make_cam.run(params, root=root, model=_model_file(tmp_path, class_names), out=tmp_path / "maps")
    ids = read_ids(root, "val")
    tags = image_tags(root, ids, class_names)
    assert sorted(p.stem for p in (tmp_path / "maps").iterdir()) == sorted(ids)
    for image_id, tag in zip(ids, tags):
        with np.load(tmp_path / "maps" / f"{image_id}.npz") as f:
            keys, strided, high_res = f["keys"], f["cam"], f["high_res"]
        k = len(keys)
        assert keys.dtype == np.int64 and list(keys) == list(np.flatnonzero(tag) + 1)
        assert strided.dtype == high_res.dtype == np.float32
        assert strided.shape == (k, 16, 16) and high_res.shape == (k, 64, 64)
        for maps in (strided, high_res):
            assert maps.min() >= 0 and np.allclose(maps.max((1, 2)), 1, atol=1e-3)


def test_make_cam_fuses_flips(tiny_voc, tmp_path):
    """CAMs of an image and its mirror are mirrors of each other, since both flips are summed."""
    root, class_names = tiny_voc
    net = cam_net.load(_model_file(tmp_path, class_names))
    image = np.asarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3)), np.uint8)
    keys = np.array([1, 3])
    with torch.no_grad():
        strided, high_res = make_cam.image_cams(net, image, keys)
        strided_m, high_res_m = make_cam.image_cams(net, image[:, ::-1].copy(), keys)
    assert np.allclose(high_res_m, high_res[..., ::-1], atol=1e-4)
    assert np.allclose(strided_m, strided[..., ::-1], atol=1e-4)


def test_make_cam_bad_image_leaves_no_output(tiny_voc, tmp_path):
    root, class_names = tiny_voc
    bad = path(root, "image", read_ids(root, "val")[-1])
    bad.write_bytes(b"not a jpeg")
    params = dict(device="cpu", class_names=class_names, tags_from="masks", split="val", scales=[1.0])
    with pytest.raises(DataError, match=bad.name):
        make_cam.run(params, root=root, model=_model_file(tmp_path, class_names), out=tmp_path / "maps")
    assert not (tmp_path / "maps").exists()


def _hand_made(tmp_path):
    """One 8x8 image: columns 0-3 class 2, 4-7 background, last row void; its class-2 CAM falls linearly
    from 1 (column 0) to 0 (column 7)."""
    root, cams = tmp_path / "voc", tmp_path / "maps"
    gt = np.zeros((8, 8), np.uint8)
    gt[:, :4] = 2
    gt[7] = 255
    save_png(path(root, "mask", "a"), gt, voc_palette())
    path(root, "split", "s").parent.mkdir(parents=True)
    path(root, "split", "s").write_text("a\n")
    ramp = np.tile((7 - np.arange(8)) / 7, (8, 1)).astype(np.float32)
    save_npz(cams / "a.npz", keys=np.array([2]), cam=ramp[None, ::4, ::4], high_res=ramp[None])
    return root, cams


def test_eval_cam_known_iou(tmp_path):
    root, cams = _hand_made(tmp_path)
    names = ["background", "one", "two"]
    params = dict(class_names=names, split="s", thresholds=[0.2, 0.5, 0.8])
    eval_cam.run(params, root=root, cams=cams, metrics=tmp_path / "m.csv", sweep=tmp_path / "sweep.csv")
    sweep = pd.read_csv(tmp_path / "sweep.csv")
    # t = 0.2: columns 0-5 predicted as class 2 -> IoU 4/6 (class 2), 2/4 (background)
    # t = 0.5: columns 0-3 -> exact; t = 0.8: columns 0-1 -> 2/4 and 4/6
    assert np.allclose(sweep["miou"], [(4 / 6 + 0.5) / 2, 1.0, (0.5 + 4 / 6) / 2])
    assert np.allclose(sweep["precision"], [(4 / 6 + 1) / 2, 1.0, (1 + 4 / 6) / 2])
    rows = pd.read_csv(tmp_path / "m.csv").fillna({"class": ""})
    assert (rows[["stage", "method", "split"]] == ["cam", "cam", "s"]).all().all()
    table = rows.set_index(["metric", "class"])["value"]
    assert table["best_threshold", ""] == 0.5
    # the paper's fixed threshold 0.15 (default) next to the sweep's best: columns 0-5 as at 0.2
    assert table["fixed_threshold", ""] == 0.15
    assert table["iou_at_fixed_threshold", ""] == pytest.approx((4 / 6 + 0.5) / 2)
    assert len(sweep) == 3  # the sweep proper
    assert table["iou", ""] == 1.0 and table["iou", "two"] == 1.0 and np.isnan(table["iou", "one"])
    assert table["recall", "background"] == 1.0


def test_eval_cam_labels_break_ties_to_background():
    high_res = np.array([[[0.5, 0.9, 0.1]], [[0.2, 0.95, 0.6]]], np.float32)  # two classes, 1x3 image
    labels = eval_cam.threshold_labels(np.array([1, 4]), high_res, [0.5, 0.0])
    assert labels.tolist() == [[[0, 4, 4]], [[1, 4, 4]]]


def test_eval_cam_missing_cam_file(tmp_path):
    root, cams = _hand_made(tmp_path)
    (cams / "a.npz").unlink()
    params = dict(class_names=["background", "one", "two"], split="s", thresholds=[0.5])
    with pytest.raises(DataError, match="a.npz: CAM file not found"):
        eval_cam.run(params, root=root, cams=cams, metrics=tmp_path / "m.csv", sweep=tmp_path / "s.csv")
    assert not (tmp_path / "m.csv").exists()
