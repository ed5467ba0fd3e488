"""`wsss predict` on people's own images: two PNGs (RGBA and grey) and a JPEG, from a folder and as files."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from wsss.datasets import voc
from wsss.seg import infer_seg, predict, train_seg


@pytest.fixture
def model(tiny_voc, tmp_path):
    root, names = tiny_voc
    params = dict(seed=0, device="cpu", class_names=names, split="train", arch="deeplab_v2", backbone="small",
                  pretrained=None, crop=48, batch_size=2, iterations=2, lr=0.01, weight_decay=0.0005,
                  head_lr_mult=10)
    train_seg.run(params, root=root, labels=root / "SegmentationClass", out=tmp_path / "net" / "model.pt")
    return tmp_path / "net" / "model.pt"


def test_predict_writes_labels_and_overlays_for_jpeg_and_png(tiny_voc, model, tmp_path):
    root, names = tiny_voc
    ids = voc.read_ids(root, "val")[:3]
    photos = tmp_path / "photos"
    photos.mkdir()
    images = [Image.open(voc.path(root, "image", i)) for i in ids]
    (photos / "a.jpg").write_bytes(voc.path(root, "image", ids[0]).read_bytes())  # infer_seg reads these pixels
    images[1].convert("RGBA").save(photos / "b.png")
    images[2].convert("L").save(photos / "c.png")
    out = tmp_path / "pred"
    done = subprocess.run([sys.executable, "-m", "wsss.cli", "predict", "--model", str(model), "--images",
                           str(photos), "--out", str(out), "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "predict: 100%" in done.stderr and "3/3" in done.stderr
    for name, source in zip("abc", images):
        labels = Image.open(out / f"{name}.png")
        assert labels.mode == "P" and labels.size == source.size
        assert np.asarray(labels).max() < len(names)
        assert Image.open(out / f"{name}.overlay.jpg").size == source.size

    # the same labels as the workflow's infer_seg (scales [1.0], flip, no CRF) for the same image
    infer_seg.run(dict(split="val", device="cpu", scales=[1.0], flip=True, crf=False), root=root, model=model,
                  out=tmp_path / "infer")
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), np.asarray(Image.open(tmp_path / "infer" /
                                                                                         f"{ids[0]}.png")))


def test_predict_names_a_bad_input(model, tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    done = subprocess.run([sys.executable, "-m", "wsss.cli", "predict", "--model", str(model), "--images",
                           str(tmp_path / "x.png"), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(f"wsss predict: error: {tmp_path / 'x.png'}: unreadable")
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(predict.DataError, match="would both write x.png"):
        predict.image_files([str(tmp_path / "x.png"), str(tmp_path / "x.jpg")])
