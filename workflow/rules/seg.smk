# Segmentation networks trained on pseudo-labels (wsss/seg/). Each network lives in {RUN}/<net>/:
# seg_irnet (on IRNet's random-walk labels), dsrg and dsrg_nogrowth (DSRG Table 2 ablation; rules in
# dsrg.smk), dsrg_retrain (DSRG Sec. 4.4: trained on the DSRG model's predictions).


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


rule train_seg:
    """A DeepLab network trained fully supervised on pseudo-labels (cross-entropy, ignore 255)."""
    input:
        unpack(train_seg_input),
        split=split_file(TRAIN),
    output:
        model=f"{RUN}/{{seg}}/model.pt",
    wildcard_constraints:
        seg="seg_irnet|dsrg_retrain",
    params:
        **stage_params(
            "train_seg",
            **{**seg_params(), "batch_size": retrain_or_seg("batch_size")},
            scale=retrain_or_seg("scale"),
            label_grid=lambda wc: wc.seg == "dsrg_retrain" and config["dsrg"]["retrain_label_grid"],
            iterations=config["seg"]["iterations"],
            lr=config["seg"]["lr"],
            power=0.9,
        ),
        init=init_arg,
    threads: 8
    resources:
        gpu=1,
    log:
        log_file("train_seg_{seg}"),
    benchmark:
        bench("train_seg_{seg}")
    shell:
        GPU_WSSS + " train_seg --params {params.json} --root {DATA:q} --labels {input.labels:q} {params.init}"
        " --out {output.model:q} > {log:q} 2>&1"


rule infer_seg:
    """Multi-scale + flip inference of a segmentation network, optional dense CRF; one shard of images."""
    input:
        split=split_file("{split}"),
        model=f"{RUN}/{{net}}/model.pt",
    output:
        pred=shard_folder("{net}/pred/{split}"),
    params:
        **stage_params(
            "infer_seg",
            split=wildcard("split"),
            device=config["device"],
            scales=config["seg"]["infer_scales"],
            # DSRG's step-1 networks warp to squares (test-ms.py), the retrained one rescales (test-ms-f.py)
            sizes=lambda wc: config["dsrg"]["infer_sizes"] if wc.net in ("dsrg", "dsrg_nogrowth") else None,
            flip=lambda wc: config["dsrg" if wc.net in DSRG_NETS else "seg"]["infer_flip"],
            crf=config["seg"]["infer_crf"],
            shard=wildcard("scatteritem"),
        ),
    threads: 8
    resources:
        gpu=1,
    log:
        log_file("infer_seg_{net}_{split}", sharded=True),
    benchmark:
        bench("infer_seg_{net}_{split}", sharded=True)
    shell:
        GPU_WSSS + " infer_seg --params {params.json} --root {DATA:q} --model {input.model:q} --out {output.pred:q}"
        " > {log:q} 2>&1"


rule eval_seg:
    """mIoU and per-class IoU of a segmentation network's predictions on the evaluation split."""
    input:
        split=split_file(EVAL),
        pred=f"{RUN}/{{net}}/pred/{EVAL}",
    output:
        metrics=f"{RUN}/metrics/seg_{{net}}.csv",
    params:
        **stage_params("eval_seg", class_names=CLASSES, split=EVAL, method=method_name),
    log:
        log_file("eval_seg_{net}"),
    benchmark:
        bench("eval_seg_{net}")
    shell:
        WSSS + " eval_seg --params {params.json} --root {DATA:q} --pred {input.pred:q} --out {output.metrics:q}"
        " > {log:q} 2>&1"


SEG_NETS = ["seg_irnet", "dsrg", "dsrg_nogrowth", "dsrg_retrain"]
METRIC_FILES.extend(expand(f"{RUN}/metrics/seg_{{net}}.csv", net=SEG_NETS))
