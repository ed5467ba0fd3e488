"""The demo data set: deterministic, atomic, read by the real loaders, with the content the issue asks for."""
import hashlib
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from wsss.datasets import demo_dataset, synthetic, voc

NAMES = demo_dataset.PARAMS["class_names"].default


def _digests(root):
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def test_same_seed_same_bytes(tmp_path, tiny_voc_master, tiny_demo_params):
    demo_dataset.run(tiny_demo_params, root=tmp_path / "again")
    assert _digests(tmp_path / "again") == _digests(tiny_voc_master)
    demo_dataset.run({**tiny_demo_params, "seed": 1, "n_val": 1}, root=tmp_path / "other")
    other = _digests(tmp_path / "other")
    assert other["JPEGImages/train_00000.jpg"] != _digests(tiny_voc_master)["JPEGImages/train_00000.jpg"]


def test_val_size_leaves_train_images_alone(tmp_path, tiny_voc_master, tiny_demo_params):
    demo_dataset.run({**tiny_demo_params, "n_val": 1}, root=tmp_path / "fewer")
    fewer, full = _digests(tmp_path / "fewer"), _digests(tiny_voc_master)
    assert all(full[k] == v for k, v in fewer.items() if "train_" in k)


def test_demo_root_passes_the_real_loaders(tiny_voc):
    root, names = tiny_voc
    for split, count in (("train", 8), ("val", 4)):
        dataset = voc.VOCDataset(root, split, names, with_instances=True)
        assert len(dataset) == count
        xml_tags = voc.image_tags(root, dataset.ids, names, "xml")
        assert (xml_tags == dataset.tags.astype(bool)).all()
        for item in dataset:
            assert item["image"].shape == (64, 64, 3)
            assert ((item["mask"] == 255) == (item["instances"] == 255)).all()
            scribble = voc.load_scribble(voc.path(root, "scribble", item["id"]), len(names), (64, 64))
            from_xml = voc.load_scribble_xml(voc.path(root, "scribble_xml", item["id"]), names, (64, 64))
            assert (scribble == from_xml).all()  # one set of strokes, two formats
            labelled = scribble != 255
            assert (scribble[labelled] == item["mask"][labelled]).all()  # strokes stay on their region


def test_content_at_default_size(tmp_path):
    """30 images at 128 px: every class, 1..4 objects, repeated classes, touching objects, void bands,
    a scribble on nearly every object and background strokes, boxes around each instance."""
    root = tmp_path / "demo"
    demo_dataset.run({"n_train": 30, "n_val": 1}, root=root)
    ids = voc.read_ids(root, "train")
    counts, repeated, touching, scribbled, objects = np.zeros(len(NAMES)), 0, 0, 0, 0
    for image_id in ids:
        mask = voc.load_mask(voc.path(root, "mask", image_id), len(NAMES), (128, 128))
        instances = voc.load_instances(voc.path(root, "instances", image_id), (128, 128))
        scribble = voc.load_scribble(voc.path(root, "scribble", image_id), len(NAMES), (128, 128))
        n_instances = instances[instances < 255].max()
        labels = [int(np.bincount(mask[instances == i]).argmax()) for i in range(1, n_instances + 1)]
        assert 1 <= len(labels) <= 4
        assert (mask == 255).any() and (scribble == 0).any()
        counts[labels] += 1
        repeated += len(set(labels)) < len(labels)
        touching += _touching(instances)
        scribbled += sum((scribble[instances == i] == labels[i - 1]).any() for i in range(1, len(labels) + 1))
        objects += len(labels)
        annotation = ET.parse(voc.path(root, "annotation", image_id)).getroot()
        assert [o.findtext("name") for o in annotation.iter("object")] == [NAMES[c] for c in labels]
        for i, box in enumerate(annotation.iter("bndbox"), 1):
            _check_box(box, instances, i)
    assert (counts[1:] >= 3).all()
    assert repeated >= 3 and touching >= 3
    assert scribbled >= 0.9 * objects


def _check_box(box, instances, i):
    """A 1-based VOC box around all of instance i: its pixels inside, and each edge on the instance or on
    void (the band, and slivers of the instance lost in it, belong to the object too)."""
    x0, y0, x1, y1 = (int(box.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax"))
    ys, xs = np.nonzero(instances == i)
    assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1
    inside = np.isin(instances[y0:y1 + 1, x0:x1 + 1], [i, 255])
    assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()


def _touching(instances):
    """Whether two instances come within 3 px of each other (they touch across the void band)."""
    objects = np.where(instances == 255, 0, instances).astype(int)
    h, w = objects.shape
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            a = objects[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
            b = objects[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
            if ((a > 0) & (b > 0) & (a != b)).any():
                return True
    return False


def test_a_failed_run_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args):
        raise RuntimeError("killed")

    monkeypatch.setattr(synthetic, "write_sample", fail)
    with pytest.raises(RuntimeError):
        demo_dataset.run({"n_train": 2, "n_val": 1, "size": 64}, root=tmp_path / "demo")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("params, problem", [
    ({"n_trian": 3}, "unknown param 'n_trian'"),
    ({"class_names": ["background", "disc", "dragon"]}, "drawn from"),
    ({"class_names": ["disc", "square"]}, "start with 'background'"),
    ({"min_radius": 0.3, "max_radius": 0.2}, "min_radius"),
])
def test_bad_parameters(tmp_path, params, problem):
    with pytest.raises(ValueError, match=problem):
        demo_dataset.run(params, root=tmp_path / "demo")
