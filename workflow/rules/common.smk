import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake_interface_executor_plugins.settings import DeploymentMethod

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from wsss import run_config
from wsss.cli import STAGES
from wsss.pipeline import plan, regressions
from wsss.provenance import code_version

RUN = config["run_dir"]
DATA = config["dataset"]["root"]
CLASSES = config["dataset"]["class_names"]
TAGS_FROM = config["dataset"]["tags_from"]
TRAIN = config["dataset"]["train_split"]
EVAL = config["dataset"]["eval_split"]
# Without ImageNet weights (the demo), later networks start from the trained CAM network's backbone.
INIT_FROM_CAM = config["model"]["pretrained"] is None

# Splits (docs/architecture.md "Splits"): networks train on TRAIN (VOC: train_aug), pseudo-labels are
# scored on LABEL (VOC: train, as IRNet), networks on EVAL. The per-image label stages (CAMs, IR labels,
# random-walk labels, DSRG seeds) cover LABELLED, every image trained on or scored: `a+b` is the union of
# the two lists (wsss.datasets.voc.read_ids); the demo's TRAIN == LABEL keeps its single name and paths; a
# folder of your own images: all of them. SCORED: the splits with masks (None: all), the others are not scored.
LABEL = config["dataset"]["label_split"]
LABELLED = plan.labelled_split(config)
SCORED = plan.scored_splits(config)
FOLDER_DATASET = bool(config["dataset"]["images"])  # your own images (rule folder_dataset)
# ImageNet weights (wsss/models/weights.py): `download` is the torch.hub cache file. The segmentation
# networks have their own backbone; without weights they start from the CAM network (same backbone).
CAM_PRETRAINED = plan.cam_pretrained(config)
SEG_FROM_CAM = plan.seg_from_cam(config)
if config["seg"]["pretrained"] is None and not SEG_FROM_CAM:
    raise WorkflowError(
        "seg.pretrained is null, so the segmentation networks start from the CAM network: "
        "seg.backbone must equal model.backbone"
    )
# PSI and CDSP (on model.backbone) start from the CAM network without ImageNet weights and, as the other
# segmentation networks, when seg.pretrained is null (on EfficientNet-Lite, whose ImageNet head convolution
# dies on the demos' images: docs/diagnosis.md "Issue 22").
SCRIBBLE_FROM_CAM = INIT_FROM_CAM or SEG_FROM_CAM

# IRNet's chain from a CAM network to a segmentation network, once per CAM method (rules/chain.smk);
# IRNET is the plain CAM network's, whose CAMs DSRG and CDSP also read.
CHAINS = plan.chains(config)
IRNET = plan.Chain("irnet", RUN)
CAM_MODEL = IRNET.cam_model
# What each method produces for metrics.csv, the report and its target (wsss/pipeline/plan.py Outputs): the
# rule files add their outputs; the default target shows config `methods` (and their ablation rows when
# config `ablations` names them), `snakemake <method>` builds one method.
OUT = plan.Outputs(scored=SCORED)
SHOWN = dict(methods=config["methods"], ablations=plan.ablation_methods(config))
SHARDED = []  # output folders of sharded per-image stages; rule gather_shards merges each
# Prediction settings of every network whose differ from seg's (infer_seg)
INFER_NETS = plan.infer_nets(config)
# The scribble list the converter writes (rule scribble_pngs); the scribble methods wait for it.
SCRIBBLE_LIST = [f"{DATA}/ImageSets/Segmentation/scribble.txt"] if config["dataset"]["scribbles"] else []

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


def _job_threads():
    """Threads of a heavy job: wsss.pipeline.plan.job_threads of --cores, --resources gpu=N, config
    job_threads, and SLURM's cpus_per_task inside a SLURM job."""
    try:
        cores = workflow.cores
    except WorkflowError:  # no --cores: a cluster run
        cores = None
    gpus = workflow.global_resources.get("gpu")
    slurm = os.environ.get("SLURM_CPUS_PER_TASK") if workflow.remote_exec else None
    return plan.job_threads(cores, getattr(gpus, "value", gpus), config["job_threads"], slurm)


JOB_THREADS = _job_threads()


def split_file(split):
    return f"{DATA}/ImageSets/Segmentation/{split}.txt"


def split_files(splits):
    """The list files of `a+b` (a union of splits, as LABELLED)."""
    return [split_file(s) for s in splits.split("+")]


def dataset_root(wildcards, input, output):
    """The data set root (a rule's params.root): the folder above ImageSets/ of the first split file among
    the rule's inputs, else its outputs (inferred from the files, so --lint sees no hard-coded prefix)."""
    for file in [*input, *output]:
        if Path(file).parent.parts[-2:] == ("ImageSets", "Segmentation"):
            return str(Path(file).parents[2])
    raise WorkflowError(f"no split file among the rule's inputs or outputs: {[*input, *output]}")


# Per-image stages (make_cam, ...) run as config `shards` jobs, each writing a shard folder that rule gather_shards
# merges; with one shard the stage writes the folder itself (no gather job).
SHARDS = config["shards"]


def log_file(rule, sharded=False):
    return f"{RUN}/logs/{rule}/{{scatteritem}}.log" if sharded and SHARDS > 1 else f"{RUN}/logs/{rule}.log"


def bench(rule, sharded=False):
    """The rule's benchmark file; the report reads every file under {RUN}/benchmarks/ (shards summed)."""
    return f"{RUN}/benchmarks/{rule}/{{scatteritem}}.tsv" if sharded and SHARDS > 1 else f"{RUN}/benchmarks/{rule}.tsv"


def shard_folder(folder):
    """Output of one shard of a per-image stage whose result is {RUN}/<folder> (`folder` may hold wildcards,
    each matching one path component), or the folder itself with one shard."""
    if SHARDS == 1:
        return directory(f"{RUN}/{folder}")
    SHARDED.append(re.sub(r"\{\w+\}", "[^/]+", folder))
    return directory(f"{RUN}/{folder}.shards/{{scatteritem}}")


def wildcard(name):
    """A param whose value is the job's wildcard `name`."""
    return lambda wildcards: wildcards[name]


def shard():
    """A per-image stage's `shard` param: the job's scatter item i-of-n."""
    return wildcard("scatteritem") if SHARDS > 1 else "1-of-1"


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
# `download` weights and checks every file's sha256, stopping on a problem (the Snakefile's onstart).
for problem in run_config.weight_problems(config):
    logger.warning(f"WARNING (a run stops before any job): {problem}")


# Helpers of the method files (functions live here, not next to the rules they serve, for snakemake --lint).
def retrain_or_seg(key):
    """A train_seg setting: DSRG's released retrain value (dsrg.retrain_<key>) for dsrg_retrain, else seg's."""
    return lambda wc: config["dsrg"][f"retrain_{key}"] if wc.get("seg") == "dsrg_retrain" else config["seg"][key]


def train_seg_input(wildcards):
    """A chain's segmentation network (seg_irnet, seg_rpnet) learns its random-walk labels; dsrg_retrain the
    DSRG model's train predictions."""
    if wildcards.seg == "dsrg_retrain":
        return dict(labels=f"{RUN}/dsrg/pred/{TRAIN}", init=f"{RUN}/dsrg/model.pt")
    cam_chain = plan.chain_of_seg(config, wildcards.seg)
    return dict(labels=cam_chain.sem_seg, **({"init": cam_chain.cam_model} if SEG_FROM_CAM else {}))


def method_name(wildcards):
    """The metrics rows' method: the network, marked `_cambg` for DSRG networks whose seed cues took their
    background from the CAMs because no saliency maps were given (the paper uses DRFI saliency)."""
    cam_bg = wildcards.net in plan.DSRG_NETS and config["dsrg"]["saliency_dir"] is None
    return wildcards.net + ("_cambg" if cam_bg else "")


def init_arg(wildcards, input):
    """`--init FILE` when the network starts from a saved one."""
    return f"--init {shlex.quote(input.init)}" if "init" in input.keys() and input.init else ""


def folder_arguments(wildcards):
    """folder_dataset's optional folders: `--masks DIR --scribbles DIR` where the config names them."""
    given = (("masks", config["dataset"]["masks"]), ("scribbles", config["dataset"]["scribbles_dir"]))
    return " ".join(f"--{name} {shlex.quote(folder)}" for name, folder in given if folder)


def report_scores(wildcards, input, output):
    """The report's `--metrics_csv FILE --sweep FILE --sweep_plot FILE` of the files the rule has."""
    given = dict(metrics_csv=input.metrics_csv, sweep=input.sweep, sweep_plot=output.sweep_plot)
    return " ".join(
        f"--{name} {shlex.quote(str(file))}"
        for name, files in given.items()
        for file in ([files] if isinstance(files, str) else files)
    )


def scribbles_arg(wildcards, input):
    return f"--scribbles {shlex.quote(input.scribbles)}" if input.scribbles else ""


def infer_setting(key, default):
    """An infer_seg param: the network's INFER_NETS entry, else `default`."""
    return lambda wc: INFER_NETS.get(wc.net, {}).get(key, default)


def shown(kind):
    """What metrics.csv and the report show of one kind (wsss.pipeline.plan.Outputs)."""
    return OUT.select(SHOWN["methods"], SHOWN["ablations"], kind)


def segmentation_network(method, net, train_log=True, ablation=False):
    """Registers a network that infer_seg and eval_seg score: its metrics, its loss curve, its overlays."""
    OUT.add(method, "metrics", f"{RUN}/metrics/seg_{net}.csv", split=EVAL, ablation=ablation)
    if train_log:
        OUT.add(method, "train_log", f"{RUN}/{net}/train_log.csv", net, ablation=ablation)
    OUT.add(method, "overlay", f"{RUN}/{net}/pred/{EVAL}", net, EVAL, ablation=ablation)


def scribble_folder(scribbles):
    """[] for the original scribbles (the stage reads the root's), else CDSP's derived set's folder (Fig. 7)."""
    return [] if scribbles == "original" else f"{RUN}/cdsp/scribbles/{scribbles}"


def train_cdsp_input(wildcards):
    losses, source, scribbles = plan.cdsp_nets(config)[wildcards.net]
    maps = f"{RUN}/cdsp/maps/{source}/{scribbles}"
    return dict(
        pseudo=plan.pseudo_folder(config, source, scribbles),
        scribbles=scribble_folder(scribbles),
        dist_scribble=f"{maps}/scribble",
        dist_pseudo=f"{maps}/pseudo",
        init=CAM_MODEL if SCRIBBLE_FROM_CAM else [],
    )


def table2_train_params(wildcards):
    """RPNet Table II's train_cam params: the CAM network of the job's method on the job's share of the images."""
    return shlex.quote(json.dumps(plan.train_cam_values(config, wildcards.method, float(wildcards.fraction))))
