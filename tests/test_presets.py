"""The presets in config/ resolve to the papers' settings: `snakemake --configfile config/<preset>.yaml` loads
the preset alone (nothing of the demo config.yaml), plans the whole DAG, and a real run stops before any
job when the ImageNet weights are missing, after keeping the resolved configuration as {run_dir}/config.yaml."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wsss import config_checks

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--cores", "1"]
PRESETS = ["voc12", "voc12_scribble", "context", "coco"]
# Where a preset's data, outputs and weights files are: its own choice, pinned by nothing here.
LOCATIONS = ("run_dir", "dataset.root", "dataset.sbd_root", "dataset.context_root", "dataset.voc2010_root",
             "dataset.coco_root", "model.pretrained", "seg.pretrained")

# The papers' settings, read from the papers themselves (section or table; their texts are in the shared
# papers folder the README names) and, where a paper is silent or
# the project follows the authors' release instead (docs/faithfulness.md), from the release (file); never
# from the project's own schema, so a wrong default fails here.
PAPER_SETTINGS = {
    # IRNet (Ahn et al. 2019); release jiwoon-ahn/irn run_sample.py unless named
    "model.backbone": ("resnet50", "IRNet Sec. 3: ResNet50"),
    "cam.crop": (512, "release run_sample.py cam_crop_size"),
    "cam.resize_long": ([320, 640], "release step/train_cam.py resize_long"),
    "cam.batch_size": (16, "release run_sample.py cam_batch_size"),
    "cam.epochs": (5, "release run_sample.py cam_num_epoches"),
    "cam.lr": (0.1, "release run_sample.py cam_learning_rate"),
    "cam.weight_decay": (0.0001, "release run_sample.py cam_weight_decay"),
    "cam.scales": ([1.0, 0.5, 1.5, 2.0], "release run_sample.py cam_scales"),
    "irn.conf_fg_thres": (0.30, "IRNet Sec. 4.2: attention scores larger than 0.3"),
    "irn.conf_bg_thres": (0.05, "IRNet Sec. 4.2: smaller than 0.05"),
    "irn.crf_gt_prob": (0.7, "release misc/imutils.py crf_inference_label"),
    "irn.crf_gauss_sxy": (3, "release misc/imutils.py"),
    "irn.crf_gauss_compat": (3, "release misc/imutils.py"),
    "irn.crf_bi_sxy": (50, "release misc/imutils.py"),
    "irn.crf_bi_srgb": (5, "release misc/imutils.py"),
    "irn.crf_bi_compat": (10, "release misc/imutils.py"),
    "irn.crf_iterations": (10, "release misc/imutils.py t=10"),
    "irn.pair_radius": (10, "IRNet Sec. 6.1: radius 10 when training"),
    "irn.input_scale": (1.0, "IRNet: images at their own size"),
    "irn.crop": (512, "release run_sample.py irn_crop_size"),
    "irn.scale": ([0.5, 1.5], "release step/train_irn.py rescale (0.5, 1.5)"),
    "irn.batch_size": (32, "release run_sample.py irn_batch_size"),
    "irn.epochs": (3, "release run_sample.py irn_num_epoches"),
    "irn.lr": (0.1, "release run_sample.py irn_learning_rate"),
    "irn.momentum": (0.0, "release misc/torchutils.py PolyOptimizer: no momentum"),
    "irn.weight_decay": (0.0001, "release run_sample.py irn_weight_decay"),
    "irn.source_window": ("release", "release misc/indexing.py"),
    "irn.rw_radius": (5, "IRNet Sec. 6.1: reduced to 5 at inference"),
    "irn.beta": (10, "IRNet Sec. 6.1: beta 10"),
    "irn.steps": (256, "IRNet Sec. 6.1: t fixed to 256"),
    "irn.sem_bg_thres": (0.25, "release run_sample.py sem_seg_bg_thres"),
    "irn.rw_background": ("plane", "IRNet Sec. 5: a constant background score after the walk"),
    "irn.centroid_thres": (2.5, "release step/make_ins_seg_labels.py cluster_centroids thres"),
    "irn.dp_iterations": (300, "release step/make_ins_seg_labels.py find_centroids_with_refinement (paper: 100)"),
    # RPNet (Liu et al.) Sec. IV-A; release liuweide01/RPNet... where named
    "cam.rpnet.epochs": (5, "RPNet Sec. IV-A: 5 epochs"),
    "cam.rpnet.lr": (0.02, "RPNet Sec. IV-A: learning rate 0.02"),
    "cam.rpnet.batch_size": (8, "release run_sample.py (paper: 16)"),
    "cam.rpnet.levels": ([2, 4], "RPNet Table IV: block2 + block4"),
    "cam.rpnet.alpha": (0.3, "RPNet Sec. IV-A: alpha 0.3"),
    "cam.rpnet.keep": (0.5, "RPNet Sec. IV-A / Table V: beta 0.5"),
    "cam.rpnet.sigma": (3.0, "RPNet Sec. IV-A: sigma 3"),
    "cam.rpnet.consistency_weight": (10.0, "RPNet Sec. IV-A: lambda 10"),
    # DSRG (Huang et al. 2018) Sec. 4.1; release speedinghzl/DSRG training/experiment/seed_mc/ where named
    "seg.arch": ("deeplab_v2", "DSRG Sec. 4.1: DeepLab-ASPP"),
    "seg.backbone": ("resnet101", "DSRG Table 1: DSRG (Resnet101)"),
    "seg.crop": (321, "release train-s.prototxt new_height / new_width 321"),
    "seg.batch_size": (20, "DSRG Sec. 4.1: batch size 20"),
    "seg.momentum": (0.9, "DSRG Sec. 4.1: momentum 0.9"),
    "seg.weight_decay": (0.0005, "DSRG Sec. 4.1: weight decay 0.0005"),
    "seg.lr": (0.001, "release solver-f.prototxt base_lr (retrain)"),
    "seg.iterations": (20000, "release solver-f.prototxt max_iter (retrain)"),
    "seg.head_lr_mult": (10, "release train-s.prototxt fc8 lr_mult 10"),
    "seg.infer_scales": ([0.75, 1.0, 1.25], "release training/tools/test-ms-f.py"),
    "seg.infer_crf": (True, "DSRG Sec. 4.1: fully-connected CRF at test time"),
    "dsrg.fg_rule": ("top_fraction", "DSRG Sec. 4.1: top 20 % of the heatmap"),
    "dsrg.fg_fraction": (0.2, "DSRG Sec. 4.1: top 20 %"),
    "dsrg.bg_saliency": (0.06, "DSRG Sec. 4.1: saliency smaller than 0.06"),
    "dsrg.input": ("resize", "release train-s.prototxt: the whole image warped to 321"),
    "dsrg.iterations": (8000, "release solver-s.prototxt max_iter"),
    "dsrg.lr": (0.0005, "DSRG Sec. 4.1: 5e-4"),
    "dsrg.lr_step": (1000, "release solver-s.prototxt stepsize (paper: 2000)"),
    "dsrg.lr_gamma": (0.33, "release solver-s.prototxt gamma (paper: 0.1)"),
    "dsrg.th_fg": (0.85, "DSRG Sec. 4.1: theta_f 0.85"),
    "dsrg.th_bg": (0.99, "DSRG Sec. 4.1: theta_b 0.99"),
    "dsrg.crf_scale": (12, "release pylayers.py CRF(..., scale_factor=12.0)"),
    "dsrg.crf_log_unary": (False, "release pylayers.py: set_unary_energy(-P)"),
    "dsrg.infer_sizes": ([241, 321, 401], "release training/tools/test-ms.py"),
    "dsrg.infer_flip": (False, "release test-ms.py / test-ms-f.py: no flip"),
    "dsrg.retrain_batch_size": (10, "release train-f.prototxt batch_size"),
    "dsrg.retrain_scale": (None, "release train-f.prototxt: crop and mirror only"),
    "dsrg.retrain_label_grid": (True, "release train-f.prototxt: labels shrunk 8x to the output grid"),
    # PSI (Xu et al. 2021) Sec. 5.1
    "psi.crop": (512, "PSI Sec. 5.1: cropped into 512x512"),
    "psi.scale": ([0.5, 2.0], "PSI Sec. 5.1: random scaling [0.5, 2.0]"),
    "psi.rotation": (10, "PSI Sec. 5.1: random rotating [-10, 10]"),
    "psi.epochs": (200, "PSI Sec. 5.1: 200 training epochs"),
    "psi.lr": (0.001, "PSI Sec. 5.1: initial learning rate 0.001"),
    "psi.momentum": (0.9, "PSI Sec. 5.1: momentum 0.9"),
    "psi.weight_decay": (0.001, "PSI Sec. 5.1: weight decay 0.001"),
    "psi.cpp_radii": ([1, 1, 1, 4], "PSI Sec. 5.1: radii 1, 1, 1, 4"),
    "psi.cpp_destination": (4, "PSI Sec. 5.1: X^(4) as the destination"),
    "psi.lambda_1": (100, "PSI Sec. 5.1: lambda_1 100 on VOC (1 on PASCAL-Context)"),
    "psi.lambda_2": (1, "PSI Sec. 4: lambda_2 = 1"),
    "psi.k": (20, "PSI Sec. 3.2: k set to be 20"),
    "psi.steps": (3, "PSI Sec. 5.3 / Table 6: t = 3"),
    # CDSP (Zhang et al. 2024), Implementation Details and the DeepLab-v2 ablation; release Zxl19990529/...
    "cdsp.arch": ("deeplab_v2", "CDSP ablation: resnet50 backbone with deeplabV2"),
    "cdsp.lambda_s": (1.0, "CDSP ablation grid search: lambda_s = 1"),
    "cdsp.lambda_c": (6.0, "CDSP ablation grid search: lambda_c = 6"),
    "cdsp.losses": (["segs", "segc", "lorm", "ds", "dc"], "CDSP Table 2: all components"),
    "cdsp.batch_size": (16, "CDSP Implementation Details: batch size 16"),
    "cdsp.epochs": (50, "CDSP Implementation Details: 50 epochs"),
    "cdsp.warmup_epochs": (10, "CDSP Implementation Details: warmup over the first 10 epochs"),
    "cdsp.lr": (0.001, "CDSP Implementation Details: 1e-3"),
    "cdsp.momentum": (0.9, "CDSP Implementation Details: momentum 0.9"),
    "cdsp.weight_decay": (0.0005, "CDSP Implementation Details: weight decay 5e-4"),
    "cdsp.crop": (465, "release: crop 465"),
    "cdsp.label_smoothing": (0.1, "release: label smoothing 0.1 on the pseudo-label CE"),
}
# Per preset, what its data set and paper differ in.
CLASSES = {"voc12": 21, "voc12_scribble": 21, "context": 60, "coco": 81}
DATASETS = {
    "voc12": {"dataset.demo": False, "dataset.train_split": "train_aug", "dataset.label_split": "train",
              "dataset.eval_split": "val", "dataset.tags_from": "xml", "dataset.instances": True,
              "dataset.scribbles": False, "dataset.train_fraction": 1},
    "context": {"dataset.demo": False, "dataset.train_split": "train", "dataset.label_split": "train",
                "dataset.eval_split": "val", "dataset.tags_from": "masks", "dataset.instances": False,
                "dataset.scribbles": True, "dataset.train_fraction": 1, "psi.lambda_1": 1},
    "coco": {"dataset.demo": False, "dataset.train_split": "train2014", "dataset.label_split": "train2014",
             "dataset.eval_split": "val2014", "dataset.tags_from": "masks", "dataset.instances": True,
             "dataset.scribbles": False, "dataset.train_fraction": 1},
}
# voc12_scribble: voc12's images and tags (IRNet's released cls_labels.npy: Annotations XML), ScribbleSup's scribbles
DATASETS["voc12_scribble"] = {**DATASETS["voc12"], "dataset.scribbles": True}
# The methods of the papers each preset reproduces (README "Reproducing the papers")
METHODS = {"voc12": ["irnet", "rpnet", "dsrg"], "voc12_scribble": ["psi", "cdsp"], "context": ["psi"],
           "coco": ["irnet", "rpnet"]}


def expected_settings(preset: str) -> dict:
    """{key: value} a preset must resolve to."""
    return {**{k: v for k, (v, _) in PAPER_SETTINGS.items()}, **DATASETS[preset], "methods": METHODS[preset]}
# The training and scoring rules of each preset's methods (config `methods`): what its default target plans
PLANNED = {"voc12": ("train_cam", "train_irn", "rpnet_train_cam", "train_dsrg", "train_seg", "eval_seg"),
           "voc12_scribble": ("train_cam", "train_psi", "train_cdsp", "eval_seg"),
           "context": ("train_psi", "eval_seg"),
           "coco": ("train_cam", "train_irn", "rpnet_train_cam", "train_seg", "eval_seg")}


def schema_defaults(node=None, prefix="") -> dict:
    """Flat {key: default} of every schema property with a default."""
    node = node or yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    out = {}
    for name, prop in node.get("properties", {}).items():
        if "properties" in prop:
            out.update(schema_defaults(prop, f"{prefix}{name}."))
        elif "default" in prop:
            out[f"{prefix}{name}"] = prop["default"]
    return out


def flat(config: dict, prefix="") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:  # an empty mapping is a value (e.g. cdsp.pseudo_folders: {})
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run(workdir: Path, preset: str, *args):
    """snakemake with the preset and a second file that points its data and outputs into `workdir`."""
    root = workdir / "data"
    for split in ("train", "val"):  # VOC's own lists; the converters' outputs are planned, not run
        (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("2007_000032\n")
    (workdir / "here.yaml").write_text(yaml.safe_dump({"run_dir": "run", "dataset": {"root": str(root)}}))
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--configfile",
                           str(REPO / "config" / f"{preset}.yaml"), str(workdir / "here.yaml"), *args],
                          capture_output=True, text=True)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_resolves_to_the_papers_settings(tmp_path, preset):
    planned = run(tmp_path, preset, "--dry-run")
    out = planned.stdout + planned.stderr
    assert planned.returncode == 0, out[-3000:]
    for rule in PLANNED[preset]:
        assert f"rule {rule}:" in out, rule
    assert "WARNING (a run stops before any job): model.pretrained" in out

    stopped = run(tmp_path, preset)
    out = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0
    assert "resnet50-0676ba61.pth" in out and "https://download.pytorch.org/models/resnet50-0676ba61.pth" in out
    assert "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a" in out
    assert not (tmp_path / "run" / "logs").exists()  # no job started

    resolved = flat(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()))
    expected = expected_settings(preset)
    wrong = {k: (resolved.get(k, "missing"), v) for k, v in expected.items() if resolved.get(k, "missing") != v}
    assert not wrong, f"{preset}: key: (resolved, the paper's): {wrong}"
    names = resolved["dataset.class_names"]
    assert len(names) == CLASSES[preset] and names[0] == "background" and len(set(names)) == len(names)
    # nothing else: every other key is the schema's default (which the pinned keys above check in turn)
    defaults = schema_defaults()
    others = {k: v for k, v in resolved.items()
              if k not in expected and k not in LOCATIONS and k != "dataset.class_names" and v != defaults.get(k)}
    assert not others, f"{preset} sets {others} beyond the papers' settings"
    demo = flat(yaml.safe_load((REPO / "config.yaml").read_text()))
    leaked = {k: v for k, v in demo.items()
              if k not in LOCATIONS and v != defaults.get(k) and v != expected.get(k) and resolved.get(k) == v}
    assert not leaked, f"{preset} runs demo values {leaked}"


def test_presets_name_the_inputs_of_their_converters():
    """train_aug needs SBD (rule sbd_train_aug); Context and COCO are converted to the VOC layout first."""
    presets = {p: yaml.safe_load((REPO / "config" / f"{p}.yaml").read_text())["dataset"] for p in PRESETS}
    assert presets["voc12"]["sbd_root"] and presets["voc12_scribble"]["sbd_root"]
    assert presets["context"]["context_root"] and presets["context"]["voc2010_root"]
    assert presets["coco"]["coco_root"]


def test_photo_overlay_runs_the_demo_settings_on_the_photo_set(tmp_path):
    """README: `snakemake --configfile config.yaml config_photos.yaml` (a --configfile list merges in order;
    the overlay alone would fall back to the papers' settings, i.e. ResNet-50 without weights)."""
    overlay = yaml.safe_load((REPO / "config_photos.yaml").read_text())
    (tmp_path / "here.yaml").write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"),
                                                        "dataset": {"root": str(tmp_path / "photos")}}))
    planned = subprocess.run([*SNAKEMAKE, "--directory", str(tmp_path), "--dry-run", "--printshellcmds", "--configfile",
                              str(REPO / "config.yaml"), str(REPO / "config_photos.yaml"), str(tmp_path / "here.yaml")],
                             capture_output=True, text=True)
    out = planned.stdout + planned.stderr
    assert planned.returncode == 0, out[-3000:]
    assert "photos_dataset" in out and "demo_dataset" not in out
    assert '"backbone": "efficientnet_lite0"' in out and overlay["photos"]["n_train"] == 200  # the demo's



@pytest.mark.parametrize("path", sorted(REPO.glob("config*.yaml")) + sorted((REPO / "config").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_config_files_give_every_key_once(path):
    config_checks.check_unique_keys(path)
