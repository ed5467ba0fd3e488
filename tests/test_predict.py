"""`wsss predict` on people's own images: two PNGs (RGBA and grey) and a JPEG, from a folder and as files."""
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from wsss.datasets import demo_dataset, voc
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


# ---- every network the pipeline trains (issue 24 item 5), and every misuse one line (issue 25 items 1, 4, 6, 10, 11)

@pytest.fixture(scope="module")
def networks(tiny_voc_master, tmp_path_factory):
    """name -> model.pt of each segmentation network the pipeline trains, made by its own trainer (1-2 SGD steps),
    and of the two networks that are not segmenters (the CAM classifier, IRNet)."""
    import torch
    import torch.nn.functional as F

    from wsss.cam import train_cam
    from wsss.cdsp import cdsp_distance_maps, train_cdsp
    from wsss.dsrg import dsrg_seeds, train_dsrg
    from wsss.irnet import net as irnet
    from wsss.psi import train_psi

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root, folder = tiny_voc_master, tmp_path_factory.mktemp("networks")
    names = list(demo_dataset.PARAMS["class_names"].default)
    base = dict(seed=0, device="cpu", class_names=names, split="train", backbone="small", pretrained=None,
                weight_decay=0.0005, num_workers=0)
    seg = dict(base, crop=48, batch_size=4, iterations=1, lr=0.01)
    made = {}
    for arch in ("deeplab_v2", "deeplab_v3plus"):  # seg_irnet, seg_rpnet, dsrg_retrain (train_seg)
        made[arch] = folder / arch / "model.pt"
        train_seg.run(dict(seg, arch=arch), root=root, labels=root / "SegmentationClass", out=made[arch])
    cams = folder / "cams"  # DSRG's seeds from CAM files made of the ground truth
    cams.mkdir()
    for image_id in voc.read_ids(root, "train"):
        gt = voc.load_mask(voc.path(root, "mask", image_id), len(names))
        keys = np.array([c for c in range(1, len(names)) if (gt == c).any()])
        cam = F.avg_pool2d(torch.from_numpy(np.stack([gt == c for c in keys]).astype(np.float32))[None], 9, 1, 4)[0]
        np.savez(cams / f"{image_id}.npz", keys=keys, cam=cam[:, ::4, ::4].numpy(), high_res=cam.numpy())
    dsrg_seeds.run(dict(split="train", fg_rule="top_fraction", fg_fraction=0.2, bg_cam=0.05, bg_saliency=0.06),
                   root=root, cams=cams, out=folder / "seeds")
    made["dsrg"] = folder / "dsrg" / "model.pt"
    train_dsrg.run(dict(seg, arch="deeplab_v2", tags_from="masks", lr=0.001, lr_policy="step", crf_scale=12,
                        th_fg=0.85, th_bg=0.99), root=root, seeds=folder / "seeds", out=made["dsrg"],
                   supervision=folder / "dsrg" / "sup.csv", plot=folder / "dsrg" / "sup.png")
    made["psi"] = folder / "psi" / "model.pt"
    train_psi.run(dict(base, crop=48, batch_size=4, epochs=1, lr=0.01, cpp_width=8, head_channels=16, steps=0,
                       sld_epochs=1), root=root, out=made["psi"], supervision=folder / "psi" / "sup",
                  scores=folder / "psi" / "scores.csv")
    pseudo = root / "SegmentationClass"  # CDSP on the masks as pseudo-labels
    cdsp_distance_maps.run(dict(class_names=names, split="train", lambda_s=1.0, lambda_c=6.0), root=root,
                           pseudo=pseudo, out_scribble=folder / "ds", out_pseudo=folder / "dc")
    made["cdsp"] = folder / "cdsp" / "model.pt"
    train_cdsp.run(dict(base, arch="deeplab_v2", crop=48, batch_size=4, lr=0.01, epochs=1, warmup_epochs=0),
                   root=root, pseudo=pseudo,
                   dist_scribble=folder / "ds", dist_pseudo=folder / "dc", out=made["cdsp"])
    made["cam"] = folder / "cam" / "model.pt"
    train_cam.run(dict(base, crop=32, resize_long=[32, 48], batch_size=8, epochs=1, lr=0.1), root=root,
                  out=made["cam"])
    made["irn"] = folder / "irn" / "model.pt"  # as train_irn saves it (fit's format, IRNet's params)
    made["irn"].parent.mkdir()
    torch.save({"state_dict": irnet.build("small").state_dict(), "history": {},
                "params": dict(base, irn_backbone="cam", crop=64)}, made["irn"])
    torch.set_num_threads(threads)
    return made


@pytest.fixture
def photos(tiny_voc_master, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, image_id in zip("ab", voc.read_ids(tiny_voc_master, "val")):
        Image.open(voc.path(tiny_voc_master, "image", image_id)).save(folder / f"{name}.png")
    return folder


def _predict(*args) -> str | None:
    """`wsss predict ARGS` in this process: None on success, else the one line it exits with."""
    try:
        predict.main(["--device", "cpu", *map(str, args)])
    except SystemExit as e:
        assert isinstance(e.code, str) and "\n" not in e.code, e.code
        return e.code
    return None


@pytest.mark.parametrize("net", ["deeplab_v2", "deeplab_v3plus", "dsrg", "psi", "cdsp"])
def test_predict_runs_every_segmentation_network_the_pipeline_trains(networks, photos, tmp_path, net, one_thread):
    assert _predict("--model", networks[net], "--images", photos, "--out", tmp_path / "out") is None
    for name in "ab":
        labels = np.asarray(Image.open(tmp_path / "out" / f"{name}.png"))
        assert labels.shape == (64, 64) and labels.max() < 6
        assert (tmp_path / "out" / f"{name}.overlay.jpg").is_file()


@pytest.mark.parametrize("net, problem", [
    ("cam", "this is a classifier \\(train_cam's CAM network\\), not a segmentation network"),
    ("irn", "this is IRNet's boundary and displacement network \\(train_irn\\), not a segmentation network")])
def test_predict_names_a_network_that_is_not_a_segmenter(networks, photos, tmp_path, net, problem):
    message = _predict("--model", networks[net], "--images", photos, "--out", tmp_path / "out")
    assert re.match(f"wsss predict: error: {networks[net]}: {problem}", message), message
    assert not (tmp_path / "out").exists()


def test_predict_on_cuda_without_a_gpu_is_one_line(networks, photos, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    message = _predict("--model", networks["deeplab_v2"], "--images", photos, "--out", tmp_path / "o", "--device",
                       "cuda")
    assert message.startswith("wsss predict: error: device 'cuda' requested but no GPU is visible"), message


def test_predict_never_writes_over_its_inputs(networks, photos, one_thread):
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    for images in ([photos], [photos / "a.png", photos / "b.png"], [photos / "b.png"]):
        message = _predict("--model", networks["deeplab_v2"], "--images", *images, "--out", photos)
        first = images[0] if images[0].is_file() else photos / "a.png"
        assert message.startswith(f"wsss predict: error: {first}: is one of the input images"), message
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_predict_never_replaces_a_file_or_folder_it_did_not_write(networks, photos, tmp_path, one_thread):
    out = tmp_path / "out"
    (out / "b.png" / "sub").mkdir(parents=True)
    (out / "b.png" / "sub" / "file.txt").write_text("mine")
    message = _predict("--model", networks["deeplab_v2"], "--images", photos, "--out", out)
    assert message == f"wsss predict: error: {out / 'b.png'}: is a folder; predict never replaces a folder with a file"
    assert (out / "b.png" / "sub" / "file.txt").read_text() == "mine"
    (out / "b.png" / "sub" / "file.txt").unlink()
    (out / "b.png" / "sub").rmdir()
    (out / "b.png").rmdir()
    (out / "a.overlay.jpg").write_bytes(b"the user's")
    message = _predict("--model", networks["deeplab_v2"], "--images", photos, "--out", out)
    assert message.startswith(f"wsss predict: error: {out / 'a.overlay.jpg'}: exists and was not written by wsss "
                              "predict"), message
    assert (out / "a.overlay.jpg").read_bytes() == b"the user's"
    assert sorted(p.name for p in out.iterdir()) == ["a.overlay.jpg"]  # checked before anything is written
    (out / "a.overlay.jpg").unlink()
    assert _predict("--model", networks["deeplab_v2"], "--images", photos, "--out", out) is None
    assert _predict("--model", networks["deeplab_v2"], "--images", photos, "--out", out) is None  # its own files


def test_predict_checks_out_and_scales_before_loading_the_model(photos, tmp_path):
    missing_model = tmp_path / "no_model.pt"  # every error below comes before the model is read
    (tmp_path / "file").write_text("x")
    for out, problem in ((tmp_path / "file", "is a file, not a folder"),
                         (tmp_path / "file" / "sub", "cannot write there")):
        message = _predict("--model", missing_model, "--images", photos, "--out", out)
        assert message.startswith(f"wsss predict: error: {out}: {problem}"), message
    for scales in (["0"], ["-1"], ["1", "nan"]):
        message = _predict("--model", missing_model, "--images", photos, "--out", tmp_path / "o", "--scales", *scales)
        assert message.startswith("wsss predict: error: --scales: each scale must be a positive number"), message


def test_predict_refuses_an_image_name_that_is_not_a_plain_file_name(networks, tmp_path):
    for name in ("-rf.png", ".hidden.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
        message = _predict("--model", networks["deeplab_v2"], "--images", tmp_path / name, "--out", tmp_path / "o")
        assert message.startswith(f"wsss predict: error: {tmp_path / name}: image name '{name}' starts with '.' or "
                                  "'-'"), message
