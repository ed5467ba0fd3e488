# Segmentation networks trained on pseudo-labels, and DSRG (wsss/train_seg.py, train_dsrg.py).
# Each network lives in {RUN}/<net>/: seg_irnet (on IRNet's random-walk labels), dsrg and dsrg_nogrowth
# (DSRG Table 2 ablation), dsrg_retrain (DSRG Sec. 4.4: trained on the DSRG model's predictions).


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


rule dsrg_seeds:
    """DSRG Sec. 3.1: seed cues from the CAMs (foreground) and saliency or a low CAM (background)."""
    input:
        split=split_file(TRAIN),
        cams=f"{RUN}/cam/maps",
    output:
        seeds=directory(f"{RUN}/dsrg/seeds"),
    params:
        code=code("dsrg_seeds"),
        split=TRAIN,
        fg_rule=config["dsrg"]["fg_rule"],
        fg_fraction=config["dsrg"]["fg_fraction"],
        bg_cam=config["dsrg"]["bg_cam"],
        bg_saliency=config["dsrg"]["bg_saliency"],
        saliency_dir=config["dsrg"]["saliency_dir"],
    log:
        log_file("dsrg_seeds"),
    benchmark:
        bench("dsrg_seeds")
    run:
        wsss("dsrg_seeds", params, log, resources, root=DATA, cams=input.cams, out=output.seeds)


rule train_dsrg:
    """DSRG Sec. 3.2-3.3: balanced seeding + constrain losses, seeds grown every iteration (or not)."""
    input:
        split=split_file(TRAIN),
        seeds=rules.dsrg_seeds.output.seeds,
        init=CAM_MODEL if INIT_FROM_CAM else [],
    output:
        model=f"{RUN}/{{dsrg}}/model.pt",
        supervision=f"{RUN}/{{dsrg}}/supervision.csv",
        plot=report(f"{RUN}/{{dsrg}}/supervision.png", caption="../report/supervision.rst", category="DSRG"),
    wildcard_constraints:
        dsrg="dsrg|dsrg_nogrowth",
    params:
        code=code("train_dsrg"),
        **seg_params(),
        tags_from=TAGS_FROM,
        growth=lambda wc: wc.dsrg == "dsrg",
        scale=config["dsrg"]["scale"],
        epochs=config["dsrg"]["epochs"],
        lr=config["dsrg"]["lr"],
        lr_policy="step",
        lr_step=config["dsrg"]["lr_step"],
        lr_gamma=config["dsrg"]["lr_gamma"],
        th_fg=config["dsrg"]["th_fg"],
        th_bg=config["dsrg"]["th_bg"],
        crf_scale=config["dsrg"]["crf_scale"],
        crf_log_unary=config["dsrg"]["crf_log_unary"],
    threads: 8
    resources:
        gpu=1,
    log:
        log_file("train_dsrg_{dsrg}"),
    benchmark:
        bench("train_dsrg_{dsrg}")
    run:
        init = {"init": input.init} if INIT_FROM_CAM else {}
        wsss("train_dsrg", params, log, resources, root=DATA, seeds=input.seeds, out=output.model,
             supervision=output.supervision, plot=output.plot, **init)


def train_seg_input(wildcards):
    """seg_irnet learns IRNet's random-walk labels; dsrg_retrain the DSRG model's train predictions."""
    if wildcards.seg == "dsrg_retrain":
        return dict(labels=f"{RUN}/dsrg/pred/{TRAIN}", init=f"{RUN}/dsrg/model.pt")
    return dict(labels=f"{RUN}/irn/sem_seg", **({"init": CAM_MODEL} if INIT_FROM_CAM else {}))


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
        code=code("train_seg"),
        **seg_params(),
        scale=config["seg"]["scale"],
        iterations=config["seg"]["iterations"],
        lr=config["seg"]["lr"],
        power=0.9,
    threads: 8
    resources:
        gpu=1,
    log:
        log_file("train_seg_{seg}"),
    benchmark:
        bench("train_seg_{seg}")
    run:
        init = {"init": input.init} if "init" in input.keys() else {}
        wsss("train_seg", params, log, resources, root=DATA, labels=input.labels, out=output.model, **init)


rule infer_seg:
    """Multi-scale + flip inference of a segmentation network, optional dense CRF; one shard of images."""
    input:
        split=split_file("{split}"),
        model=f"{RUN}/{{net}}/model.pt",
    output:
        pred=shard_folder("{net}/pred/{split}"),
    params:
        code=code("infer_seg"),
        split="{split}",
        device=config["device"],
        scales=config["seg"]["infer_scales"],
        flip=True,
        crf=config["seg"]["infer_crf"],
        shard="{scatteritem}",
    threads: 8
    resources:
        gpu=1,
    log:
        log_file("infer_seg_{net}_{split}", sharded=True),
    benchmark:
        bench("infer_seg_{net}_{split}", sharded=True)
    run:
        wsss("infer_seg", params, log, resources, root=DATA, model=input.model, out=output.pred)


rule eval_seg:
    """mIoU and per-class IoU of a segmentation network's predictions on the evaluation split."""
    input:
        split=split_file(EVAL),
        pred=f"{RUN}/{{net}}/pred/{EVAL}",
    output:
        metrics=f"{RUN}/metrics/seg_{{net}}.csv",
    params:
        code=code("eval_seg"),
        class_names=CLASSES,
        split=EVAL,
        method="{net}",
    log:
        log_file("eval_seg_{net}"),
    benchmark:
        bench("eval_seg_{net}")
    run:
        wsss("eval_seg", params, log, resources, root=DATA, pred=input.pred, out=output.metrics)


SEG_NETS = ["seg_irnet", "dsrg", "dsrg_nogrowth", "dsrg_retrain"]
METRIC_FILES.extend(expand(f"{RUN}/metrics/seg_{{net}}.csv", net=SEG_NETS))
