"""Loaders on tiny hand-made files in the real formats, and every bad input of issue 2."""
import numpy as np
import pytest
from PIL import Image

from _scribbles import scribble_xml
from wsss import io
from wsss.datasets import voc
from wsss.errors import DataError

NAMES = ["background", "aeroplane", "bicycle", "bird"]
H, W = 20, 24


def _mask():
    """A bird (3) square and an aeroplane (1) bar, each ringed by a 1 px void band, on background."""
    mask = np.zeros((H, W), np.uint8)
    mask[3:11, 3:11] = 255
    mask[4:10, 4:10] = 3
    mask[14:18, 2:22] = 255
    mask[15:17, 3:21] = 1
    return mask


def _write_jpeg(file, shape=(H, W)):
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*shape, 3), 120, np.uint8)).save(file, quality=95)


def _voc_xml(names):
    objects = "".join(f"<object><name>{n}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
                      "<ymax>5</ymax></bndbox></object>" for n in names)
    return f"<annotation><filename>x.jpg</filename>{objects}</annotation>"


@pytest.fixture
def root(tmp_path):
    """Two images (a, b) with palette masks, instance PNGs and VOC XMLs, listed in train.txt."""
    for image_id in "ab":
        _write_jpeg(voc.path(tmp_path, "image", image_id))
        io.save_png(voc.path(tmp_path, "mask", image_id), _mask(), voc.voc_palette())
        instances = np.where(_mask() == 3, 1, np.where(_mask() == 1, 2, _mask()))
        io.save_png(voc.path(tmp_path, "instances", image_id), instances, voc.voc_palette())
        file = voc.path(tmp_path, "annotation", image_id)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(_voc_xml(["bird", "aeroplane"]))
    split = voc.path(tmp_path, "split", "train")
    split.parent.mkdir(parents=True)
    split.write_text("a\nb\n\n")
    return tmp_path


def test_voc_palette_matches_the_voc_colour_map():
    palette = voc.voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[1].tolist() == [128, 0, 0]  # aeroplane
    assert palette[15].tolist() == [192, 128, 128]  # person
    assert palette[255].tolist() == [224, 224, 192]  # void
    assert (voc.voc_palette(21) == palette[:21]).all()


def test_load_mask_reads_palette_indices_with_the_void_band(root):
    file = voc.path(root, "mask", "a")
    assert Image.open(file).mode == "P"
    mask = voc.load_mask(file, len(NAMES), shape=(H, W, 3))
    assert mask.dtype == np.uint8 and (mask == _mask()).all()
    assert set(np.unique(mask)) == {0, 1, 3, 255}


def test_load_mask_accepts_grey_pngs(tmp_path):
    file = tmp_path / "m.png"
    Image.fromarray(_mask()).save(file)  # mode L
    assert (voc.load_mask(file, len(NAMES)) == _mask()).all()


def test_load_instances(root):
    instances = voc.load_instances(voc.path(root, "instances", "a"), (H, W))
    assert set(np.unique(instances)) == {0, 1, 2, 255}
    assert (instances[_mask() == 3] == 1).all()


def test_read_ids_skips_blank_lines(root):
    assert voc.read_ids(root, "train") == ["a", "b"]


def test_image_tags_from_masks_and_xml_agree(root):
    from_masks = voc.image_tags(root, ["a", "b"], NAMES, "masks")
    from_xml = voc.image_tags(root, ["a", "b"], NAMES, "xml")
    assert from_masks.dtype == bool and from_masks.shape == (2, 3)
    assert from_masks.tolist() == [[True, False, True]] * 2
    assert (from_masks == from_xml).all()


def test_image_tags_auto_reads_xml_when_every_image_has_one(root):
    # as IRNet's released cls_labels (from the XMLs); a mask-only data set falls back to the masks
    voc.path(root, "annotation", "a").write_text(_voc_xml(["bird"]))
    assert voc.tags_source(root, ["a", "b"], "auto") == "xml"
    assert voc.image_tags(root, ["a", "b"], NAMES, "auto").tolist() == [[False, False, True], [True, False, True]]
    voc.path(root, "annotation", "b").unlink()
    assert voc.tags_source(root, ["a", "b"], "auto") == "masks"
    assert voc.image_tags(root, ["a", "b"], NAMES).tolist() == [[True, False, True]] * 2


def test_dataset_items(root):
    dataset = voc.VOCDataset(root, "train", NAMES, with_instances=True)
    assert len(dataset) == 2
    item = dataset[1]
    assert item["id"] == "b"
    assert item["image"].shape == (H, W, 3) and item["image"].dtype == np.uint8
    assert item["tags"].dtype == np.float32 and item["tags"].tolist() == [1, 0, 1]
    assert (item["mask"] == _mask()).all()
    assert item["instances"].shape == (H, W)
    assert set(voc.VOCDataset(root, "train", NAMES, tags_from="xml", with_mask=False)[0]) == {"id", "image", "tags"}


# Scribbles: three strokes drawn by hand, 3 px wide, as an L-mode PNG and as ScribbleSup XML.
STROKES = [("bird", [(4, 6), (18, 6)]), ("background", [(2, 15), (2, 3)]),
           ("plane", [(8, 12), (12, 12), (20, 12)])]  # ScribbleSup's short name for aeroplane


def _scribble_png():
    scribble = np.full((H, W), 255, np.uint8)
    scribble[2:16, 1:4] = 0  # vertical x=2, y 3..15 (lines end flat, so 1 px longer at one end at most)
    scribble[5:8, 4:19] = 3
    scribble[11:14, 8:21] = 1
    return scribble


def test_scribble_png_and_xml_of_the_same_strokes_agree(tmp_path):
    png, xml = tmp_path / "s.png", tmp_path / "s.xml"
    io.save_png(png, _scribble_png())
    xml.write_text(scribble_xml(STROKES, (W, H)))
    assert Image.open(png).mode == "L"
    from_png = voc.load_scribble(png, len(NAMES), (H, W))
    from_xml = voc.load_scribble_xml(xml, NAMES, (H, W))
    for label in (0, 1, 3):
        a, b = from_png == label, from_xml == label
        assert (a & b).sum() / (a | b).sum() > 0.9, label
    assert set(np.unique(from_xml)) == {0, 1, 3, 255}


def test_scribble_xml_tags(tmp_path):
    xml = tmp_path / "s.xml"
    xml.write_text(scribble_xml([("sky", [(5, 5), (10, 5)]), ("bicycle", [(5, 10), (10, 10)])], (W, H)))
    scribble = voc.load_scribble_xml(xml, NAMES, (H, W), width=1)
    assert (scribble[5, 5:11] == 0).all()  # PASCAL-Context classes are background for VOC
    assert (scribble[10, 5:11] == 2).all()
    assert (scribble == 255).sum() == H * W - 12


@pytest.mark.parametrize("tag, size, problem", [("dragon", (W, H), "'dragon'"), ("bird", (W + 1, H), "image is")])
def test_bad_scribble_xml(tmp_path, tag, size, problem):
    xml = tmp_path / "s.xml"
    xml.write_text(scribble_xml([(tag, [(1, 1), (3, 3)])], size))
    with pytest.raises(DataError, match=problem) as error:
        voc.load_scribble_xml(xml, NAMES, (H, W))
    assert str(xml) in str(error.value)


# Bad input: each error names the file and the problem.

def _raises(fn, file, problem):
    with pytest.raises(DataError, match=problem) as error:
        fn()
    assert str(file) in str(error.value)
    return error.value


def test_missing_image(root):
    file = voc.path(root, "image", "zzz")
    _raises(lambda: voc.load_image(file), file, "not found")


@pytest.mark.parametrize("content", [b"not a jpeg at all", "truncated"])
def test_unreadable_image(root, content):
    file = voc.path(root, "image", "a")
    if content == "truncated":
        content = file.read_bytes()[:200]
    file.write_bytes(content)
    _raises(lambda: voc.load_image(file), file, "unreadable image")


def test_mask_of_the_wrong_size(root):
    file = voc.path(root, "mask", "a")
    io.save_png(file, np.zeros((H + 2, W), np.uint8), voc.voc_palette())
    _raises(lambda: voc.load_mask(file, len(NAMES), (H, W)), file, f"{H + 2}x{W}.*{H}x{W}")
    _raises(lambda: voc.VOCDataset(root, "train", NAMES, tags_from="xml")[0], file, "HxW")


def test_mask_values_outside_the_classes(root):
    file = voc.path(root, "mask", "b")
    mask = _mask()
    mask[0, :3] = [4, 7, 254]
    io.save_png(file, mask, voc.voc_palette())
    _raises(lambda: voc.load_mask(file, len(NAMES)), file, r"\[4, 7, 254\] outside 0..3 and 255")
    _raises(lambda: voc.image_tags(root, ["a", "b"], NAMES, "masks"), file, "outside")


def test_rgb_mask(root):
    file = voc.path(root, "mask", "a")
    Image.fromarray(voc.voc_palette()[_mask()]).save(file)
    _raises(lambda: voc.load_mask(file, len(NAMES)), file, "mode RGB")


def test_scribble_values_outside_the_classes(tmp_path):
    file = tmp_path / "s.png"
    scribble = _scribble_png()
    scribble[0, 0] = 9
    io.save_png(file, scribble)
    _raises(lambda: voc.load_scribble(file, len(NAMES)), file, r"\[9\]")


def test_missing_and_empty_split_list(root):
    _raises(lambda: voc.read_ids(root, "val"), voc.path(root, "split", "val"), "not found")
    file = voc.path(root, "split", "train")
    file.write_text("\n  \n")
    _raises(lambda: voc.read_ids(root, "train"), file, "empty")
    _raises(lambda: voc.VOCDataset(root, "train", NAMES), file, "empty")


def test_image_without_object_class(root):
    file = voc.path(root, "mask", "b")
    io.save_png(file, np.where(_mask() == 255, 255, 0).astype(np.uint8), voc.voc_palette())
    _raises(lambda: voc.image_tags(root, ["a", "b"], NAMES, "masks"), file, "no object class")
    xml = voc.path(root, "annotation", "a")
    xml.write_text(_voc_xml([]))
    _raises(lambda: voc.image_tags(root, ["a", "b"], NAMES, "xml"), xml, "no object class")


def test_annotation_with_unknown_class(root):
    xml = voc.path(root, "annotation", "b")
    xml.write_text(_voc_xml(["bird", "unicorn"]))
    _raises(lambda: voc.image_tags(root, ["a", "b"], NAMES, "xml"), xml, "'unicorn'")


def test_unknown_tags_source(root):
    with pytest.raises(ValueError, match="tags source"):
        voc.image_tags(root, ["a"], NAMES, "captions")


def test_scoring_a_split_without_masks_names_the_split_and_the_image(tiny_voc):
    root, _ = tiny_voc
    ids = voc.read_ids(root, "train")
    voc.path(root, "mask", ids[1]).unlink()
    assert voc.scored_ids(root, "val") == voc.read_ids(root, "val")
    with pytest.raises(DataError, match=rf"split 'train' cannot be scored: 1 of {len(ids)} images .* {ids[1]!r}"):
        voc.scored_ids(root, "train")
