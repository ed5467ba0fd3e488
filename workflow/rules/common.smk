import json
import re
import shlex
import sys
from pathlib import Path

from snakemake_interface_executor_plugins.settings import DeploymentMethod

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from wsss import run_config
from wsss.cli import STAGES
from wsss.models import weights
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

# Splits (docs/architecture.md "Splits"): networks train on TRAIN (VOC: train_aug), pseudo-labels are
# scored on LABEL (VOC: train, as IRNet), networks on EVAL. The per-image label stages (CAMs, IR labels,
# random-walk labels, DSRG seeds) cover LABELLED, every image trained on or scored: `a+b` is the union of
# the two lists (wsss.datasets.voc.read_ids); the demo's TRAIN == LABEL keeps its single name and paths.
LABEL = config["dataset"]["label_split"]
LABELLED = TRAIN if LABEL == TRAIN else f"{TRAIN}+{LABEL}"
# ImageNet weights (wsss/models/weights.py): `download` is the torch.hub cache file. The segmentation
# networks have their own backbone; without weights they start from the CAM network (same backbone).
CAM_PRETRAINED = weights.resolve(config["model"]["backbone"], config["model"]["pretrained"])
SEG_PRETRAINED = weights.resolve(config["seg"]["backbone"], config["seg"]["pretrained"])
SEG_FROM_CAM = config["seg"]["pretrained"] is None
if SEG_FROM_CAM and config["seg"]["backbone"] != config["model"]["backbone"]:
    raise WorkflowError("seg.pretrained is null, so the segmentation networks start from the CAM network: "
                        "seg.backbone must equal model.backbone")
METRIC_FILES = []  # every evaluation rule adds its metrics CSV; rule `metrics` gathers them
SHARDED = []  # output folders of sharded per-image stages; rule gather_shards merges each
# What the report page shows besides the metrics (wsss/pipeline/report.py), added by each method file.
REPORT_FIGURES = []  # (caption, PNG file)
TRAIN_LOGS = []  # (network, train_log.csv): loss curves
OVERLAY_COLUMNS = []  # (column name, split, folder of <id>.png label maps or <id>.npz CAMs / instances)
ABLATIONS = []  # outputs of the methods' ablation targets (e.g. cdsp_ablation); rule `ablations` builds them

# Every rule runs `<Python> -m wsss.cli <stage> --params JSON --<path> PATH ...` with Snakemake's own
# Python, so jobs need no activated environment (`make demo` calls .venv/bin/snakemake with .venv/bin not
# on PATH; a SLURM job runs the submitting Python); with --sdm conda, the `python` of the rule's
# environment. GPU rules prefix WSSS_GPUS={resources.gpu}: the job takes that many free GPUs
# (wsss/gpu_slots.py).
CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
WSSS = "python -m wsss.cli" if CONDA else f"{shlex.quote(sys.executable)} -m wsss.cli"


def wsss(stage, paths, gpu=False):
    """A rule's shell command: `stage` with the rule's params.json and the named `paths` ("--name {input.x:q}
    ..."), stdout and stderr to the rule's log (the CLI begins it with a header: command, params, versions)."""
    prefix = "WSSS_GPUS={resources.gpu} " if gpu else ""
    return f"{prefix}{WSSS} {stage} --params {{params.json}} {paths} > {{log:q}} 2>&1"


# The software of every job (`conda:`); `snakemake --sdm conda` builds it (environment.yml: GPU machines).
ENV = "../../environment.yml"


def split_file(split):
    return f"{DATA}/ImageSets/Segmentation/{split}.txt"


def split_files(splits):
    """The list files of `a+b` (a union of splits, as LABELLED)."""
    return [split_file(s) for s in splits.split("+")]


def dataset_root(wildcards, input, output):
    """The data set root (a rule's params.root): the folder above ImageSets/ of the rule's split file."""
    split = input.split if "split" in input.keys() else output.train
    return str(Path(split if isinstance(split, str) else split[0]).parents[2])


def log_file(rule, sharded=False):
    return f"{RUN}/logs/{rule}/{{scatteritem}}.log" if sharded else f"{RUN}/logs/{rule}.log"


def bench(rule, sharded=False):
    """The rule's benchmark file; the report reads every file under {RUN}/benchmarks/ (shards summed)."""
    return f"{RUN}/benchmarks/{rule}/{{scatteritem}}.tsv" if sharded else f"{RUN}/benchmarks/{rule}.tsv"


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


# Weights and the run's record (wsss/run_config.py). A dry run only warns; a real run, once the DAG is
# built and before any job, keeps the resolved configuration as {run_dir}/config.yaml, then fetches
# `download` weights and checks every file's sha256, stopping on a problem.
for problem in run_config.weight_problems(config):
    logger.warning(f"WARNING (a run stops before any job): {problem}")


onstart:
    run_config.write(config, f"{RUN}/config.yaml")
    try:
        run_config.prepare_weights(config)
    except ValueError as e:
        raise WorkflowError(str(e)) from e


# Helpers of the method files (functions live here, not next to the rules they serve: snakemake --lint).
def walk_params():
    """The random walk's settings (Eq. 12-13), shared by the semantic and the instance labels."""
    return dict(radius=IRN["rw_radius"], beta=IRN["beta"], steps=IRN["steps"], bg_thres=IRN["sem_bg_thres"],
                input_scale=IRN["input_scale"])


def seg_params():
    """What every segmentation network's architecture and training depends on."""
    c = config["seg"]
    return dict(
        class_names=CLASSES,
        seed=config["seed"],
        device=config["device"],
        split=TRAIN,
        arch=c["arch"],
        backbone=config["seg"]["backbone"],
        pretrained=SEG_PRETRAINED,
        crop=c["crop"],
        batch_size=c["batch_size"],
        momentum=c["momentum"],
        weight_decay=c["weight_decay"],
        head_lr_mult=c["head_lr_mult"],
        checkpoint_every=c["checkpoint_every"],
        amp=config["train"]["amp"],
    )


def train_seg_input(wildcards):
    """seg_irnet learns IRNet's random-walk labels; dsrg_retrain the DSRG model's train predictions."""
    if wildcards.seg == "dsrg_retrain":
        return dict(labels=f"{RUN}/dsrg/pred/{TRAIN}", init=f"{RUN}/dsrg/model.pt")
    return dict(labels=f"{RUN}/irn/sem_seg", **({"init": CAM_MODEL} if SEG_FROM_CAM else {}))


DSRG_NETS = ("dsrg", "dsrg_nogrowth", "dsrg_retrain")


def retrain_or_seg(key):
    """A train_seg setting: DSRG's released retrain value (dsrg.retrain_<key>) for dsrg_retrain, else seg's."""
    return lambda wc: config["dsrg"][f"retrain_{key}"] if wc.seg == "dsrg_retrain" else config["seg"][key]


def method_name(wildcards):
    """The metrics rows' method: the network, marked `_cambg` for DSRG networks whose seed cues took their
    background from the CAMs because no saliency maps were given (the paper uses DRFI saliency)."""
    cam_bg = wildcards.net in DSRG_NETS and config["dsrg"]["saliency_dir"] is None
    return wildcards.net + ("_cambg" if cam_bg else "")


def init_arg(wildcards, input):
    """`--init FILE` when the network starts from a saved one."""
    return f"--init {shlex.quote(input.init)}" if "init" in input.keys() and input.init else ""
