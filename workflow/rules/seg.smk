# Segmentation networks trained on pseudo-labels, predicted and scored (wsss/seg/). Each network lives in
# {RUN}/<net>/: seg_<method> for each CAM method's chain (seg_irnet, seg_rpnet: on its random-walk labels,
# chain.smk) and dsrg_retrain (DSRG Sec. 4.4: on the DSRG model's predictions) are trained here; every network
# (those and DSRG's, PSI's, CDSP's) is predicted by infer_seg, with its own settings from INFER_NETS, and scored
# by eval_seg.


rule train_seg:
    """A DeepLab network trained fully supervised on pseudo-labels (cross-entropy, ignore 255)."""
    input:
        unpack(train_seg_input),
        split=split_file(TRAIN),
    output:
        model=f"{RUN}/{{seg}}/model.pt",
        train_log=f"{RUN}/{{seg}}/train_log.csv",  # written by wsss.training.fit beside the model
    wildcard_constraints:
        seg="|".join([cam_chain.seg_net for cam_chain in CHAINS] + ["dsrg_retrain"]),
    params:
        **stage_params(
            "train_seg",
            **{**plan.seg_params(config), "batch_size": retrain_or_seg("batch_size")},
            scale=retrain_or_seg("scale"),
            label_grid=lambda wc: wc.get("seg") == "dsrg_retrain" and config["dsrg"]["retrain_label_grid"],
            iterations=config["seg"]["iterations"],
            lr=config["seg"]["lr"],
            power=0.9,
        ),
        root=dataset_root,
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
            "--root {params.root:q} --labels {input.labels:q} {params.init} --out {output.model:q}",
            gpu=True,
        )


rule infer_seg:
    """Multi-scale + flip inference of a segmentation network, optional dense CRF; one shard of images."""
    input:
        split=split_file("{split}"),
        model=lambda wc: INFER_NETS.get(wc.net, {}).get("model", f"{RUN}/{wc.net}/model.pt"),
    output:
        pred=shard_folder("{net}/pred/{split}"),
    wildcard_constraints:
        net="[^/]+",
    params:
        **stage_params(
            "infer_seg",
            split=wildcard("split"),
            device=config["device"],
            scales=infer_setting("scales", config["seg"]["infer_scales"]),
            sizes=infer_setting("sizes", None),
            flip=infer_setting("flip", config["seg"]["infer_flip"]),
            crf=infer_setting("crf", config["seg"]["infer_crf"]),
            shard=shard(),
        ),
        root=dataset_root,
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
    wildcard_constraints:
        net="[^/]+",
    params:
        **stage_params("eval_seg", class_names=CLASSES, split=EVAL, method=method_name),
        root=dataset_root,
    log:
        log_file("eval_seg_{net}"),
    benchmark:
        bench("eval_seg_{net}")
    conda:
        ENV
    shell:
        wsss("eval_seg", "--root {params.root:q} --pred {input.pred:q} --out {output.metrics:q}")


for cam_chain in CHAINS:
    segmentation_network(cam_chain.method, cam_chain.seg_net)
