"""What the workflow does with a run's configuration before any job (workflow/rules/common.smk).

`write` keeps the resolved configuration (config file, presets, `--config` and the schema's defaults
merged) as {run_dir}/config.yaml, so a run's folder says what ran; the report links it.
`weights` checks the ImageNet weights of both backbones (wsss/models/weights.py)."""
from pathlib import Path

import yaml

from wsss.io import atomic_path
from wsss.models import weights

# (backbone key, weights key) of each network family: CAM / IRNet, and the segmentation networks.
BACKBONES = (("model.backbone", "model.pretrained"), ("seg.backbone", "seg.pretrained"))


def write(config: dict, file):
    """Writes `config` as YAML to `file` atomically (unchanged content is not rewritten)."""
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
    file = Path(file)
    if file.is_file() and file.read_text() == text:
        return
    file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(file) as tmp:
        tmp.write_text(text)


def get(config: dict, key: str):
    section, name = key.split(".")
    return config[section][name]


def weight_problems(config: dict) -> list[str]:
    """Config problems with the weights, found without reading any file."""
    found = (weights.problem(get(config, b), get(config, p), p) for b, p in BACKBONES)
    return [m for m in found if m]


def prepare_weights(config: dict):
    """Downloads `download` weights and checks every file's sha256 (ValueError on a problem)."""
    for b, p in BACKBONES:
        weights.prepare(get(config, b), get(config, p), p)
