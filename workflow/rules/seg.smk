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
        backbone=config["model"]["backbone"],
        pretrained=config["model"]["pretrained"],
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
    return dict(labels=f"{RUN}/irn/sem_seg", **({"init": CAM_MODEL} if INIT_FROM_CAM else {}))


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
            **seg_params(),
            scale=config["seg"]["scale"],
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


# Predictions whose settings differ from config["seg"]'s: name -> dict with any of model (file), scales,
# flip, crf (rules/psi.smk adds its networks, e.g. psi_ms = psi's model, multi-scale + flip).
INFER_NETS = {}


def infer_setting(key, default):
    """An infer_seg param: the network's INFER_NETS entry, else `default`."""
    return lambda wc: INFER_NETS.get(wc.net, {}).get(key, default)


rule infer_seg:
    """Multi-scale + flip inference of a segmentation network, optional dense CRF; one shard of images."""
    input:
        split=split_file("{split}"),
        model=lambda wc: INFER_NETS.get(wc.net, {}).get("model", f"{RUN}/{wc.net}/model.pt"),
    output:
        pred=shard_folder("{net}/pred/{split}"),
    params:
        **stage_params(
            "infer_seg",
            split=wildcard("split"),
            device=config["device"],
            scales=infer_setting("scales", config["seg"]["infer_scales"]),
            flip=infer_setting("flip", True),
            crf=infer_setting("crf", config["seg"]["infer_crf"]),
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
        **stage_params("eval_seg", class_names=CLASSES, split=EVAL, method=wildcard("net")),
    log:
        log_file("eval_seg_{net}"),
    benchmark:
        bench("eval_seg_{net}")
    shell:
        WSSS + " eval_seg --params {params.json} --root {DATA:q} --pred {input.pred:q} --out {output.metrics:q}"
        " > {log:q} 2>&1"


SEG_NETS = ["seg_irnet", "dsrg", "dsrg_nogrowth", "dsrg_retrain"]
METRIC_FILES.extend(expand(f"{RUN}/metrics/seg_{{net}}.csv", net=SEG_NETS))
