"""What the workflow builds, as plain functions of the config: the rule files (workflow/rules/*.smk) call them,
and tests/test_plan.py tests them without Snakemake. Nothing here reads a global of the Snakefile.

- Methods: `config["methods"]` lists what the default target builds; every method is also a target of its own
  (`snakemake irnet`, `rpnet`, `dsrg`, `psi`, `cdsp`), and its ablation rows one more (`<method>_ablation`).
  `Outputs` is the register through which each rule file says what a method produces.
- Chains: each CAM method of `config["cam"]["methods"]` is a `Chain`, IRNet's chain from a CAM network to a
  segmentation network, made from one set of rules (workflow/rules/chain.smk).
- Settings the rules pass on: the CAM network's (`train_cam_values`), the random walk's, the segmentation
  networks', PSI's and CDSP's rows, every network's prediction settings (`infer_nets`).
- Threads of a job (`job_threads`), and `--config` values nested in a group (`parse_overrides`)."""
from dataclasses import dataclass, field

import yaml

from wsss.datasets import folder_dataset
from wsss.models import weights

# metrics.csv and the report list the methods in this order (RPNet, a second CAM network through IRNet's chain,
# last, beside RPNet's Table I)
METHODS = ("irnet", "dsrg", "psi", "cdsp", "rpnet")
SCRIBBLE_METHODS = ("psi", "cdsp")  # trained on scribbles: the data set must have them
# train_cam's schedule keys; a CAM method's section (cam.<method>) holds these and its network's own keys
CAM_SCHEDULE = ("crop", "resize_long", "batch_size", "epochs", "lr", "weight_decay")


def check(config: dict):
    """ValueError naming the key when the methods contradict the data set or the CAM methods."""
    unknown = [m for m in config["methods"] if m not in METHODS]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; choose from {list(METHODS)}")
    cam_like = [m for m in config["methods"] if m in ("irnet", "rpnet") and m not in config["cam"]["methods"]]
    if cam_like:
        raise ValueError(f"methods: {cam_like} must also be in cam.methods {config['cam']['methods']}")
    if not has_scribbles(config):
        wanted = [m for m in config["methods"] if m in SCRIBBLE_METHODS]
        if wanted:
            raise ValueError(f"methods: {wanted} learn from scribbles, but the data set has none: set "
                             "dataset.scribbles: true (ScribbleSup's XML under the root) or leave them out")


def has_scribbles(config: dict) -> bool:
    """The built-in data sets write scribbles; a real one says so with dataset.scribbles, a folder of your own
    images with dataset.scribbles_dir."""
    d = config["dataset"]
    return bool(d["demo"]) or bool(d["scribbles"]) or bool(d.get("scribbles_dir"))


# ---- which images are labelled and which are scored -----------------------------------------------------------

def labelled_split(config: dict) -> str:
    """The images every per-image label stage covers (CAMs, IR labels, random-walk labels, DSRG seeds): those
    trained on and those scored (`a+b`: the union, wsss.datasets.voc.read_ids), for a folder of your own images
    all of them (its list `all`)."""
    d = config["dataset"]
    if d.get("images"):
        return "all"
    return d["train_split"] if d["label_split"] == d["train_split"] else f"{d['train_split']}+{d['label_split']}"


def scored_splits(config: dict) -> set | None:
    """The splits that have masks, so are scored: None for every split (a VOC-layout root, whose label and
    evaluation splits must have them); for a folder of your own images the lists of its images with masks."""
    d = config["dataset"]
    if not d.get("images"):
        return None
    return {s for s in (d["label_split"], d["eval_split"]) if s in folder_dataset.SCORED_LISTS}


# Each method's pseudo-labels of every image (export_labels) and the network `wsss predict` takes (README)
SEGMENTERS = {"irnet": "seg_irnet", "rpnet": "seg_rpnet", "dsrg": "dsrg_retrain", "psi": "psi", "cdsp": "cdsp"}


def pseudo_labels(config: dict, method: str) -> str:
    """The folder of a method's pseudo-labels of the labelled images: IRNet's and RPNet's random-walk labels,
    DSRG's network's predictions (what its retrain learns), PSI's and CDSP's networks' predictions."""
    if method in ("irnet", "rpnet"):
        return Chain(method, config["run_dir"]).sem_seg
    return f"{config['run_dir']}/{method}/pred/{labelled_split(config)}"


def ablation_methods(config: dict) -> list[str]:
    """The methods whose ablation rows the default target also builds and reports: config `ablations` is
    true (every listed method's), false (none), or a list of methods."""
    chosen = config["ablations"]
    if chosen is True:
        return list(config["methods"])
    return [m for m in (chosen or []) if m in config["methods"]]


# ---- what each method produces -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Output:
    method: str | None  # None: the run's own (Outputs.add)
    kind: str  # metrics | figure | table | train_log | overlay | export (files for the user: labels, networks)
    file: str
    label: str = ""  # a figure's or table's caption, a loss curve's or overlay column's name
    split: str = ""  # an overlay column's split
    ablation: bool = False


@dataclass
class Outputs:
    """The register of what each method's rules produce for metrics.csv and the report (rule files call
    `add`); `select` gives what a target builds: the methods' own outputs, plus the ablation rows of
    `ablations` (a list of methods), in the order they were added. `scored`: the splits that have masks
    (`scored_splits`; None: all); a score of another split is not registered, so neither built nor shown."""
    entries: list = field(default_factory=list)
    scored: set | None = None

    def add(self, method: str, kind: str, file: str, label: str = "", split: str = "", ablation: bool = False,
            against_masks: bool = False):
        """`split`: the split a metrics file scores or an overlay column shows; `against_masks`: a figure or table
        that compares with the masks of `split` (metrics always do); `method` None: the run's own, always shown
        (the orderings table)."""
        if method is not None and method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        if (kind == "metrics" or against_masks) and self.scored is not None and split not in self.scored:
            return
        self.entries.append(Output(method, kind, str(file), label, split, ablation))

    def select(self, methods, ablations=(), kind: str | None = None) -> list[Output]:
        chosen = [e for e in self.entries if (kind is None or e.kind == kind) and
                  (e.method is None or (e.method in ablations if e.ablation else e.method in methods))]
        return sorted(chosen, key=lambda e: METHODS.index(e.method) if e.method else len(METHODS))

    def files(self, methods, ablations=(), kind: str | None = None) -> list[str]:
        return list(dict.fromkeys(e.file for e in self.select(methods, ablations, kind)))


# ---- IRNet's chain, once per CAM method --------------------------------------------------------------------

@dataclass(frozen=True)
class Chain:
    """IRNet's chain from the CAM network of `method` to a segmentation network: train_cam, make_cam, eval_cam,
    cam_to_ir_label, train_irn, make_sem_seg_labels, eval_sem_seg, then train_seg / infer_seg / eval_seg of
    the network `seg_net`. irnet is IRNet's plain CAM network: its files are in the run folder and its rules
    are named as the stages. Any other CAM method (rpnet) has its CAM network's settings in cam.<method>, its
    files in <run>/<method>/ and its rules prefixed `<method>_`; its segmentation network is <run>/seg_<method>."""
    method: str
    run: str

    @property
    def base(self) -> bool:
        return self.method == "irnet"

    @property
    def sub(self) -> str:
        """The chain's folder under the run folder ("" or "rpnet/")."""
        return "" if self.base else f"{self.method}/"

    @property
    def dir(self) -> str:
        return f"{self.run}/{self.sub}".rstrip("/")

    def rule(self, stage: str) -> str:
        return stage if self.base else f"{self.method}_{stage}"

    @property
    def cam_model(self) -> str:
        return f"{self.dir}/cam/model.pt"

    @property
    def cams(self) -> str:
        return f"{self.dir}/cam/maps"

    @property
    def irn_model(self) -> str:
        return f"{self.dir}/irn/model.pt"

    @property
    def sem_seg(self) -> str:
        return f"{self.dir}/irn/sem_seg"

    # the rows of metrics.csv: cam / irnet_crf / irnet_rw / seg_irnet for IRNet, rpnet / rpnet_rw / seg_rpnet ...
    @property
    def cam_row(self) -> str:
        return "cam" if self.base else self.method

    def labels_row(self, labels: str) -> str:
        return f"{self.method}_{'rw' if labels == 'sem_seg' else 'crf'}"

    def labels_method(self, wildcards) -> str:
        """eval_sem_seg's rows' method for the job's label set (wildcard `labels`: ir_label or sem_seg)."""
        return self.labels_row(wildcards.labels)

    @property
    def seg_net(self) -> str:
        return f"seg_{self.method}"

    @property
    def scored_labels(self) -> tuple:
        """The label sets whose mIoU goes into metrics.csv: IRNet's IR labels too (IRNet Sec. 4.2)."""
        return ("ir_label", "sem_seg") if self.base else ("sem_seg",)


def chains(config: dict) -> list[Chain]:
    return [Chain(m, config["run_dir"]) for m in config["cam"]["methods"]]


def chain_of_seg(config: dict, seg_net: str) -> Chain | None:
    return next((c for c in chains(config) if c.seg_net == seg_net), None)


# ---- settings the rules pass on ----------------------------------------------------------------------------

def seg_from_cam(config: dict) -> bool:
    """Whether the segmentation networks start from the trained CAM network (seg.pretrained null on
    model.backbone) rather than from ImageNet weights of their own."""
    return config["seg"]["pretrained"] is None and config["seg"]["backbone"] == config["model"]["backbone"]


def cam_pretrained(config: dict):
    return weights.resolve(config["model"]["backbone"], config["model"]["pretrained"])


def train_cam_values(config: dict, method: str, train_fraction=None) -> dict:
    """train_cam's params for the CAM network of `method`: irnet with cam's schedule; another CAM method with
    cam.<method>'s schedule and its network's keys (the section's other keys, sorted). Trained on
    dataset.train_fraction unless given (RPNet Table II)."""
    c = config["cam"] if method == "irnet" else config["cam"][method]
    values = dict(
        class_names=config["dataset"]["class_names"],
        tags_from=config["dataset"]["tags_from"],
        seed=config["seed"],
        device=config["device"],
        split=config["dataset"]["train_split"],
        backbone=config["model"]["backbone"],
        pretrained=cam_pretrained(config),
        train_fraction=config["dataset"]["train_fraction"] if train_fraction is None else train_fraction,
        checkpoint_every=config["train"]["checkpoint_every"],
        amp=config["train"]["amp"],
        **{k: c[k] for k in CAM_SCHEDULE},
    )
    if method != "irnet":
        values.update(method=method, **{k: c[k] for k in sorted(c) if k not in CAM_SCHEDULE})
    return values


def walk_params(config: dict) -> dict:
    """The random walk's settings (IRNet Eq. 12-13), shared by the semantic and the instance labels."""
    irn = config["irn"]
    return dict(radius=irn["rw_radius"], beta=irn["beta"], steps=irn["steps"], bg_thres=irn["sem_bg_thres"],
                input_scale=irn["input_scale"])


def seg_params(config: dict) -> dict:
    """What every segmentation network's architecture and training depends on."""
    c = config["seg"]
    return dict(
        class_names=config["dataset"]["class_names"],
        seed=config["seed"],
        device=config["device"],
        split=config["dataset"]["train_split"],
        arch=c["arch"],
        output_stride=c["output_stride"],
        backbone=c["backbone"],
        pretrained=weights.resolve(c["backbone"], c["pretrained"]),
        crop=c["crop"],
        batch_size=c["batch_size"],
        momentum=c["momentum"],
        weight_decay=c["weight_decay"],
        head_lr_mult=c["head_lr_mult"],
        checkpoint_every=c["checkpoint_every"],
        amp=config["train"]["amp"],
        bn_images=config["train"]["bn_images"],
    )


def precise_bn_values(config: dict, infer_scales) -> dict:
    """Precise BN's params for a DeepLab-v3+ trainer (PSI, CDSP): its image pooling's statistics over the scales
    it is inferred at (wsss.training.precise_bn); without precise BN, nothing to rerun for."""
    bn_images = config["train"]["bn_images"]
    return dict(bn_images=bn_images, **({"bn_scales": infer_scales} if bn_images else {}))


DSRG_NETS = ("dsrg", "dsrg_nogrowth", "dsrg_retrain")
# PSI Table 3's rows: net -> (CPP, SLD); psi is the method, the others its ablation
PSI_NETS = {"psi": (True, True), "psi_baseline": (False, False), "psi_cpp": (True, False), "psi_sld": (False, True)}
PSI_ABLATION = ("psi_baseline", "psi_cpp", "psi_sld")
PSI_CPP_KEYS = ("cpp_width", "cpp_radii", "cpp_destination", "cpp_bn")
PSI_SLD_KEYS = ("steps", "k", "lambda_2", "sld_radius", "sld_hidden", "sld_lr", "sld_epochs")


def psi_values(config: dict, net: str) -> dict:
    """train_psi's params for one row of PSI_NETS: the CPP keys only with CPP, the SLD keys only with SLD (so an
    SLD key reruns the networks that diffuse, and only those). Every row trains on Eq. 11's L_seg with the same
    lambda_1: Table 3's rows differ only in their ticks (CPP, SLD), so each adds exactly its component."""
    psi = config["psi"]
    cpp, sld = PSI_NETS[net]
    values = dict(
        class_names=config["dataset"]["class_names"],
        seed=config["seed"],
        device=config["device"],
        split=config["dataset"]["train_split"],
        backbone=config["model"]["backbone"],
        pretrained=config["model"]["pretrained"],
        **{k: psi[k] for k in ("crop", "scale", "rotation", "batch_size", "epochs", "lr", "momentum")},
        **{k: psi[k] for k in ("weight_decay", "head_lr_mult", "head_channels", "lambda_1")},
        **precise_bn_values(config, psi["infer_scales"]),
        cpp=cpp,
        sld=sld,
    )
    if cpp:
        values.update({k: psi[k] for k in PSI_CPP_KEYS})
    if sld:
        values.update({k: psi[k] for k in PSI_SLD_KEYS})
    return values


CDSP_TABLE2 = {"segs": ["segs"], "segc": ["segc"], "seg": ["segs", "segc"], "seg_dc": ["segs", "segc", "dc"],
               "seg_lorm": ["segs", "segc", "lorm"], "seg_ds": ["segs", "segc", "ds"]}


def robustness_sets(config: dict) -> list[str]:
    """CDSP Fig. 7's derived scribble sets (cdsp_scribbles), e.g. drop50: each mode at each ratio above 0."""
    return [f"{mode}{round(ratio * 100)}" for mode in ("drop", "shrink") for ratio in
            config["cdsp"]["robustness_ratios"] if ratio > 0]


def cdsp_nets(config: dict) -> dict:
    """net -> (losses, pseudo-label source, scribble set) of every CDSP network the workflow can train: cdsp
    (the method), Table 2's loss terms, Table 3's pseudo-label sources, Fig. 7's scribble sets."""
    full, source = config["cdsp"]["losses"], config["cdsp"]["pseudo_labels"]
    nets = {"cdsp": (full, source, "original")}
    nets.update({f"cdsp_{name}": (losses, source, "original") for name, losses in CDSP_TABLE2.items()})
    nets.update({f"cdsp_pl_{s}": (full, s, "original") for s in config["cdsp"]["table3_pseudo_labels"] if s != source})
    for tag in robustness_sets(config):
        nets[f"cdsp_{tag}"] = (full, source, tag)
        nets[f"cdsp_segs_{tag}"] = (["segs"], source, tag)  # the scribble-only baseline
    return nets


def cdsp_psi_nets(config: dict) -> dict:
    """Fig. 7's PSI curve: PSI (CPP + SLD) on each scribble set, net -> set."""
    return {"psi": "original", **{f"psi_{tag}": tag for tag in robustness_sets(config)}}


def pseudo_folder(config: dict, source: str, scribbles: str = "original") -> str:
    """The pseudo-label folder of a CDSP source: cam (cdsp_pseudo_labels, of the classes drawn in the scribble
    set `scribbles`: CDSP Eq. 4), irnet_rw (IRNet's random walk), or a name in cdsp.pseudo_folders (a folder of
    <id>.png the user brings, e.g. BMP / SEAM / AFA labels); the last two are the same for every scribble set."""
    run = config["run_dir"]
    if source == "cam":
        return f"{run}/cdsp/pseudo_labels" + ("" if scribbles == "original" else f"_{scribbles}")
    if source == "irnet_rw":
        return Chain("irnet", run).sem_seg
    if source in config["cdsp"]["pseudo_folders"]:
        return config["cdsp"]["pseudo_folders"][source]
    raise ValueError(f"cdsp: pseudo-label source {source!r} is not cam, irnet_rw or a key of cdsp.pseudo_folders")


def infer_nets(config: dict) -> dict:
    """Predictions whose settings differ from seg's: net -> any of model (file), scales, sizes, flip, crf.
    DSRG's step-1 networks warp to squares (test-ms.py), the retrained one rescales (test-ms-f.py), neither
    flips; PSI's rows are single-scale without flip, psi_ms is psi's model multi-scale + flip (Sec. 5.2);
    CDSP's networks are predicted as released (multi-scale + flip, no CRF); no CRF for PSI or CDSP."""
    dsrg, run = config["dsrg"], config["run_dir"]
    nets = {net: dict(flip=dsrg["infer_flip"]) for net in DSRG_NETS}
    for net in ("dsrg", "dsrg_nogrowth"):
        nets[net]["sizes"] = dsrg["infer_sizes"]
    single = dict(scales=[1.0], flip=False, crf=False)
    nets.update({net: single for net in PSI_NETS})
    nets.update({net: single for net in cdsp_psi_nets(config)})
    nets["psi_ms"] = dict(model=f"{run}/psi/model.pt", scales=config["psi"]["infer_scales"], flip=True, crf=False)
    nets.update({net: dict(scales=config["cdsp"]["infer_scales"], flip=True, crf=False) for net in cdsp_nets(config)})
    return nets


# ---- threads and command-line overrides --------------------------------------------------------------------

def job_threads(cores: int | None, gpu_slots: int | None, configured: int | None = None,
                slurm_cpus: str | None = None) -> int:
    """Threads of a heavy job (torch's intra-op threads; Snakemake sets OMP_NUM_THREADS to it).

    Inside a SLURM job: the job's cpus_per_task (SLURM_CPUS_PER_TASK), what SLURM gave it. Else config
    `job_threads` when set. Else with `--resources gpu=N`, a GPU slot's share of the cores (cores / N), so that
    N GPU jobs run at once (`--cores 16 --resources gpu=4`: 4 threads each, 4 jobs). Else half the cores, at
    most 8, so that two jobs of the DAG's parallel branches share a machine (on the demo's 2 cores two
    1-thread jobs keep both busy, where one 2-thread job left them 40 % idle: data loading, CRF and Python are
    single-threaded). Without --cores (a cluster run), 8: each job then gets its profile's cpus_per_task."""
    if slurm_cpus:
        return max(1, int(slurm_cpus))
    if configured:
        return configured
    if cores is None:
        return 8
    if gpu_slots:
        return max(1, cores // gpu_slots)
    return max(1, min(8, cores // 2))


def parse_overrides(config: dict, overrides: dict):
    """Types the values nested in a `--config group='{"key": value}'` override: Snakemake reads such a mapping
    with YAML's BaseLoader, every scalar a string ("2"); read them as a YAML file would (2). Edits `config`
    in place at the overrides' paths; top-level values Snakemake has already typed."""
    def walk(node, target):
        keys = node.keys() if isinstance(node, dict) else range(len(node))
        for key in keys:
            value = node[key]
            if isinstance(value, str) and isinstance(target, (dict, list)):
                target[key] = yaml.safe_load(value) if value.strip() else value
            elif isinstance(value, (dict, list)):
                walk(value, target[key])

    for key, value in overrides.items():
        if isinstance(value, (dict, list)) and key in config:
            walk(value, config[key])
