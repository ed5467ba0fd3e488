"""The metrics stage: one long table of every evaluation, {run_dir}/metrics.csv, which the report reads."""
import pandas as pd

from wsss.io import save_csv
from wsss.metrics import COLUMNS, read
from wsss.params import resolve

PARAMS = {}


def run(params: dict, *, inputs: list, out):
    """Concatenates the per-stage metric files into {run_dir}/metrics.csv."""
    resolve(params, PARAMS, "metrics")
    save_csv(out, pd.concat([read(p) for p in inputs], ignore_index=True)[COLUMNS])
