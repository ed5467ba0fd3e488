# Class activation maps (IRNet Sec. 3): wsss/cam/.
from wsss.rpnet.net import PARAMS as RPNET_PARAMS


# The RPNet keys of train_cam, set in config cam.rpnet: those its network and loss declare (wsss/rpnet/net.py)
RPNET_KEYS = list(RPNET_PARAMS)


rule train_cam:
    """IRNet Sec. 3: classification network whose class activation maps seed every later stage."""
    input:
        split=split_file(TRAIN),
        checked=DATA_CHECKED,  # validate_data: nothing trains on bad data
    output:
        model=CAM_MODEL,
        train_log=f"{RUN}/cam/train_log.csv",  # written by wsss.training.fit beside the model
    params:
        root=dataset_root,
        **stage_params("train_cam", **train_cam_values("irnet")),
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("train_cam"),
    benchmark:
        bench("train_cam")
    conda:
        ENV
    shell:
        wsss("train_cam", "--root {params.root:q} --out {output.model:q}", gpu=True)


rule make_cam:
    """Multi-scale CAMs (stride 4 and full resolution) of the training images, one shard of them."""
    input:
        split=split_files(LABELLED),
        model=rules.train_cam.output.model,
    output:
        cams=shard_folder("cam/maps"),
    params:
        root=dataset_root,
        **stage_params(
            "make_cam",
            class_names=CLASSES,
            tags_from=TAGS_FROM,
            device=config["device"],
            split=LABELLED,
            scales=config["cam"]["scales"],
            shard=wildcard("scatteritem"),
        ),
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("make_cam", sharded=True),
    benchmark:
        bench("make_cam", sharded=True)
    conda:
        ENV
    shell:
        wsss("make_cam", "--root {params.root:q} --model {input.model:q} --out {output.cams:q}", gpu=True)


rule eval_cam:
    """Background-threshold sweep of the CAMs against the ground-truth masks."""
    localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
    input:
        split=split_file(LABEL),
        checked=DATA_CHECKED,
        cams=f"{RUN}/cam/maps",
    output:
        metrics=f"{RUN}/metrics/eval_cam.csv",
        sweep=f"{RUN}/cam/threshold_sweep.csv",
    params:
        root=dataset_root,
        **stage_params("eval_cam", class_names=CLASSES, split=LABEL, thresholds=config["cam"]["eval_thresholds"]),
    log:
        log_file("eval_cam"),
    benchmark:
        bench("eval_cam")
    conda:
        ENV
    shell:
        wsss(
            "eval_cam",
            "--root {params.root:q} --cams {input.cams:q} --metrics {output.metrics:q}"
            " --sweep {output.sweep:q}"
        )


METRIC_FILES.append(rules.eval_cam.output.metrics)
TRAIN_LOGS.append(("train_cam", rules.train_cam.output.train_log))
OVERLAY_COLUMNS.append(("CAM", TRAIN, f"{RUN}/cam/maps"))
