# Segmentation networks trained on pseudo-labels (wsss/seg/). Each network lives in {RUN}/<net>/:
# seg_irnet (on IRNet's random-walk labels), dsrg and dsrg_nogrowth (DSRG Table 2 ablation; rules in
# dsrg.smk), dsrg_retrain (DSRG Sec. 4.4: trained on the DSRG model's predictions).


rule train_seg:
    """A DeepLab network trained fully supervised on pseudo-labels (cross-entropy, ignore 255)."""
    input:
        unpack(train_seg_input),
        split=split_file(TRAIN),
    output:
        model=f"{RUN}/{{seg}}/model.pt",
        train_log=f"{RUN}/{{seg}}/train_log.csv",  # written by wsss.training.fit beside the model
    wildcard_constraints:
        seg="seg_irnet|dsrg_retrain",
    params:
        root=dataset_root,
        **stage_params(
            "train_seg",
            **{**seg_params(), "batch_size": retrain_or_seg("batch_size")},
            scale=retrain_or_seg("scale"),
            label_grid=lambda wc: wc.get("seg") == "dsrg_retrain" and config["dsrg"]["retrain_label_grid"],
            iterations=config["seg"]["iterations"],
            lr=config["seg"]["lr"],
            power=0.9,
        ),
        init=init_arg,
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("train_seg_{seg}"),
    benchmark:
        bench("train_seg_{seg}")
    conda:
        ENV
    shell:
        wsss(
            "train_seg",
            "--root {params.root:q} --labels {input.labels:q} {params.init}"
            " --out {output.model:q}",
            gpu=True,
        )


# Predictions whose settings differ from config["seg"]'s: name -> dict with any of model (file), scales,
# sizes, flip, crf (rules/psi.smk adds its networks, e.g. psi_ms = psi's model, multi-scale + flip).
# DSRG's step-1 networks warp to squares (test-ms.py), the retrained one rescales (test-ms-f.py); the
# released test scripts do not flip.
INFER_NETS = {net: dict(flip=config["dsrg"]["infer_flip"]) for net in DSRG_NETS}
for net in ("dsrg", "dsrg_nogrowth"):
    INFER_NETS[net]["sizes"] = config["dsrg"]["infer_sizes"]


rule infer_seg:
    """Multi-scale + flip inference of a segmentation network, optional dense CRF; one shard of images."""
    input:
        split=split_file("{split}"),
        model=lambda wc: INFER_NETS.get(wc.net, {}).get("model", f"{RUN}/{wc.net}/model.pt"),
    output:
        pred=shard_folder("{net}/pred/{split}"),
    params:
        root=dataset_root,
        **stage_params(
            "infer_seg",
            split=wildcard("split"),
            device=config["device"],
            scales=infer_setting("scales", config["seg"]["infer_scales"]),
            sizes=infer_setting("sizes", None),
            flip=infer_setting("flip", config["seg"]["infer_flip"]),
            crf=infer_setting("crf", config["seg"]["infer_crf"]),
            shard=wildcard("scatteritem"),
        ),
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("infer_seg_{net}_{split}", sharded=True),
    benchmark:
        bench("infer_seg_{net}_{split}", sharded=True)
    conda:
        ENV
    shell:
        wsss("infer_seg", "--root {params.root:q} --model {input.model:q} --out {output.pred:q}", gpu=True)


rule eval_seg:
    """mIoU and per-class IoU of a segmentation network's predictions on the evaluation split."""
    localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
    input:
        split=split_file(EVAL),
        pred=f"{RUN}/{{net}}/pred/{EVAL}",
    output:
        metrics=f"{RUN}/metrics/seg_{{net}}.csv",
    params:
        root=dataset_root,
        **stage_params("eval_seg", class_names=CLASSES, split=EVAL, method=method_name),
    log:
        log_file("eval_seg_{net}"),
    benchmark:
        bench("eval_seg_{net}")
    conda:
        ENV
    shell:
        wsss("eval_seg", "--root {params.root:q} --pred {input.pred:q} --out {output.metrics:q}")


SEG_NETS = ["seg_irnet", "dsrg", "dsrg_nogrowth", "dsrg_retrain"]
METRIC_FILES.extend(expand(f"{RUN}/metrics/seg_{{net}}.csv", net=SEG_NETS))
TRAIN_LOGS.extend((net, f"{RUN}/{net}/train_log.csv") for net in ("seg_irnet", "dsrg_retrain"))
OVERLAY_COLUMNS.extend((net, EVAL, f"{RUN}/{net}/pred/{EVAL}") for net in SEG_NETS)
