"""Your own images (issue 29): a folder of photos and a tags file in, pseudo-labels and a segmenter out.

The converter (wsss/datasets/folder_dataset.py) on a folder made from the shapes demo: links, ids both ways,
splits, tags, masks and scribbles, nothing written into the user's folders, one line naming the file and the row
for each kind of bad input. The export (wsss/datasets/export_labels.py): the folder's tree and COCO RLE. The plan:
no scoring stage without masks, the masked images scored. End to end (slow): the whole route with the masks
withheld, the pseudo-labels scored against them here, and `wsss predict` on the trained network."""
import copy
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from _folder import make_user_folder, snapshot
from wsss import metrics
from wsss.datasets import demo_dataset, export_labels, folder_dataset, voc
from wsss.errors import DataError
from wsss.io import save_png
from wsss.pipeline import plan

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile")]
SHAPES = ["background", "disc", "square", "triangle", "ring", "cross"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A small shapes demo set (6 train, 2 val, 64 px): the source of the users' folders."""
    root = tmp_path_factory.mktemp("shapes") / "demo"
    demo_dataset.run(dict(class_names=SHAPES, n_train=6, n_val=2, size=64, seed=0), root=root)
    return root


@pytest.fixture
def user(shapes, tmp_path):
    """A user's folder made from the demo: images (nested, odd names, JPEG and PNG), tags.csv, withheld masks,
    scribbles (PNG and XML)."""
    mapping = make_user_folder(shapes, tmp_path / "user", SHAPES)
    return tmp_path / "user", mapping


def convert(user_dir, root, **kwargs):
    params = dict(class_names=kwargs.pop("class_names", SHAPES), seed=kwargs.pop("seed", 0),
                  val_fraction=kwargs.pop("val_fraction", 0.25))
    folder_dataset.run(params, images=user_dir / "images", tags=user_dir / "tags.csv", root=root, **kwargs)


def test_conversion_links_images_and_maps_ids_both_ways(user, shapes, tmp_path):
    user_dir, mapping = user
    before = snapshot(user_dir)
    root = tmp_path / "root"
    convert(user_dir, root, masks=user_dir / "withheld", scribbles=user_dir / "scribbles")
    assert snapshot(user_dir) == before  # nothing written, renamed or touched in the user's folders
    ids = folder_dataset.id_map(root)
    assert sorted(ids.values()) == sorted(mapping) and len(set(ids)) == len(ids)
    lists = {name: voc.read_ids(root, name) for name in ("train", "val", "all", "masked", "val_masked")}
    assert sorted(lists["all"]) == sorted(ids) and lists["masked"] == lists["all"]  # read_ids validates each id
    assert lists["all"] == lists["train"] + lists["val"] and lists["val_masked"] == lists["val"]
    assert len(lists["val"]) == 2  # 0.25 of 8
    tags = voc.image_tags(root, lists["all"], SHAPES, "xml")
    for row, image_id in enumerate(lists["all"]):
        source = mapping[ids[image_id]]
        image = voc.path(root, "image", image_id)
        assert image.is_symlink() and image.resolve() == (user_dir / "images" / ids[image_id]).resolve()
        assert np.array_equal(voc.load_image(image), voc.load_image(voc.path(shapes, "image", source)))
        assert np.array_equal(tags[row], voc.tags_of(shapes, source, SHAPES, "masks"))
        assert voc.path(root, "mask", image_id).resolve().parent.is_relative_to((user_dir / "withheld").resolve())
        # a PNG scribble linked, an XML one drawn: both equal the demo's own scribble PNG
        assert np.array_equal(voc.load_scribble(voc.path(root, "scribble", image_id), len(SHAPES)),
                              voc.load_scribble(voc.path(shapes, "scribble", source), len(SHAPES)))


def test_ids_are_plain_names_unique_and_stable():
    paths = ["a/b.jpg", "a__b.jpg", "a b.png", "a_b.jpg", ".hidden.jpg", "-x.jpg", "é/ü.JPG", "x" * 300 + ".jpg"]
    rows = folder_dataset._with_ids([folder_dataset.Row(n, p, ("c",), "train") for n, p in enumerate(sorted(paths))])
    ids = [r.image_id for r in rows]
    assert len(set(ids)) == len(ids) and all(voc.IMAGE_ID.fullmatch(i) and len(i) <= 180 for i in ids)
    assert folder_dataset.image_id("holiday photos/day 1/IMG 001.jpg") == "holiday_photos__day_1__IMG_001"


def test_class_names_from_the_file_sorted_background_first(user):
    user_dir, _ = user
    table = folder_dataset.read_table(user_dir / "images", user_dir / "tags.csv")
    named = {c for row in first_rows(user_dir, None) for c in row[1].split(";")}
    assert table.class_names == ["background", *sorted(named)] and len(named) >= 3
    with pytest.raises(DataError, match="set dataset.class_names"):  # mask indices need the config's order
        folder_dataset.read_table(user_dir / "images", user_dir / "tags.csv", masks=user_dir / "withheld")


def test_split_by_a_column_or_a_seeded_fraction(user):
    user_dir, mapping = user
    rows = list(csv.reader(open(user_dir / "tags.csv")))
    paths = [r[0] for r in rows[1:]]
    with open(user_dir / "tags.csv", "w", newline="") as f:  # a split column on some rows only
        csv.writer(f).writerows([["path", "classes", "split"]] + [r + (["val"] if i < 3 else [""])
                                                                   for i, r in enumerate(rows[1:])])

    def val(seed, fraction):
        table = folder_dataset.read_table(user_dir / "images", user_dir / "tags.csv", SHAPES, seed=seed,
                                          val_fraction=fraction)
        return {r.path for r in table.rows if r.split == "val"}

    assert set(paths[:3]) <= val(0, 0.0) == set(paths[:3])  # the column alone
    drawn = [val(seed, 0.4) - set(paths[:3]) for seed in range(4)]
    assert all(len(d) == 2 for d in drawn) and drawn[0] == val(0, 0.4) - set(paths[:3])  # 0.4 of 5, seeded
    assert len({frozenset(d) for d in drawn}) > 1  # another seed, another draw


def write_tags(user_dir, rows):
    with open(user_dir / "tags.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)


def first_rows(user_dir, n=3):
    """The first n data rows of the tags file (None: all)."""
    return list(csv.reader(open(user_dir / "tags.csv")))[1:None if n is None else 1 + n]


BAD_ROWS = {
    "unknown class": (lambda r: [r[0], [r[1][0], "disc;dgo"], r[2]], 3, "class 'dgo' is not in dataset.class_names"),
    "listed twice": (lambda r: [r[0], r[1], r[0]], 4, "listed twice (first on row 2)"),
    "missing image": (lambda r: [r[0], ["misc/nothing.jpg", "disc"], r[1]], 3, "not found"),
    "no class": (lambda r: [r[0], [r[1][0], ""], r[2]], 3, "has no object class"),
    "background only": (lambda r: [r[0], [r[1][0], "background"]], 3, "has no object class"),
    "escaping path": (lambda r: [r[0], ["../user/tags.csv", "disc"]], 3, "is not inside the images folder"),
    "absolute path": (lambda r: [r[0], ["/etc/passwd", "disc"]], 3, "is not inside the images folder"),
    "not an image": (lambda r: [r[0], ["notes.txt", "disc"]], 3, "is not a JPEG or PNG"),
    "bad split": (lambda r: [r[0], [*r[1], "test"]], 3, "split 'test' must be train, val or empty"),
    "same name, two extensions": (lambda r: [r[0], [r[0][0][:-4] + ".png", "disc"]], 3, "differ only in their extension"),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_bad_rows_one_line_naming_the_file_and_the_row(user, tmp_path, case):
    user_dir, _ = user
    edit, row, message = BAD_ROWS[case]
    (user_dir / "images" / "notes.txt").write_text("not an image")
    write_tags(user_dir, [["path", "classes"], *edit(first_rows(user_dir))])
    before = snapshot(user_dir)
    with pytest.raises(DataError) as error:
        convert(user_dir, tmp_path / "root")
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"{user_dir / 'tags.csv'}: row {row}: ") and message in text, text
    assert snapshot(user_dir) == before and not (tmp_path / "root").exists()


def test_a_tags_file_naming_no_image_of_the_folder(user, tmp_path):
    user_dir, _ = user
    write_tags(user_dir, [["photos/a.jpg", "disc"], ["photos/b.jpg", "ring"]])
    with pytest.raises(DataError, match=r"tags.csv: none of its 2 images is in .*images \(row 1: photos/a.jpg\)"):
        convert(user_dir, tmp_path / "root")


def test_unreadable_image_names_its_row_and_file(user, tmp_path):
    user_dir, _ = user
    rows = first_rows(user_dir)
    (user_dir / "images" / rows[1][0]).write_bytes(b"\xff\xd8 truncated")
    before = snapshot(user_dir)
    with pytest.raises(DataError) as error:
        convert(user_dir, tmp_path / "root")
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"{user_dir / 'tags.csv'}: row 3: {user_dir / 'images' / rows[1][0]}")
    assert "unreadable image" in text
    assert snapshot(user_dir) == before and not (tmp_path / "root" / "ImageSets").exists()


def test_root_holding_other_files_or_inside_the_users_folder_is_refused(user, tmp_path):
    user_dir, _ = user
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="holds files wsss did not write"):
        convert(user_dir, tmp_path / "theirs")
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "mine"
    with pytest.raises(DataError, match="is inside dataset.images"):
        convert(user_dir, user_dir / "images" / "wsss")
    config = dict(seed=0, run_dir=str(user_dir / "images" / "results"),
                  dataset=dict(images=str(user_dir / "images"), tags=str(user_dir / "tags.csv"), val_fraction=0.1))
    with pytest.raises(DataError, match="run_dir: .* is inside dataset.images"):
        folder_dataset.configure(config)


def test_reconversion_replaces_only_its_own_files(user, tmp_path):
    """A mask taken away is no longer linked (the image is no longer scored)."""
    user_dir, _ = user
    root = tmp_path / "root"
    convert(user_dir, root, masks=user_dir / "withheld")
    gone = sorted((user_dir / "withheld").rglob("*.png"))[0]
    gone.unlink()
    convert(user_dir, root, masks=user_dir / "withheld")
    assert len(voc.read_ids(root, "masked")) == len(voc.read_ids(root, "all")) - 1
    assert len(list((root / "SegmentationClass").iterdir())) == len(voc.read_ids(root, "all")) - 1


def test_export_labels_in_the_folders_tree_and_as_coco_rle(user, tmp_path):
    from pycocotools import mask as rle

    user_dir, _ = user
    root = tmp_path / "root"
    convert(user_dir, root)
    ids = folder_dataset.id_map(root)
    rng = np.random.default_rng(0)
    labels = {i: rng.integers(0, len(SHAPES), (64, 64)).astype(np.uint8) for i in ids}
    for image_id, label in labels.items():
        save_png(tmp_path / "labels" / f"{image_id}.png", label, voc.voc_palette())
    out, coco = tmp_path / "out", tmp_path / "out.json"
    export_labels.run(dict(class_names=SHAPES, split="all"), root=root, labels=tmp_path / "labels", out=out, coco=coco)
    exported = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert exported == sorted(str(Path(p).with_suffix(".png")) for p in ids.values())  # the images' tree
    document = json.loads(coco.read_text())
    assert [c["name"] for c in document["categories"]] == SHAPES[1:]
    for image in document["images"]:
        label = labels[image["wsss_id"]]
        png = Image.open(out / Path(image["file_name"]).with_suffix(".png"))
        assert png.mode == "P" and np.array_equal(np.asarray(png), label)
        decoded = np.zeros_like(label)
        for ann in (a for a in document["annotations"] if a["image_id"] == image["id"]):
            decoded[rle.decode(dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())) > 0] = \
                ann["category_id"]
        assert np.array_equal(decoded, label)


def test_outputs_leave_out_scores_of_splits_without_masks():
    out = plan.Outputs(scored={"masked"})
    out.add("irnet", "metrics", "cam.csv", split="masked")
    out.add("irnet", "metrics", "seg.csv", split="val")
    out.add("dsrg", "figure", "fig4.png", split="train", against_masks=True)
    out.add("dsrg", "figure", "other.png")
    assert out.files(["irnet", "dsrg"]) == ["cam.csv", "other.png"]
    config = {"run_dir": "r", "dataset": {"images": "x", "label_split": "all", "eval_split": "val"}}
    assert plan.scored_splits(config) == set() and plan.labelled_split(config) == "all"
    assert plan.pseudo_labels(config, "irnet") == "r/irn/sem_seg"
    assert plan.pseudo_labels(config, "dsrg") == "r/dsrg/pred/all"


def test_psi_steps_without_masks(user, tmp_path):
    """PSI's supervision scores and Fig. 2 on images without masks: NaN scores, no ground-truth column."""
    from wsss.psi import psi_fig2, train_psi

    user_dir, _ = user
    root = tmp_path / "root"
    convert(user_dir, root, scribbles=user_dir / "scribbles")
    ids = voc.read_ids(root, "train")[:2]
    log = train_psi.SupervisionLog(root, ids, len(SHAPES), tmp_path / "sup")
    scribbles = [voc.load_scribble(voc.path(root, "scribble", i), len(SHAPES)) for i in ids]
    log.record(0, scribbles)
    row = log.table().iloc[0]
    assert np.isnan(row.precision) and np.isnan(row.iou) and 0 < row.labelled < 1
    psi_fig2.run(dict(class_names=SHAPES, split="train", steps=0, n_images=2, panel=40), root=root,
                 supervision=tmp_path / "sup", out=tmp_path / "fig2.png")
    with Image.open(tmp_path / "fig2.png") as fig:  # image and t0: no ground-truth column
        assert fig.size == (2 * 40 + psi_fig2.GAP, psi_fig2.HEADER + 2 * (40 + psi_fig2.GAP))


# ---- the workflow -------------------------------------------------------------------------------------------

TINY = {
    "run_dir": "results/mine",
    "seed": 0,
    "device": "cpu",
    "methods": ["irnet", "dsrg"],
    "dataset": {"images": "user/images", "tags": "user/tags.csv", "val_fraction": 0.2},
    "model": {"backbone": "small", "pretrained": None},
    "cam": {"crop": 64, "resize_long": [48, 80], "batch_size": 5, "epochs": 1, "scales": [1.0, 0.5],
            "eval_thresholds": [0.1, 0.2, 0.3]},
    "irn": {"crop": 64, "batch_size": 5, "epochs": 1, "pair_radius": 5, "steps": 16, "dp_iterations": 5},
    "seg": {"backbone": "small", "crop": 64, "batch_size": 5, "iterations": 2, "checkpoint_every": 1,
            "infer_scales": [1.0]},
    "dsrg": {"iterations": 2, "infer_sizes": [64], "retrain_batch_size": 5},
    "psi": {"crop": 64, "batch_size": 5, "epochs": 4, "head_channels": 8, "cpp_width": 8, "lambda_1": 1,
            "sld_radius": 4, "infer_scales": [1.0]},
    "cdsp": {"crop": 64, "batch_size": 5, "epochs": 1, "warmup_epochs": 0, "infer_scales": [1.0]},
    "report": {"n_overlays": 2},
}


def snakemake(workdir: Path, config: dict, *args) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--cores", "2", *args], capture_output=True,
                          text=True, env=dict(os.environ))


def planned(workdir: Path, config: dict) -> dict[str, int]:
    result = snakemake(workdir, config, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    table = result.stdout.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


@pytest.fixture
def workdir(user, tmp_path):
    user_dir, _ = user
    work = tmp_path / "wf"
    work.mkdir()
    os.symlink(user_dir, work / "user")
    return work


SCORING = {"eval_cam", "eval_sem_seg", "eval_boundary", "eval_seg", "eval_ins_seg", "metrics"}


def test_without_masks_no_scoring_stage_is_planned(workdir):
    jobs = planned(workdir, TINY)
    assert not SCORING & set(jobs), jobs
    assert {"folder_dataset", "validate_data", "train_cam", "make_sem_seg_labels", "train_seg", "train_dsrg",
            "infer_seg", "report"} <= set(jobs)
    assert jobs["export_labels"] == 2  # irnet, dsrg


def test_with_some_masks_those_images_are_scored(workdir):
    masks = workdir / "user" / "withheld"
    for png in sorted(masks.rglob("*.png"))[::2]:  # half of the images keep their mask
        png.unlink()
    config = copy.deepcopy(TINY)
    config["dataset"].update(masks="user/withheld", class_names=SHAPES)
    jobs = planned(workdir, config)
    assert {"eval_cam", "eval_sem_seg", "eval_boundary", "metrics"} <= set(jobs)
    table = folder_dataset.read_table(workdir / "user" / "images", workdir / "user" / "tags.csv", SHAPES, masks,
                                      val_fraction=0.2)
    assert table.splits()["label_split"] == "masked" and len(table.lists()["masked"]) == 4
    if "val_masked" in table.lists():
        assert "eval_seg" in jobs


def test_scribbles_let_psi_and_cdsp_run(workdir):
    config = copy.deepcopy(TINY)
    config["methods"] = ["irnet", "psi", "cdsp"]
    config["dataset"].update(scribbles_dir="user/scribbles", class_names=SHAPES)
    jobs = planned(workdir, config)
    assert {"train_psi", "train_cdsp"} <= set(jobs) and jobs["export_labels"] == 3
    config["dataset"]["scribbles_dir"] = None
    result = snakemake(workdir, config, "--dry-run")
    assert result.returncode != 0 and "learn from scribbles" in result.stdout + result.stderr


def test_a_bad_row_stops_the_run_before_any_job(workdir):
    rows = list(csv.reader(open(workdir / "user" / "tags.csv")))
    rows[2][1] = "disc;dgo"
    write_tags(workdir / "user", rows)
    config = copy.deepcopy(TINY)
    config["dataset"]["class_names"] = SHAPES
    result = snakemake(workdir, config, "--dry-run")
    assert result.returncode != 0
    assert "user/tags.csv: row 3: class 'dgo' is not in dataset.class_names" in result.stdout + result.stderr
    assert not (workdir / "results").exists()


# ---- end to end -----------------------------------------------------------------------------------------------

# The shapes demo at 128 px, the CAM network trained long enough to localise (as test_workflow's TINY), DSRG long
# enough to label: 18 images. The default methods only: PSI and CDSP need far longer training than a test can give
# to beat all-background here (measured: 0.08 and 0.03 at the TINY schedule, doubling the test's time); their
# steps without masks are tested above. ScribbleSup XML scribbles are converted all the same (class names, so the
# class list still comes from the tags file).
E2E = {**TINY,
       "dataset": {**TINY["dataset"], "val_fraction": 0.2, "scribbles_dir": "user/scribbles"},
       "cam": {**TINY["cam"], "crop": 128, "resize_long": [96, 160], "epochs": 20},
       "dsrg": {**TINY["dsrg"], "iterations": 30, "infer_sizes": [128]}}


def all_background_miou(masks: list[np.ndarray]) -> float:
    """mIoU of labelling every pixel background: what a pipeline that learned nothing scores."""
    conf = sum(metrics.confusion(np.zeros_like(m), m, len(SHAPES)) for m in masks)
    return float(np.nanmean(metrics.scores(conf)["iou"]))


def score(labels: Path, masks: dict[str, np.ndarray], names: list[str]) -> float:
    """mIoU of the exported labels (`labels`/<path>.png, indices into `names`) against the withheld masks."""
    to_shapes = np.array([SHAPES.index(n) for n in names] + [255] * (256 - len(names)), np.uint8)
    conf = sum(metrics.confusion(to_shapes[np.asarray(Image.open(labels / Path(p).with_suffix(".png")))], m,
                                 len(SHAPES)) for p, m in masks.items())
    return float(np.nanmean(metrics.scores(conf)["iou"]))


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """The whole route on a folder made from the shapes demo (18 images at 128 px), its masks withheld."""
    work = tmp_path_factory.mktemp("own")
    source = work / "source"
    demo_dataset.run(dict(class_names=SHAPES, n_train=14, n_val=4, size=128, seed=0), root=source)
    mapping = make_user_folder(source, work / "user", SHAPES, png_scribbles=False)
    shutil.move(work / "user" / "withheld", work / "withheld")  # the test's, not the run's
    before = snapshot(work / "user")
    result = snakemake(work, E2E)
    assert result.returncode == 0, result.stderr[-5000:]
    assert snapshot(work / "user") == before
    return work, mapping


@pytest.mark.slow
def test_own_images_end_to_end_without_masks(own_run):
    work, mapping = own_run
    run = work / "results" / "mine"
    assert not (run / "metrics.csv").exists() and not list((run / "metrics").glob("*.csv"))
    page = (run / "report" / "summary.html").read_text()
    assert "ground truth" not in page and "Nothing is scored" in page and "loss_curves" not in page
    assert (run / "report" / "loss_curves.png").stat().st_size > 0
    names = yaml.safe_load((run / "config.yaml").read_text())["dataset"]["class_names"]
    assert names == ["background", *sorted(SHAPES[1:])]  # from the tags file
    masks = {p: np.asarray(Image.open((work / "withheld" / p).with_suffix(".png"))) for p in mapping}
    trivial = all_background_miou(list(masks.values()))
    found = {}
    for method in E2E["methods"]:
        labels = run / "labels" / method
        assert sorted(str(p.relative_to(labels)) for p in labels.rglob("*.png")) == sorted(
            str(Path(p).with_suffix(".png")) for p in mapping)
        coco = json.loads((run / "labels" / f"{method}.json").read_text())
        assert sorted(i["file_name"] for i in coco["images"]) == sorted(mapping)
        found[method] = score(labels, masks, names)
    print("pseudo-labels vs the withheld masks (mIoU):", {m: round(v, 3) for m, v in found.items()},
          f"all background {trivial:.3f}")
    assert found["irnet"] >= 2 * trivial and found["dsrg"] >= 1.5 * trivial, (found, trivial)
    # the networks for `wsss predict`
    out = work / "predicted"
    predict = subprocess.run([sys.executable, "-m", "wsss.cli", "predict", "--model", str(run / "seg_irnet" / "model.pt"),
                              "--images", str(work / "user" / "images" / "misc"), "--out", str(out)],
                             capture_output=True, text=True)
    assert predict.returncode == 0, predict.stderr
    assert len(list(out.glob("*.png"))) == len(list((work / "user" / "images" / "misc").iterdir()))
