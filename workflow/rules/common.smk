import json
import shlex

from wsss.cli import STAGES
from wsss.provenance import code_version

RUN = config["run_dir"]
DATA = config["dataset"]["root"]
CLASSES = config["dataset"]["class_names"]
TAGS_FROM = config["dataset"]["tags_from"]
TRAIN = config["dataset"]["train_split"]
EVAL = config["dataset"]["eval_split"]
METRIC_FILES = []  # every evaluation rule adds its metrics CSV; rule `metrics` gathers them
# rules whose benchmark TSV the report shows as run times
BENCHMARKED = ["train_cam", "make_cam", "eval_cam"]


def split_file(split):
    return f"{DATA}/ImageSets/Segmentation/{split}.txt"


def code(stage):
    """Hash of the stage's code and the project code it imports: editing it reruns the stage."""
    return code_version(STAGES[stage])


def wsss(stage, params, log, resources, **paths):
    """Runs `wsss <stage>` in its own process, pinned to its own GPUs, logging to `log`.

    `params` (the rule's params, less `code`) travel as JSON to keep their types; `paths` become
    --name PATH; the rule's `gpu` resource becomes WSSS_GPUS (see wsss/gpu_slots.py)."""
    values = {k: v for k, v in params.items() if k != "code"}
    args = " ".join(
        f"--{name} " + (" ".join(map(shlex.quote, value)) if isinstance(value, list) else shlex.quote(str(value)))
        for name, value in paths.items()
    )
    gpus = resources.get("gpu", 0)
    shell(f"WSSS_GPUS={gpus} wsss {stage} --params {shlex.quote(json.dumps(values))} {args} > {log} 2>&1")
