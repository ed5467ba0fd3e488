"""Regression flags: a stage that scores below its own input, found in the long metrics table.

The papers' orderings (the random walk refines the CAMs, RPNet's CAMs beat the plain CAM network's,
DSRG's growth adds to its seeds, the retrain improves on its teacher) hold on the demo; on other data a stage can make the labels worse (issue 13).
`regressions(table)` compares each stage's mIoU with its input's on the same split (only splits with
masks have scores, so only those are compared); the `metrics` stage warns in its log and the report
shows the rows in red (wsss.pipeline.report.regression_flags).
"""
from pathlib import Path

import pandas as pd

from wsss import metrics

# (what, (stage, method) of the result, (stage, method) of its input): compared on their common splits.
PAIRS = [
    ("random walk below CAM", ("sem_seg", "irnet_rw"), ("cam", "cam")),
    ("random walk below CAM", ("sem_seg", "rpnet_rw"), ("cam", "rpnet")),
    # RPNet's region branch exists to improve the CAMs it is trained with (RPNet Table I)
    ("RPNet CAM below the baseline CAM", ("cam", "rpnet"), ("cam", "cam")),
    ("DSRG growth below no growth", ("seg", "dsrg"), ("seg", "dsrg_nogrowth")),
    ("retrain below its teacher", ("seg", "dsrg_retrain"), ("seg", "dsrg")),
]


def regressions(table: pd.DataFrame, metric: str = "iou") -> list[dict]:
    """[{what, split, stage, method, value, input_stage, input_method, input_value}]: every pair of PAIRS
    where the result's mean `metric` (class empty) is below its input's on the same split."""
    means = table[(table["class"].fillna("") == "") & (table["metric"] == metric)]
    # DSRG's networks are named `<net>_cambg` when their background cues came from the CAMs (no saliency)
    value = {(r.stage, r.method.removesuffix("_cambg"), r.split): float(r.value) for r in means.itertuples()}
    found = []
    for what, (stage, method), (in_stage, in_method) in PAIRS:
        for (s, m, split), v in value.items():
            before = value.get((in_stage, in_method, split))
            if (s, m) == (stage, method) and before is not None and v < before:
                found.append(dict(what=what, split=split, stage=stage, method=method, value=v,
                                  input_stage=in_stage, input_method=in_method, input_value=before))
    return found


def describe(found: dict) -> str:
    """One line: 'random walk below CAM on train: sem_seg/irnet_rw mIoU 23.9 < cam/cam 39.2'."""
    return (f"{found['what']} on {found['split']}: {found['stage']}/{found['method']} mIoU "
            f"{100 * found['value']:.1f} < {found['input_stage']}/{found['input_method']} "
            f"{100 * found['input_value']:.1f}")


def warn(table: pd.DataFrame, stream) -> None:
    """One 'WARNING: ...' line per regression on `stream` (the metrics stage's log)."""
    for found in regressions(table):
        print(f"WARNING: {describe(found)}", file=stream)


def print_flags(metrics_csv, emit=print) -> None:
    """One 'WARNING: ...' line per regression of a run's metrics.csv through `emit` (the Snakefile's onsuccess:
    the console at the end of a run); nothing when the file is absent."""
    if Path(metrics_csv).is_file():
        for found in regressions(metrics.read(metrics_csv)):
            emit(f"WARNING: {describe(found)}")
