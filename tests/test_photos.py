"""The photo data set: deterministic, read by the real loaders, and its masks are exactly the pasted pixels."""
import hashlib

import numpy as np
import pytest

from wsss.datasets import photos_dataset, voc

NAMES = photos_dataset.PARAMS["class_names"].default
TINY = {"n_train": 6, "n_val": 3, "size": 64}


def _digests(root):
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def tiny_photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos") / "voc"
    photos_dataset.run(TINY, root=root)
    return root


def test_same_seed_same_bytes_and_val_size_leaves_train_alone(tmp_path, tiny_photos):
    photos_dataset.run(TINY, root=tmp_path / "again")
    assert _digests(tmp_path / "again") == _digests(tiny_photos)
    photos_dataset.run({**TINY, "n_val": 1}, root=tmp_path / "fewer")
    full = _digests(tiny_photos)
    assert all(full[k] == v for k, v in _digests(tmp_path / "fewer").items() if "train_" in k)
    photos_dataset.run({**TINY, "seed": 1}, root=tmp_path / "other")
    assert _digests(tmp_path / "other")["JPEGImages/train_00000.jpg"] != full["JPEGImages/train_00000.jpg"]


def test_root_passes_the_real_loaders(tiny_photos):
    for split, count in (("train", 6), ("val", 3)):
        dataset = voc.VOCDataset(tiny_photos, split, NAMES, with_instances=True)
        assert len(dataset) == count
        assert (voc.image_tags(tiny_photos, dataset.ids, NAMES, "xml") == dataset.tags.astype(bool)).all()
        for item in dataset:
            assert item["image"].shape == (64, 64, 3)
            assert ((item["mask"] == 255) == (item["instances"] == 255)).all()
            assert dataset.tags[dataset.ids.index(item["id"])].any()  # every image has an object
            scribble = voc.load_scribble(voc.path(tiny_photos, "scribble", item["id"]), len(NAMES), (64, 64))
            from_xml = voc.load_scribble_xml(voc.path(tiny_photos, "scribble_xml", item["id"]), NAMES, (64, 64))
            assert (scribble == from_xml).all()
            labelled = scribble != 255
            assert (scribble[labelled] == item["mask"][labelled]).all()


def test_masks_are_exactly_the_pasted_pixels(monkeypatch):
    """On a magenta background (a colour no cut-out has) every background pixel stays magenta and every
    object pixel is not: no halo of the object's old background, no mask pixel without object colour."""
    magenta = np.zeros((300, 300, 3), np.float32) + [255, 0, 255]
    real_photo = photos_dataset._photo
    monkeypatch.setattr(photos_dataset, "_photo", lambda f: real_photo(f) if f == "chelsea.png" else magenta)
    p = photos_dataset.check_params({"size": 96, "void_radius": 0})
    seen = set()
    for i in range(40):
        sample = photos_dataset._sample(np.random.default_rng(i), p)
        image = sample["image"].astype(float)
        near_magenta = np.abs(image - [255, 0, 255]).max(-1) < 15
        classes = sample["classes"]
        assert near_magenta[classes == 0].all()
        assert not near_magenta[classes > 0].any()
        seen |= set(np.unique(classes[classes > 0]).tolist())
    assert seen == set(range(1, len(NAMES)))


def test_cutouts_are_whole_objects():
    """Every cut-out's mask is one connected region touching its box on all four sides (holes are real:
    the gift's bow loops are transparent)."""
    from scipy import ndimage
    for name in NAMES[1:]:
        for rgb, mask in photos_dataset._cutouts(name):
            assert ndimage.label(mask)[1] == 1, name
            assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any(), name
    assert len(photos_dataset._cutouts("coin")) >= 15  # the single coins of coins.png


@pytest.mark.parametrize("params, problem", [
    ({"n_trian": 3}, "unknown param 'n_trian'"),
    ({"class_names": ["background", "coin", "dragon"]}, "drawn from"),
    ({"min_extent": 0.5, "max_extent": 0.2}, "min_extent"),
])
def test_bad_parameters(tmp_path, params, problem):
    with pytest.raises(ValueError, match=problem):
        photos_dataset.run(params, root=tmp_path / "photos")
