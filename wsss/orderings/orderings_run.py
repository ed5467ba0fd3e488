"""Stage orderings_run: one whole run of the pipeline with the claims' ablation rows (a nested Snakemake in its own
run_dir).

Why a nested Snakemake (and not Snakemake `module` instances or a run wildcard): each run is the ordinary
workflow with its own config, validated and checked as any run is (schema, config_checks, weights), with its
own onstart and report, and the rule files stay as they are (they build their paths from the config's
run_dir; a `module` per run would import every rule file once per run, with their global lists, onstart
and scatter settings, and a wildcard would touch every rule). The nested Snakemake:
- runs with `--nolock`: the outer Snakemake holds the working directory's lock over the same data set
  files (its outputs when it made them), which a nested lock would refuse; the outer's lock still keeps
  other invocations out, and the runs write disjoint run_dirs, one at a time (the outer rule takes every core);
- finds the data set made (the outer run made it once, before any run: it is this rule's input), so the
  data set rule, part of both DAGs, runs once;
- reruns only what is stale in its run: the outer rule is called again when the run's config or any
  code or workflow file changes (params `json`, `code`), and the nested run decides what that touches.
`--rerun-incomplete` resumes a run killed half way. Its log is this stage's log (logs/orderings_run/...)."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from wsss import runtime
from wsss.io import atomic_path, save_csv
from wsss.metrics import COLUMNS, read
from wsss.params import Param, resolve
from wsss.provenance import ROOT

PARAMS = {
    "config": Param(dict, help="the run's whole configuration (wsss.orderings.nested_config)"),
    "targets": Param(list, ["all"], "what the run builds (wsss.orderings.claim_targets)"),
}


def run(params: dict, *, data: list, config_file, metrics):
    """data: the data set's split lists (made before); writes the run's config to `config_file`, runs it,
    and gathers every evaluation of the run ({run_dir}/metrics/*.csv and each CAM method's
    {run_dir}/<method>/metrics/*.csv) into `metrics`."""
    params = resolve(params, PARAMS, "orderings_run")
    config = params["config"]
    with atomic_path(config_file) as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
               "--configfile", str(config_file), "--cores", str(runtime.threads()), "--nolock",
               "--rerun-incomplete", *params["targets"]]
    print("nested run:", " ".join(command), flush=True)
    sys.stderr.flush()
    done = subprocess.run(command, stdout=sys.stdout, stderr=sys.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"the run in {config['run_dir']} failed (exit {done.returncode}); its log is above, "
                           f"its jobs' logs in {config['run_dir']}/logs/")
    save_csv(metrics, gather(config["run_dir"]))


def gather(run_dir) -> pd.DataFrame:
    """Every evaluation of a run: {run_dir}/metrics/*.csv and the CAM methods' chains' (rpnet/metrics/*.csv)."""
    files = sorted(Path(run_dir).glob("**/metrics/*.csv"))
    return pd.concat([read(f) for f in files], ignore_index=True)[COLUMNS].drop_duplicates()
