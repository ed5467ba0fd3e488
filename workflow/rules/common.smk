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
REPORT_TABLES = []  # (caption, CSV file), e.g. an ablation's table when config `ablations` is true
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


# Threads of a heavy job (torch intra-op threads: Snakemake sets OMP_NUM_THREADS to it): half the cores, at
# most 8, so that two jobs of the DAG's parallel branches share a machine: on the demo's 2 cores two 1-thread
# jobs keep both busy, where one 2-thread job left them 40 % idle (single-threaded data loading, CRF, Python).
def _job_threads():
    try:
        return max(1, min(8, workflow.cores // 2))
    except WorkflowError:  # no --cores: a cluster run, where each job gets its node's cores (the profile's)
        return 8


JOB_THREADS = _job_threads()
# The scribble methods (PSI, CDSP) join the default target when the data set has scribbles: the built-in sets write
# them; a real one says so with dataset.scribbles (ScribbleSup's XML converted, or PNGs already there).
SCRIBBLES = bool(config["dataset"]["demo"]) or config["dataset"]["scribbles"]


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
# `download` weights and checks every file's sha256, stopping on a problem (the Snakefile's onstart).
for problem in run_config.weight_problems(config):
    logger.warning(f"WARNING (a run stops before any job): {problem}")


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
    return lambda wc: config["dsrg"][f"retrain_{key}"] if wc.get("seg") == "dsrg_retrain" else config["seg"][key]


def method_name(wildcards):
    """The metrics rows' method: the network, marked `_cambg` for DSRG networks whose seed cues took their
    background from the CAMs because no saliency maps were given (the paper uses DRFI saliency)."""
    cam_bg = wildcards.net in DSRG_NETS and config["dsrg"]["saliency_dir"] is None
    return wildcards.net + ("_cambg" if cam_bg else "")


def init_arg(wildcards, input):
    """`--init FILE` when the network starts from a saved one."""
    return f"--init {shlex.quote(input.init)}" if "init" in input.keys() and input.init else ""


# Helpers of rules/cam.smk (here for snakemake --lint: no functions beside rules).
def train_cam_values(method, train_fraction=None):
    """train_cam's params for the CAM network `method`: irnet with cam's schedule; rpnet with cam.rpnet's
    schedule and keys (rules/rpnet.smk). Trained on dataset.train_fraction unless given (RPNet Table II)."""
    c = config["cam"]["rpnet"] if method == "rpnet" else config["cam"]
    values = dict(
        class_names=CLASSES,
        tags_from=TAGS_FROM,
        seed=config["seed"],
        device=config["device"],
        split=TRAIN,
        backbone=config["model"]["backbone"],
        pretrained=CAM_PRETRAINED,
        train_fraction=config["dataset"]["train_fraction"] if train_fraction is None else train_fraction,
        checkpoint_every=config["train"]["checkpoint_every"],
        amp=config["train"]["amp"],
        **{k: c[k] for k in ("crop", "resize_long", "batch_size", "epochs", "lr", "weight_decay")},
    )
    if method == "rpnet":
        values.update(method="rpnet", neck_channels=c["neck_channels"], **{k: c[k] for k in RPNET_KEYS})
    return values



# Helpers of rules/seg.smk (here for snakemake --lint: no functions beside rules).
def infer_setting(key, default):
    """An infer_seg param: the network's INFER_NETS entry, else `default`."""
    return lambda wc: INFER_NETS.get(wc.get("net"), {}).get(key, default)  # rpnet_infer_seg has no {net}



# Helpers of rules/psi.smk (here for snakemake --lint: no functions beside rules).
def psi_values(wildcards):
    """train_psi's params for one row: the CPP keys only with CPP, the SLD keys only with SLD (so an SLD
    key reruns the networks that diffuse, and only those). Every row trains on Eq. 11's L_seg with the same
    lambda_1: Table 3's rows differ only in their ticks (CPP, SLD), so each adds exactly its component."""
    cpp, sld = PSI_NETS[wildcards.psi]
    values = dict(
        class_names=CLASSES,
        seed=config["seed"],
        device=config["device"],
        split=TRAIN,
        backbone=config["model"]["backbone"],
        pretrained=config["model"]["pretrained"],
        **{k: PSI[k] for k in ("crop", "scale", "rotation", "batch_size", "epochs", "lr", "momentum")},
        **{k: PSI[k] for k in ("weight_decay", "head_lr_mult", "head_channels", "lambda_1")},
        cpp=cpp,
        sld=sld,
    )
    if cpp:
        values.update({k: PSI[k] for k in ("cpp_width", "cpp_radii", "cpp_destination", "cpp_bn")})
    if sld:
        values.update({k: PSI[k] for k in ("steps", "k", "lambda_2", "sld_radius", "sld_hidden", "sld_lr", "sld_epochs")})
    return values


def psi_metrics(nets):
    return expand(f"{RUN}/metrics/seg_{{net}}.csv", net=nets)



# Helpers of rules/cdsp.smk (here for snakemake --lint: no functions beside rules).
def cdsp_nets():
    """net name -> (losses, pseudo-label source, scribble set) of every CDSP network the workflow can train."""
    full, source = CDSP["losses"], CDSP["pseudo_labels"]
    nets = {"cdsp": (full, source, "original")}
    table2 = {"segs": ["segs"], "segc": ["segc"], "seg": ["segs", "segc"], "seg_dc": ["segs", "segc", "dc"],
              "seg_lorm": ["segs", "segc", "lorm"], "seg_ds": ["segs", "segc", "ds"]}
    nets.update({f"cdsp_{name}": (losses, source, "original") for name, losses in table2.items()})
    nets.update({f"cdsp_pl_{s}": (full, s, "original") for s in CDSP["table3_pseudo_labels"] if s != source})
    for tag in robustness_sets():
        nets[f"cdsp_{tag}"] = (full, source, tag)
        nets[f"cdsp_segs_{tag}"] = (["segs"], source, tag)  # the scribble-only baseline
    return nets


def robustness_sets():
    """Fig. 7's derived scribble sets (cdsp_scribbles), e.g. drop50: each mode at each ratio above 0."""
    return [f"{mode}{round(ratio * 100)}" for mode in ("drop", "shrink") for ratio in CDSP["robustness_ratios"]
            if ratio > 0]


def pseudo_folder(source, scribbles="original"):
    """The pseudo-label folder of a source: cam (cdsp_pseudo_labels, of the classes drawn in the scribble set
    `scribbles`: CDSP Eq. 4), irnet_rw (IRNet's random walk), or a name in cdsp.pseudo_folders (a folder of
    <id>.png the user brings, e.g. BMP / SEAM / AFA labels); the last two are the same for every scribble set."""
    if source == "cam":
        return f"{RUN}/cdsp/pseudo_labels" + ("" if scribbles == "original" else f"_{scribbles}")
    if source == "irnet_rw":
        return f"{RUN}/irn/sem_seg"
    if source in CDSP["pseudo_folders"]:
        return CDSP["pseudo_folders"][source]
    raise ValueError(f"cdsp: pseudo-label source {source!r} is not cam, irnet_rw or a key of cdsp.pseudo_folders")


def scribble_folder(scribbles):
    """[] for the original scribbles (the stage reads the root's), else the derived set's folder."""
    return [] if scribbles == "original" else f"{RUN}/cdsp/scribbles/{scribbles}"


def scribbles_arg(wildcards, input):
    return f"--scribbles {shlex.quote(input.scribbles)}" if input.scribbles else ""


def train_cdsp_input(wildcards):
    losses, source, scribbles = CDSP_NETS[wildcards.net]
    maps = f"{RUN}/cdsp/maps/{source}/{scribbles}"
    return dict(pseudo=pseudo_folder(source, scribbles), scribbles=scribble_folder(scribbles),
                dist_scribble=f"{maps}/scribble", dist_pseudo=f"{maps}/pseudo", init=CAM_MODEL if INIT_FROM_CAM else [])



# Helpers of rules/rpnet.smk (here for snakemake --lint: no functions beside rules).
def table2_train_params(wildcards):
    return shlex.quote(json.dumps(train_cam_values(wildcards.method, float(wildcards.fraction))))

