"""The presets in config/ resolve to the papers' settings: `snakemake --configfile config/<preset>.yaml` loads
the preset alone (nothing of the demo config.yaml), plans the whole DAG, and a real run stops before any
job when the ImageNet weights are missing, after keeping the resolved configuration as {run_dir}/config.yaml."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--cores", "1"]
PRESETS = ["voc12", "voc12_scribble", "context", "coco"]
# What a preset may set apart from the schema's paper defaults: where its data and outputs are, and the
# weights files (the schema's null means "none", which a ResNet refuses).
PRESET_KEYS = ("run_dir", "methods", "dataset.", "model.pretrained", "seg.pretrained")
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
    defaults = schema_defaults()
    for key, default in defaults.items():
        if not key.startswith(PRESET_KEYS):
            assert resolved[key] == default, f"{preset}: {key} = {resolved[key]!r}, the paper's is {default!r}"
    assert not set(resolved) - set(defaults) - {k for k in resolved if k.startswith(PRESET_KEYS)}
    demo = flat(yaml.safe_load((REPO / "config.yaml").read_text()))
    leaked = {k: v for k, v in demo.items()
              if not k.startswith(PRESET_KEYS) and v != defaults.get(k) and resolved.get(k) == v}
    assert not leaked, f"{preset} runs demo values {leaked}"
    assert resolved["model.backbone"] == "resnet50" and resolved["seg.backbone"] == "resnet101"


def test_presets_name_the_papers_splits_and_classes():
    presets = {p: yaml.safe_load((REPO / "config" / f"{p}.yaml").read_text())["dataset"] for p in PRESETS}
    for name in ("voc12", "voc12_scribble"):
        assert presets[name]["train_split"] == "train_aug" and presets[name]["label_split"] == "train"
        assert len(presets[name]["class_names"]) == 21 and presets[name]["sbd_root"]
    assert presets["voc12_scribble"]["scribbles"]
    assert len(presets["context"]["class_names"]) == 60 and presets["context"]["instances"] is False
    assert len(presets["coco"]["class_names"]) == 81 and presets["coco"]["eval_split"] == "val2014"
    for preset in presets.values():
        assert preset["class_names"][0] == "background" and preset["demo"] is False


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
    assert '"backbone": "small"' in out and overlay["photos"]["n_train"] == 200
