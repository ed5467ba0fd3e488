"""A VOC-layout data set that is not the demo runs end to end: `demo: false`, its own class names, and a
train_aug-style training split of which only part has masks. The networks train on train_aug, the
pseudo-labels are made for every image trained on and scored on train (the images with masks), the
segmentation networks are scored on val, and the run keeps its resolved configuration."""
import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from wsss.datasets import demo_dataset, voc

REPO = Path(__file__).resolve().parents[1]
NAMES = ["background", "kite", "box", "pyramid", "hoop", "plus"]  # renamed demo shapes, in label order
CONFIG = {
    "run_dir": "results/own",
    "device": "cpu",
    "dataset": {"root": "data/own", "demo": False, "train_split": "train_aug", "label_split": "train",
                "eval_split": "val", "tags_from": "xml", "class_names": NAMES},
    "model": {"backbone": "small", "pretrained": None},
    "cam": {"crop": 64, "resize_long": [48, 80], "batch_size": 4, "epochs": 1, "scales": [1.0],
            "eval_thresholds": [0.1, 0.3]},
    "irn": {"crop": 64, "batch_size": 4, "epochs": 1, "pair_radius": 5, "steps": 8, "dp_iterations": 3},
    "seg": {"backbone": "small", "crop": 64, "batch_size": 4, "iterations": 2, "checkpoint_every": 1,
            "infer_scales": [1.0], "infer_crf": False},
    "dsrg": {"iterations": 2},
    "report": {"n_overlays": 2},
}


def own_dataset(root: Path) -> tuple[list[str], list[str]]:
    """A demo-generated set renamed and cut as a real one: train (masks), train_aug = train + images
    without masks, val (masks). Returns (train ids, the ids without masks)."""
    demo_dataset.run(dict(seed=3, n_train=12, n_val=4, size=64), root=root)
    for xml in (root / "Annotations").glob("*.xml"):
        text = xml.read_text()
        for old, new in zip(demo_dataset.PARAMS["class_names"].default[1:], NAMES[1:]):
            text = re.sub(f"<name>{old}</name>", f"<name>{new}</name>", text)
        xml.write_text(text)
    ids = voc.read_ids(root, "train")
    train, unmasked = ids[:6], ids[6:]
    for image_id in unmasked:
        voc.path(root, "mask", image_id).unlink()
        voc.path(root, "instances", image_id).unlink()
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("".join(f"{i}\n" for i in ids))
    shutil.rmtree(root / "pascal_2012_scribble")
    return train, unmasked


def snakemake(workdir: Path, config: dict, *args):
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                           "--directory", str(workdir), "--cores", "2", *args], capture_output=True, text=True)


def test_own_voc_layout_data_set_end_to_end(tmp_path):
    train, unmasked = own_dataset(tmp_path / "data" / "own")
    result = snakemake(tmp_path, CONFIG)
    assert result.returncode == 0, result.stderr[-5000:]
    run = tmp_path / "results" / "own"
    everything = {*train, *unmasked}
    assert {p.stem for p in (run / "cam" / "maps").glob("*.npz")} == everything
    assert {p.stem for p in (run / "irn" / "sem_seg").glob("*.png")} == everything
    assert {p.stem for p in (run / "dsrg" / "seeds").glob("*.png")} == everything
    assert {p.stem for p in (run / "irn" / "ins_seg").glob("*.npz")} == set(train)  # scored only
    table = pd.read_csv(run / "metrics.csv", keep_default_na=False)
    splits = table.groupby("stage").split.unique().to_dict()
    assert {s: list(v) for s, v in splits.items()} == {"cam": ["train"], "ir_label": ["train"], "sem_seg": ["train"],
                                                        "ins_seg": ["train"], "boundary": ["train"], "seg": ["val"]}
    assert set(table[table["class"] != ""]["class"]) <= set(NAMES)
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["dataset"]["class_names"] == NAMES and resolved["irn"]["crf_gt_prob"] == 0.7  # schema default
    assert "Configuration" in (run / "report" / "summary.html").read_text()

    # scoring pseudo-labels on a split without masks: validate_data stops the run before anything is scored,
    # naming the image (eval_cam's own check, voc.scored_ids, names the split: tests/test_data.py)
    config = copy.deepcopy(CONFIG)
    config["dataset"]["label_split"] = "train_aug"
    failed = snakemake(tmp_path, config, "eval_cam", "--forcerun", "eval_cam")
    log = (run / "logs" / "validate_data.log").read_text()
    assert failed.returncode != 0 and unmasked[0] in log and "not found" in log
