"""The papers' numbers on PASCAL VOC 2012, keyed like metrics.csv rows, for the report's "paper" columns, and
the notes that say where a run's results are not the papers' method.

PAPER[(stage, method, split, metric)] = Number(percent, source, settings). Sources are the tables of the papers
in ../shared/papers/ (README there); `settings` (dotted config keys) are what the number was measured with, and
`number` gives it only for a run with those settings, so a ResNet-50 number never sits beside a ResNet-101
network. Add a method's numbers here when its stages write metrics.

Not here: DSRG's Table 2 (53.6 / 57.6 / 59.0 for baseline + BSL, + DSRG, + Retrain) is VGG-16, a backbone the
project does not build; its ResNet-101 result (Table 1, 61.4 val) includes the retrain step. IRNet's Table 4
(63.5) is DeepLab v2 on ResNet-50, shown only when seg.backbone is resnet50."""
from typing import NamedTuple


class Number(NamedTuple):
    percent: float
    source: str
    settings: dict


IRNET = {"model.backbone": "resnet50"}  # IRNet Sec. 3; the CAMs of every row below
PAPER = {
    # IRNet (Ahn et al., CVPR 2019), train = VOC 2012 train (1464 images)
    ("cam", "cam", "train", "iou_at_fixed_threshold"):
        Number(48.3, "IRNet Table 2: CAM, at the released cam_eval_thres 0.15", IRNET),
    ("sem_seg", "irnet_rw", "train", "iou"):
        Number(66.5, "IRNet Table 2: Prop. w/ IRNet", {**IRNET, "irn.rw_background": "plane"}),
    ("ins_seg", "irnet", "train", "ap50"):
        Number(37.7, "IRNet Table 1: CAM + displacement field + class boundary", IRNET),
    ("seg", "seg_irnet", "val", "iou"):
        Number(63.5, "IRNet Table 4: DeepLab v2-ResNet50 on IRNet labels, val",
               {**IRNET, "irn.rw_background": "plane", "seg.arch": "deeplab_v2", "seg.backbone": "resnet50"}),
    # DSRG (Huang et al., CVPR 2018), VOC 2012 val; `dsrg_retrain_cambg` (CAM background cues) never matches
    ("seg", "dsrg_retrain", "val", "iou"):
        Number(61.4, "DSRG Table 1: DSRG (Resnet101), val", {"seg.arch": "deeplab_v2", "seg.backbone": "resnet101"}),
}

# metrics.csv values that are not fractions (shown as they are, not as percentages)
NOT_FRACTIONS = {"best_threshold"}


def setting(config: dict, key: str):
    """The value of a dotted key ("irn.rw_background") in a nested configuration, or None."""
    for part in key.split("."):
        if not isinstance(config, dict):
            return None
        config = config.get(part)
    return config


def number(stage: str, method: str, split: str, metric: str, config: dict | None):
    """(percent, source) of the paper's number for this row of a run with configuration `config` (the run's
    resolved config.yaml), or None: unknown, measured with other settings, or no configuration to compare."""
    known = PAPER.get((stage, method, split, metric))
    if known is None or not config or any(setting(config, k) != v for k, v in known.settings.items()):
        return None
    return known.percent, known.source


def notes(config: dict | None) -> dict[str, list[str]]:
    """{stage: [note]}: where the run's methods differ from the papers' (irnet_rw's walked background; what
    DSRG's `_cambg` in a method name means)."""
    out = {}
    if not config:
        return out
    if setting(config, "irn.rw_background") == "walked":
        out["sem_seg"] = ["irnet_rw, rpnet_rw: walked background (irn.rw_background: walked, docs/diagnosis.md), "
                          "not IRNet's constant background score 0.25 after the walk"]
        out["seg"] = ["seg_irnet, seg_rpnet: trained on those walked-background labels"]
    if setting(config, "dsrg.saliency_dir") is None:
        out.setdefault("seg", []).append("*_cambg: DSRG's background cues from the CAMs (no saliency maps; the "
                                         "paper's are DRFI saliency < 0.06)")
    return out
