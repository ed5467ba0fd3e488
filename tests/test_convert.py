"""The converters of the real releases into the VOC layout (SBD, ScribbleSup, PASCAL-Context, COCO), the
three splits' reading (union, mask fallback, scoring without masks) and the ImageNet weights checks, on
tiny fixtures written in each release's own format."""
import json

import numpy as np
import pytest
import scipy.io
from PIL import Image

from _scribbles import scribble_xml
from wsss.datasets import coco_dataset, context_dataset, sbd_train_aug, scribble_pngs, voc
from wsss.errors import DataError
from wsss.io import save_png
from wsss.models import weights

VOC_NAMES = ["background", "aeroplane", "bicycle", "bird"]
H, W = 12, 16


def _jpeg(file, shape=(H, W)):
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*shape, 3), np.uint8)).save(file)


def _list(file, ids):
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("".join(f"{i}\n" for i in ids))


def _labels(value, rng):
    labels = np.zeros((H, W), np.uint8)
    labels[rng.integers(0, H // 2):, rng.integers(0, W // 2):] = value
    return labels


def _sbd_mat(file, labels):
    """SBD's cls/<id>.mat: struct GTcls with Segmentation, Boundaries (cell of sparse) and CategoriesPresent."""
    import scipy.sparse

    boundaries = np.empty((3, 1), object)
    for k in range(3):
        boundaries[k, 0] = scipy.sparse.csc_matrix((labels == k + 1).astype(np.uint8))
    present = np.unique(labels[labels > 0]).reshape(-1, 1).astype(np.uint8)
    scipy.io.savemat(file, {"GTcls": {"Segmentation": labels, "Boundaries": boundaries,
                                      "CategoriesPresent": present}})


# ---- SBD -> train_aug


def test_train_aug_arithmetic():
    ids = sbd_train_aug.train_aug_ids(sbd_train=["s1", "s2", "v1"], sbd_val=["s3", "t1", "v2"],
                                      voc_train=["t1", "t2"], voc_val=["v1", "v2", "v3"])
    assert ids == ["s1", "s2", "s3", "t1", "t2"]


@pytest.fixture
def voc_with_sbd(tmp_path):
    """VOC root: train t1 t2 (masks), val v1 (mask); SBD: train s1 s2 t1 v1, val s3; t1 in both."""
    root, sbd, rng = tmp_path / "VOC2012", tmp_path / "sbd", np.random.default_rng(1)
    voc_masks = {"t1": _labels(1, rng), "t2": _labels(2, rng), "v1": _labels(3, rng)}
    sbd_masks = {i: _labels(k, rng) for i, k in [("s1", 1), ("s2", 2), ("s3", 3), ("t1", 3), ("v1", 2)]}
    for image_id, labels in voc_masks.items():
        save_png(voc.path(root, "mask", image_id), labels, voc.voc_palette())
    for image_id in {*voc_masks, *sbd_masks}:
        _jpeg(voc.path(root, "image", image_id))
    (sbd / "cls").mkdir(parents=True)
    for image_id, labels in sbd_masks.items():
        _sbd_mat(sbd / "cls" / f"{image_id}.mat", labels)
    _list(voc.path(root, "split", "train"), ["t1", "t2"])
    _list(voc.path(root, "split", "val"), ["v1"])
    _list(sbd / "train.txt", ["s1", "s2", "t1", "v1"])
    _list(sbd / "val.txt", ["s3"])
    return root, sbd, voc_masks, sbd_masks


def test_sbd_masks_become_segmentation_class_aug(voc_with_sbd):
    root, sbd, voc_masks, sbd_masks = voc_with_sbd
    out = voc.path(root, "split", "train_aug")
    sbd_train_aug.run({"class_names": VOC_NAMES}, root=root, sbd=sbd, out=out)
    assert voc.read_ids(root, "train_aug") == ["s1", "s2", "s3", "t1", "t2"]
    for image_id in ["s1", "s2", "s3"]:
        png = Image.open(voc.path(root, "mask_aug", image_id))
        assert png.mode == "P" and np.array_equal(np.asarray(png), sbd_masks[image_id])
        assert voc.path(root, "mask", image_id) == voc.path(root, "mask_aug", image_id)  # the loaders' fallback
    # VOC's own mask wins where both exist; VOC val is neither listed nor converted
    assert not voc.path(root, "mask_aug", "t1").exists() and not voc.path(root, "mask_aug", "v1").exists()
    assert np.array_equal(voc.load_mask(voc.path(root, "mask", "t1"), 4), voc_masks["t1"])


def test_sbd_keeps_existing_aug_masks_and_names_a_bad_file(voc_with_sbd):
    root, sbd, _, _ = voc_with_sbd
    shipped = np.full((H, W), 2, np.uint8)
    save_png(voc.path(root, "mask_aug", "s1"), shipped)  # e.g. the DeepLab release's grey PNG
    (sbd / "cls" / "s2.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="s2.mat"):
        sbd_train_aug.run({"class_names": VOC_NAMES}, root=root, sbd=sbd, out=voc.path(root, "split", "train_aug"))
    assert np.array_equal(voc.load_mask(voc.path(root, "mask", "s1"), 4), shipped)
    assert not voc.path(root, "split", "train_aug").exists()  # the list is written last


# ---- splits


def test_union_of_splits_and_scoring_a_split_without_masks(voc_with_sbd):
    root, _, _, _ = voc_with_sbd
    _list(voc.path(root, "split", "aug"), ["t2", "s1", "s3"])
    assert voc.read_ids(root, "aug+train") == ["t2", "s1", "s3", "t1"]
    assert voc.scored_ids(root, "train") == ["t1", "t2"]
    with pytest.raises(DataError, match=r"split 'aug' .*2 of 3 .*'s1'"):
        voc.scored_ids(root, "aug")
    with pytest.raises(DataError, match=r"split 'train' .*SegmentationObject.*'t1'"):
        voc.scored_ids(root, "train", ("mask", "instances"))
    assert (voc.load_mask_or_void(root, "s1", 4, (H, W)) == voc.IGNORE).all()
    with pytest.raises(DataError, match="tags_from: xml"):
        voc.image_tags(root, ["t1", "s1"], VOC_NAMES, "masks")


# ---- ScribbleSup


def test_scribble_xml_to_png(tmp_path):
    root = tmp_path / "VOC2012"
    xml_dir = voc.path(root, "scribble_xml", "x").parent
    xml_dir.mkdir(parents=True)
    (xml_dir / "a.xml").write_text(scribble_xml([("bird", [(1, 2), (12, 2)]), ("background", [(1, 8), (14, 8)]),
                                                 ("plane", [(6, 0), (6, 11)])], (W, H)))
    (xml_dir / "b.xml").write_text(scribble_xml([("bike", [(3, 3), (3, 9)])], (W, H)))
    for image_id in "ab":
        _jpeg(voc.path(root, "image", image_id))
    kept = np.full((H, W), 7, np.uint8)
    save_png(voc.path(root, "scribble", "b"), kept)  # an existing PNG is used as it is
    out = voc.path(root, "split", "scribble")
    scribble_pngs.run({"class_names": VOC_NAMES}, root=root, out=out)
    assert voc.read_ids(root, "scribble") == ["a", "b"]
    png = Image.open(voc.path(root, "scribble", "a"))
    assert png.mode == "L"
    a = np.asarray(png)
    assert np.array_equal(a, voc.load_scribble_xml(xml_dir / "a.xml", VOC_NAMES, (H, W)))
    assert a[2, 3] == 3 and a[8, 3] == 0 and a[5, 6] == 1 and a[2, 6] in (1, 3) and a[11, 15] == 255
    assert (a[1:4, 1:13] != 255).all() and np.mean(a == 255) >= 0.5  # 3 px wide lines, half the pixels unlabelled
    assert np.array_equal(np.asarray(Image.open(voc.path(root, "scribble", "b"))), kept)


# ---- PASCAL-Context

CONTEXT_LABELS = {1: "accordion", 2: "aeroplane", 3: "sky", 4: "wall", 5: "grass"}  # labels.txt (459 in the release)


@pytest.fixture
def context_release(tmp_path):
    release, voc2010 = tmp_path / "pascal-context", tmp_path / "VOC2010"
    (release / "trainval").mkdir(parents=True)
    (release / "labels.txt").write_text("".join(f"{i}: {n}\n" for i, n in CONTEXT_LABELS.items()))
    (release / "59_labels.txt").write_text("2: aeroplane\n3: sky\n5: grass\n")
    maps = {"2008_000001": [[0, 1, 2], [3, 4, 5]], "2008_000002": [[1, 1, 4], [0, 4, 1]],
            "2008_000003": [[3, 3, 2], [2, 2, 5]]}
    for image_id, label_map in maps.items():
        scipy.io.savemat(release / "trainval" / f"{image_id}.mat", {"LabelMap": np.array(label_map, np.uint16)})
        _jpeg(voc.path(voc2010, "image", image_id), (2, 3))
    _list(voc2010 / "ImageSets" / "Main" / "train.txt", ["2008_000001", "2008_000002", "2008_000009"])
    _list(voc2010 / "ImageSets" / "Main" / "val.txt", ["2008_000003"])
    return release, voc2010


def test_context_to_voc_layout(tmp_path, context_release):
    release, voc2010 = context_release
    root, names = tmp_path / "context", ["background", "aeroplane", "grass", "sky"]
    train, val = voc.path(root, "split", "train"), voc.path(root, "split", "val")
    context_dataset.run({"class_names": names}, context=release, voc2010=voc2010, root=root, train=train, val=val)
    # train: 000002 holds no listed class (only accordion, wall, unlabelled) and 000009 has no label map
    assert voc.read_ids(root, "train") == ["2008_000001"] and voc.read_ids(root, "val") == ["2008_000003"]
    assert np.array_equal(voc.load_mask(voc.path(root, "mask", "2008_000001"), 4), [[0, 0, 1], [3, 0, 2]])
    assert np.array_equal(voc.load_mask(voc.path(root, "mask", "2008_000003"), 4), [[3, 3, 1], [1, 1, 2]])
    image = voc.path(root, "image", "2008_000001")
    assert image.is_symlink() and image.resolve() == voc.path(voc2010, "image", "2008_000001").resolve()
    with pytest.raises(DataError, match="59_labels.txt"):
        context_dataset.run({"class_names": ["background", "aeroplane", "sky"]}, context=release, voc2010=voc2010,
                            root=root, train=train, val=val)


# ---- COCO


def _coco_json(file):
    """Two images: one with a large person, a small dog on it and a crowd of persons; one with only a crowd."""
    rle_crowd = {"counts": [8 * 4, 8 * 4, 8 * 8], "size": [8, 16]}  # column-major runs: columns 4..7 are crowd
    data = {
        "images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": 8, "width": 16},
                   {"id": 3, "file_name": "COCO_train2014_000000000003.jpg", "height": 8, "width": 16}],
        "categories": [{"id": 18, "name": "dog", "supercategory": "animal"},
                       {"id": 1, "name": "person", "supercategory": "person"}],
        "annotations": [
            {"id": 1, "image_id": 9, "category_id": 18, "iscrowd": 0, "area": 4.0, "bbox": [1, 1, 2, 2],
             "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]]},
            {"id": 2, "image_id": 9, "category_id": 1, "iscrowd": 0, "area": 24.0, "bbox": [0, 0, 4, 6],
             "segmentation": [[0, 0, 4, 0, 4, 6, 0, 6]]},
            {"id": 3, "image_id": 9, "category_id": 1, "iscrowd": 1, "area": 32.0, "bbox": [4, 0, 4, 8],
             "segmentation": rle_crowd},
            {"id": 4, "image_id": 3, "category_id": 1, "iscrowd": 1, "area": 32.0, "bbox": [4, 0, 4, 8],
             "segmentation": rle_crowd},
        ]}
    file.write_text(json.dumps(data))


def test_coco_to_voc_layout(tmp_path):
    coco, root = tmp_path / "coco", tmp_path / "coco_voc"
    (coco / "annotations").mkdir(parents=True)
    _coco_json(coco / "annotations" / "instances_train2014.json")
    for n in (3, 9):
        _jpeg(coco / "train2014" / f"COCO_train2014_00000000000{n}.jpg", (8, 16))
    out = voc.path(root, "split", "train2014")
    coco_dataset.run({"class_names": ["background", "person", "dog"]}, annotations=coco / "annotations" /
                     "instances_train2014.json", images=coco / "train2014", root=root, out=out)
    image_id = "COCO_train2014_000000000009"
    assert voc.read_ids(root, "train2014") == [image_id]  # the crowd-only image has no label to learn
    classes = voc.load_mask(voc.path(root, "mask", image_id), 3)
    instances = voc.load_instances(voc.path(root, "instances", image_id))
    person, dog = np.zeros((8, 16), bool), np.zeros((8, 16), bool)
    person[:6, :4] = True
    dog[1:3, 1:3] = True  # pycocotools fills the polygon's pixels 1..2 (area 4)
    crowd = np.zeros((8, 16), bool)
    crowd[:, 4:8] = True
    assert (classes[dog] == 2).all() and (classes[person & ~dog] == 1).all()
    assert (classes[crowd] == 255).all() and (classes[~person & ~crowd] == 0).all()
    assert (instances[person & ~dog] == 1).all() and (instances[dog] == 2).all() and (instances[crowd] == 255).all()
    assert voc.image_tags(root, [image_id], ["background", "person", "dog"]).tolist() == [[True, True]]
    with pytest.raises(DataError, match="categories"):
        coco_dataset.run({"class_names": ["background", "dog", "person"]}, annotations=coco / "annotations" /
                         "instances_train2014.json", images=coco / "train2014", root=root, out=out)


# ---- ids that would leave the root (issue 25 items 6, 10, 11): every converter refuses them, naming the file


def test_a_voc2010_list_id_that_leaves_the_root_is_refused(tmp_path, context_release):
    release, voc2010 = context_release
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    listing = voc2010 / "ImageSets" / "Main" / "train.txt"
    listing.write_text(listing.read_text() + "../../../../victim\n")
    root = tmp_path / "deep" / "er" / "context"
    with pytest.raises(DataError, match=f"{listing}: line 4: image id '../../../../victim'"):
        context_dataset.run({"class_names": ["background", "aeroplane", "grass", "sky"]}, context=release,
                            voc2010=voc2010, root=root, train=voc.path(root, "split", "train"),
                            val=voc.path(root, "split", "val"))
    assert victim.read_bytes() == b"precious"


def test_an_sbd_list_id_that_leaves_the_root_is_refused(voc_with_sbd, tmp_path):
    root, sbd, _, _ = voc_with_sbd
    (sbd / "val.txt").write_text("s3\n../../outside/evil\n")
    with pytest.raises(DataError, match=f"{sbd / 'val.txt'}: line 2: image id '../../outside/evil'"):
        sbd_train_aug.run({"class_names": VOC_NAMES}, root=root, sbd=sbd, out=voc.path(root, "split", "train_aug"))
    assert not (tmp_path / "outside").exists() and not voc.path(root, "split", "train_aug").exists()


@pytest.mark.parametrize("file_name", ["../../../etc/passwd", "sub/COCO_1.jpg", ".hidden.jpg"])
def test_a_coco_file_name_that_is_not_a_plain_name_is_refused(tmp_path, file_name):
    coco, root = tmp_path / "coco", tmp_path / "coco_voc"
    (coco / "annotations").mkdir(parents=True)
    annotations = coco / "annotations" / "instances_train2014.json"
    _coco_json(annotations)
    data = json.loads(annotations.read_text())
    data["images"][0]["file_name"] = file_name
    annotations.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"{annotations}: image 9: image id '{file_name}'"):
        coco_dataset.run({"class_names": ["background", "person", "dog"]}, annotations=annotations,
                         images=coco / "train2014", root=root, out=voc.path(root, "split", "train2014"))
    assert not (root / "JPEGImages").exists()


def test_a_coco_annotations_file_that_is_not_json_is_named(tmp_path):
    annotations = tmp_path / "instances_train2014.json"
    for text in ("<html>not json</html>", "[1, 2]", '{"images": []}'):
        annotations.write_text(text)
        with pytest.raises(DataError, match=f"^{annotations}: not a COCO instances json"):
            coco_dataset.run({"class_names": ["background", "person", "dog"]}, annotations=annotations,
                             images=tmp_path, root=tmp_path / "out", out=tmp_path / "out" / "list.txt")


def _scribble_root(tmp_path, xmls: dict):
    root = tmp_path / "VOC2012"
    xml_dir = voc.path(root, "scribble_xml", "x").parent
    xml_dir.mkdir(parents=True)
    for image_id, text in xmls.items():
        (xml_dir / f"{image_id}.xml").write_text(text)
        _jpeg(voc.path(root, "image", image_id))
    return root, xml_dir


@pytest.mark.parametrize("point, problem", [((40, 2), "point \\(40, 2\\) is outside"),
                                            (("1e400", 2), "<X> is '1e400', not a number"),
                                            (("nan", 2), "<X> is 'nan', not a number")])
def test_a_scribble_point_outside_the_image_or_not_a_number_is_named(tmp_path, point, problem):
    root, xml_dir = _scribble_root(tmp_path, {"a": scribble_xml([("bird", [(1, 2), point])], (W, H))})
    with pytest.raises(DataError, match=f"^{xml_dir / 'a.xml'}: .*{problem}"):
        scribble_pngs.run({"class_names": VOC_NAMES}, root=root, out=voc.path(root, "split", "scribble"))


def test_a_scribble_xml_without_strokes_or_without_an_image_is_handled(tmp_path):
    root, xml_dir = _scribble_root(tmp_path, {"a": scribble_xml([("bird", [(1, 2), (5, 2)])], (W, H)),
                                              "empty": scribble_xml([], (W, H))})
    out = voc.path(root, "split", "scribble")
    scribble_pngs.run({"class_names": VOC_NAMES}, root=root, out=out)
    assert voc.read_ids(root, "scribble") == ["a"]  # no all-unlabelled PNG, not listed
    assert not voc.path(root, "scribble", "empty").exists()
    (xml_dir / "lost.xml").write_text(scribble_xml([("bird", [(1, 2)])], (W, H)))
    with pytest.raises(DataError, match=f"^{voc.path(root, 'image', 'lost')}: image not found"):
        scribble_pngs.run({"class_names": VOC_NAMES}, root=root, out=out)


# ---- ImageNet weights


def test_missing_weights_name_the_torchvision_file():
    message = weights.problem("resnet50", None, "model.pretrained")
    assert "resnet50-0676ba61.pth" in message and "https://download.pytorch.org/models/" in message
    assert weights.TORCHVISION["resnet50"].sha256 in message
    assert weights.problem("resnet101", "/nonexistent/r101.pth", "seg.pretrained").startswith("seg.pretrained")
    assert weights.problem("small", None, "model.pretrained") is None
    assert weights.problem("resnet50", "download", "model.pretrained") is None


def test_weights_hash_is_checked(tmp_path, monkeypatch):
    file = tmp_path / "resnet50.pth"
    file.write_bytes(b"some other weights")
    with pytest.raises(ValueError, match="has sha256"):
        weights.prepare("resnet50", str(file), "model.pretrained")
    published = weights.Weights("resnet50.pth", "https://example.invalid/resnet50.pth", weights.sha256(file))
    monkeypatch.setitem(weights.TORCHVISION, "resnet50", published)
    weights.prepare("resnet50", str(file), "model.pretrained")  # the published hash passes
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    assert weights.resolve("resnet50", "download") == str(tmp_path / "hub" / "hub" / "checkpoints" / "resnet50.pth")
