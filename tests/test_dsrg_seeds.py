"""dsrg_seeds: DSRG's seed cues (Sec. 3.1, 4.1) on hand-made CAMs and saliency maps."""
import numpy as np
import pytest
from PIL import Image

from wsss.datasets import voc
from wsss.dsrg import dsrg_seeds
from wsss.dsrg.dsrg_seeds import foreground_cues, seed_cues

RAMP = (np.arange(10, dtype=np.float32) / 9).reshape(1, 2, 5)


def test_top_fraction_takes_the_top_pixels():
    assert foreground_cues(RAMP, "top_fraction", 0.2).ravel().tolist() == [False] * 8 + [True] * 2


def test_max_fraction_takes_pixels_above_a_fraction_of_the_maximum():
    assert foreground_cues(RAMP, "max_fraction", 0.5).ravel().tolist() == [False] * 5 + [True] * 5


def test_foreground_never_takes_zeros_and_keeps_ties():
    sparse = np.zeros((1, 1, 10), np.float32)
    sparse[0, 0, 9] = 1  # the top 20 % reaches into the zeros: they stay out
    assert foreground_cues(sparse, "top_fraction", 0.2).ravel().tolist() == [False] * 9 + [True]
    flat = np.full((1, 1, 10), 0.5, np.float32)
    assert foreground_cues(flat, "top_fraction", 0.2).all()


def test_stacking_background_then_strongest_foreground():
    keys = np.array([2, 4])
    cams = np.array([[[1.0, 0.9, 0.0, 0.0]], [[0.0, 0.95, 0.8, 0.0]]], np.float32)  # [2, 1, 4]
    background = np.array([[False, False, True, True]])
    cues = seed_cues(keys, cams, background, "max_fraction", 0.5)
    # pixel 1 is in both classes' cues: class 4 has the larger CAM; pixel 2: class 4 over background
    assert cues.tolist() == [[2, 4, 4, 0]]
    cues = seed_cues(keys, cams, np.zeros_like(background), "max_fraction", 0.5)
    assert cues.tolist() == [[2, 4, 4, 255]]


def _one_image(root, cams_dir, high_res):
    """A split `one` holding the first training image, with the given CAMs (classes 1..k)."""
    image_id = voc.read_ids(root, "train")[0]
    (root / "ImageSets/Segmentation/one.txt").write_text(image_id + "\n")
    cams_dir.mkdir()
    np.savez(cams_dir / f"{image_id}.npz", keys=np.arange(1, len(high_res) + 1),
             cam=high_res[:, ::4, ::4], high_res=high_res)
    return image_id


def _params(**over):
    return dict(dict(split="one", fg_rule="top_fraction", fg_fraction=0.2, bg_cam=0.1, bg_saliency=0.06,
                     saliency_dir=None), **over)


def test_run_background_from_saliency_or_cams(tiny_voc, tmp_path):
    root, _ = tiny_voc
    h = w = 64
    cam = np.zeros((1, h, w), np.float32)
    cam[0, :, :32] = np.linspace(0.05, 1, 32)  # left half: CAM rising to the right; right half: zero
    image_id = _one_image(root, tmp_path / "cams", cam)
    # an eighth of the 64 columns (512 pixels): the 8 highest columns of the CAM
    dsrg_seeds.run(_params(fg_fraction=0.125), root=root, cams=tmp_path / "cams", out=tmp_path / "a")
    cues = voc.load_mask(tmp_path / "a" / f"{image_id}.png", 6, (h, w))
    assert (cues[:, 32:] == 0).all()                  # CAM < 0.1: background (columns 0, 1 and the right half)
    assert (cues[:, :2] == 0).all() and (cues[:, 2:24] == 255).all()
    assert (cues[:, 24:32] == 1).all()
    saliency = np.full((h, w), 255, np.uint8)
    saliency[:8] = 15                                 # 15 / 255 < 0.06 <= 16 / 255
    saliency[8:16] = 16
    (tmp_path / "sal").mkdir()
    Image.fromarray(saliency).save(tmp_path / "sal" / f"{image_id}.png")
    dsrg_seeds.run(_params(fg_fraction=0.125, saliency_dir=str(tmp_path / "sal")), root=root,
                   cams=tmp_path / "cams", out=tmp_path / "b")
    cues = voc.load_mask(tmp_path / "b" / f"{image_id}.png", 6, (h, w))
    assert (cues[:8, 32:] == 0).all() and (cues[8:, 32:] == 255).all() and (cues[8:, :2] == 255).all()
    assert (cues[:, 24:32] == 1).all()                # foreground is stacked over background


def test_run_names_missing_inputs(tiny_voc, tmp_path):
    root, _ = tiny_voc
    image_id = _one_image(root, tmp_path / "cams", np.ones((1, 64, 64), np.float32))
    (tmp_path / "sal").mkdir()
    with pytest.raises(voc.DataError, match=f"sal/{image_id}.png: saliency map not found"):
        dsrg_seeds.run(_params(saliency_dir=str(tmp_path / "sal")), root=root, cams=tmp_path / "cams",
                       out=tmp_path / "c")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "sal" / f"{image_id}.png")
    with pytest.raises(voc.DataError, match="saliency map is 10x10 but its image is 64x64"):
        dsrg_seeds.run(_params(saliency_dir=str(tmp_path / "sal")), root=root, cams=tmp_path / "cams",
                       out=tmp_path / "c")
    (tmp_path / "cams" / f"{image_id}.npz").unlink()
    with pytest.raises(voc.DataError, match=f"{image_id}.npz: CAM file not found"):
        dsrg_seeds.run(_params(), root=root, cams=tmp_path / "cams", out=tmp_path / "c")
    assert not (tmp_path / "c").exists()  # nothing half-written
