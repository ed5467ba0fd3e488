"""The metrics stage: one long table of every evaluation, {run_dir}/metrics.csv, which the report reads.

A stage scoring below its own input (wsss.pipeline.regressions) is a WARNING line in the log."""
import sys

import pandas as pd

from wsss.io import save_csv
from wsss.metrics import COLUMNS, read
from wsss.params import resolve
from wsss.pipeline import regressions

PARAMS = {}


def run(params: dict, *, inputs: list, out):
    """Concatenates the per-stage metric files into {run_dir}/metrics.csv."""
    resolve(params, PARAMS, "metrics")
    table = pd.concat([read(p) for p in inputs], ignore_index=True)[COLUMNS]
    save_csv(out, table)
    regressions.warn(table, sys.stderr)
