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


def code(stage):
    """Hash of the stage's code and the project code it imports: editing it reruns the stage."""
    return code_version(STAGES[stage])


def wsss(stage, params, log, resources, **paths):
    """Runs `wsss <stage>` in its own process, pinned to its own GPUs, logging to `log`. The command is
    Snakemake's own Python with `-m wsss.cli`, so jobs need no activated environment (`make demo` calls
    .venv/bin/snakemake with .venv/bin not on PATH; a SLURM job runs the submitting Python).

    `params` (the rule's params, less `code`) travel as JSON to keep their types; `paths` become
    --name PATH; the rule's `gpu` resource becomes WSSS_GPUS (see wsss/gpu_slots.py)."""
    values = {k: v for k, v in params.items() if k != "code"}
    args = " ".join(
        f"--{name} " + (" ".join(map(shlex.quote, value)) if isinstance(value, list) else shlex.quote(str(value)))
        for name, value in paths.items()
    )
    python = shlex.quote(sys.executable)
    command = f"WSSS_GPUS={resources.get('gpu', 0)} {python} -m wsss.cli {stage} --params {shlex.quote(json.dumps(values))} {args}"
    shell(command.replace("{", "{{").replace("}", "}}") + " > {log} 2>&1")  # shell() formats its string again
