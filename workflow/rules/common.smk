import json
import re
import shlex
import sys

from wsss.cli import STAGES
from wsss.provenance import code_version

RUN = config["run_dir"]
DATA = config["dataset"]["root"]
CLASSES = config["dataset"]["class_names"]
TAGS_FROM = config["dataset"]["tags_from"]
TRAIN = config["dataset"]["train_split"]
CAM_MODEL = f"{RUN}/cam/model.pt"
# Without ImageNet weights (the demo), later networks start from the trained CAM network's backbone.
INIT_FROM_CAM = config["model"]["pretrained"] is None
EVAL = config["dataset"]["eval_split"]
METRIC_FILES = []  # every evaluation rule adds its metrics CSV; rule `metrics` gathers them
SHARDED = []  # output folders of sharded per-image stages; rule gather_shards merges each
ABLATIONS = []  # outputs of the methods' ablation targets (e.g. cdsp_ablation); rule `ablations` builds them

# Every rule runs `<Python> -m wsss.cli <stage> --params JSON --<path> PATH ...` with Snakemake's own
# Python, so jobs need no activated environment (`make demo` calls .venv/bin/snakemake with .venv/bin not
# on PATH; a SLURM job runs the submitting Python). GPU rules prefix WSSS_GPUS={resources.gpu}: the job
# takes that many free GPUs (wsss/gpu_slots.py).
WSSS = f"{shlex.quote(sys.executable)} -m wsss.cli"
GPU_WSSS = "WSSS_GPUS={resources.gpu} " + WSSS


def split_file(split):
    return f"{DATA}/ImageSets/Segmentation/{split}.txt"


def log_file(rule, sharded=False):
    return f"{RUN}/logs/{rule}" + ("/{scatteritem}.log" if sharded else ".log")


def bench(rule, sharded=False):
    """The rule's benchmark file; the report reads every file under {RUN}/benchmarks/ (shards summed)."""
    return f"{RUN}/benchmarks/{rule}" + ("/{scatteritem}.tsv" if sharded else ".tsv")


def shard_folder(folder):
    """Output folder of one shard of a per-image stage whose gathered result is {RUN}/<folder>
    (`folder` may hold wildcards, each matching one path component)."""
    SHARDED.append(re.sub(r"\{\w+\}", "[^/]+", folder))
    return directory(f"{RUN}/{folder}.shards/{{scatteritem}}")


def wildcard(name):
    """A param whose value is the job's wildcard `name` (e.g. the shard, `{scatteritem}`)."""
    return lambda wildcards: wildcards[name]


def stage_params(stage, /, **values):
    """A rule's params: `code`, the hash of the stage's code and the project code it imports (editing it
    reruns the rule), and `json`, the config values the stage depends on as one shell-quoted JSON object
    for `--params` (a changed value reruns the rule). A value may be a function of the wildcards."""

    def as_json(wildcards):
        resolved = {k: v(wildcards) if callable(v) else v for k, v in values.items()}
        return shlex.quote(json.dumps(resolved))

    return dict(code=code_version(STAGES[stage]), json=as_json)
