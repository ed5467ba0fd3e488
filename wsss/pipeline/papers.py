"""The papers' numbers on PASCAL VOC 2012, keyed like metrics.csv rows, for the report's "paper" columns.

PAPER[(stage, method, split, metric)] = (percent, source). Sources are the tables of the papers in
../shared/papers/ (README there). Add a method's numbers here when its stages write metrics."""

PAPER = {
    # IRNet (Ahn et al., CVPR 2019), ResNet-50, train = VOC 2012 train (1464 images)
    ("cam", "cam", "train", "iou"): (48.3, "IRNet Table 2: CAM"),
    ("sem_seg", "irnet_rw", "train", "iou"): (66.5, "IRNet Table 2: Prop. w/ IRNet"),
    ("ins_seg", "irnet", "train", "ap50"): (37.7, "IRNet Table 1: CAM + displacement field + class boundary"),
    ("seg", "seg_irnet", "val", "iou"): (63.5, "IRNet Table 4: DeepLab v2-ResNet50 on IRNet labels, val"),
    # DSRG (Huang et al., CVPR 2018), VGG16 DeepLab-ASPP, Table 2 (VOC 2012 val)
    ("seg", "dsrg_nogrowth", "val", "iou"): (53.6, "DSRG Table 2: baseline + balanced seeding loss"),
    ("seg", "dsrg", "val", "iou"): (57.6, "DSRG Table 2: + DSRG"),
    ("seg", "dsrg_retrain", "val", "iou"): (59.0, "DSRG Table 2: + Retrain"),
}

# metrics.csv values that are not fractions (shown as they are, not as percentages)
NOT_FRACTIONS = {"best_threshold"}


def number(stage: str, method: str, split: str, metric: str):
    """(percent, source) of the paper's number for this row, or None."""
    return PAPER.get((stage, method, split, metric))
