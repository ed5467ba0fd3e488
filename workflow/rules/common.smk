import json
import shlex

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


def wsss(stage, params, log, **paths):
    """Runs `wsss <stage>` in its own process (so each job can get its own GPU), logging to `log`.

    `params` (the rule's params) travel as JSON to keep their types; `paths` become --name PATH."""
    args = " ".join(
        f"--{name} " + (" ".join(map(shlex.quote, value)) if isinstance(value, list) else shlex.quote(str(value)))
        for name, value in paths.items()
    )
    shell(f"wsss {stage} --params {shlex.quote(json.dumps(dict(params.items())))} {args} > {log} 2>&1")
