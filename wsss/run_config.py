"""What the workflow does with a run's configuration before any job (workflow/rules/common.smk).

`write` keeps the resolved configuration (config file, presets, `--config` and the schema's defaults
merged) as {run_dir}/config.yaml, so a run's folder says what ran; the report links it. It never replaces a
file wsss did not write there, nor a config file the run reads (`check_record`; issue 25: `--configfile
results/exp/config.yaml` with run_dir results/exp lost the user's commented file).
`weights` checks the ImageNet weights of both backbones (wsss/models/weights.py)."""
from pathlib import Path

import yaml

from wsss.errors import DataError
from wsss.io import atomic_path
from wsss.models import weights
from wsss.pipeline import plan

HEADER = "# wsss: this run's resolved configuration, rewritten when the run starts (edit your own config file)\n"


def _dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def written_by_wsss(text: str) -> bool:
    """The record's header, or (older wsss) a bare dump: text that YAML re-dumps byte for byte, no comment."""
    if text.startswith(HEADER):
        return True
    try:
        return isinstance(yaml.safe_load(text), dict) and _dump(yaml.safe_load(text)) == text
    except yaml.YAMLError:
        return False


def check_record(file, read=()):
    """DataError unless the run may keep its record at `file`: not a config file the run reads (`read`), and
    missing or written by wsss."""
    file = Path(file)
    if any(Path(r).resolve() == file.resolve() for r in read):
        raise DataError(f"{file}: is a config file this run reads, and the run keeps its resolved configuration "
                        "there; move your config file out of run_dir, or set another run_dir")
    if file.is_dir() or (file.exists() and not written_by_wsss(file.read_text(errors="replace"))):
        raise DataError(f"{file}: not written by wsss, and the run keeps its resolved configuration there; move it, "
                        "or set another run_dir")


# (backbone key, weights key) of each network family: CAM / IRNet, and the segmentation networks.
BACKBONES = (("model.backbone", "model.pretrained"), ("seg.backbone", "seg.pretrained"))


def write(config: dict, file, read=()):
    """Writes `config` as YAML to `file` atomically (unchanged content is not rewritten); `read`: the config
    files the run reads (check_record)."""
    check_record(file, read)
    text = HEADER + _dump(config)
    file = Path(file)
    if file.is_file() and file.read_text() == text:
        return
    file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(file) as tmp:
        tmp.write_text(text)


def get(config: dict, key: str):
    section, name = key.split(".")
    return config[section][name]


def weighted(config: dict) -> list[tuple[str, str]]:
    """The (backbone key, weights key) pairs that load ImageNet weights: seg's not when its networks start from
    the CAM network (wsss.pipeline.plan.seg_from_cam)."""
    return [pair for pair in BACKBONES if not (plan.seg_from_cam(config) and pair[0] == "seg.backbone")]


def weight_problems(config: dict) -> list[str]:
    """Config problems with the weights, found without reading any file."""
    found = (weights.problem(get(config, b), get(config, p), p) for b, p in weighted(config))
    return [m for m in found if m]


def prepare_weights(config: dict):
    """Downloads `download` weights and checks every file's sha256 (ValueError on a problem)."""
    for b, p in weighted(config):
        weights.prepare(get(config, b), get(config, p), p)
