# Class activation maps (IRNet Sec. 3): wsss/cam/.


rule train_cam:
    """IRNet Sec. 3: classification network whose class activation maps seed every later stage."""
    input:
        split=split_file(TRAIN),
        checked=DATA_CHECKED,  # validate_data: nothing trains on bad data
    output:
        model=CAM_MODEL,
    params:
        **stage_params(
            "train_cam",
            class_names=CLASSES,
            tags_from=TAGS_FROM,
            seed=config["seed"],
            device=config["device"],
            split=TRAIN,
            backbone=config["model"]["backbone"],
            pretrained=CAM_PRETRAINED,
            crop=config["cam"]["crop"],
            resize_long=config["cam"]["resize_long"],
            batch_size=config["cam"]["batch_size"],
            epochs=config["cam"]["epochs"],
            lr=config["cam"]["lr"],
            weight_decay=config["cam"]["weight_decay"],
        ),
    threads: 8  # torch intra-op threads (Snakemake sets OMP_NUM_THREADS; capped at --cores)
    resources:
        gpu=1,
    log:
        log_file("train_cam"),
    benchmark:
        bench("train_cam")
    shell:
        GPU_WSSS + " train_cam --params {params.json} --root {DATA:q} --out {output.model:q} > {log:q} 2>&1"


rule make_cam:
    """Multi-scale CAMs (stride 4 and full resolution) of the training images, one shard of them."""
    input:
        split=split_files(LABELLED),
        model=rules.train_cam.output.model,
    output:
        cams=shard_folder("cam/maps"),
    params:
        **stage_params(
            "make_cam",
            class_names=CLASSES,
            tags_from=TAGS_FROM,
            device=config["device"],
            split=LABELLED,
            scales=config["cam"]["scales"],
            shard=wildcard("scatteritem"),
        ),
    threads: 8  # torch intra-op threads (Snakemake sets OMP_NUM_THREADS; capped at --cores)
    resources:
        gpu=1,
    log:
        log_file("make_cam", sharded=True),
    benchmark:
        bench("make_cam", sharded=True)
    shell:
        GPU_WSSS + " make_cam --params {params.json} --root {DATA:q} --model {input.model:q} --out {output.cams:q}"
        " > {log:q} 2>&1"


rule eval_cam:
    """Background-threshold sweep of the CAMs against the ground-truth masks."""
    input:
        split=split_file(LABEL),
        checked=DATA_CHECKED,
        cams=f"{RUN}/cam/maps",
    output:
        metrics=f"{RUN}/metrics/eval_cam.csv",
        sweep=f"{RUN}/cam/threshold_sweep.csv",
    params:
        **stage_params("eval_cam", class_names=CLASSES, split=LABEL, thresholds=config["cam"]["eval_thresholds"]),
    log:
        log_file("eval_cam"),
    benchmark:
        bench("eval_cam")
    shell:
        WSSS + " eval_cam --params {params.json} --root {DATA:q} --cams {input.cams:q} --metrics {output.metrics:q}"
        " --sweep {output.sweep:q} > {log:q} 2>&1"


METRIC_FILES.append(rules.eval_cam.output.metrics)
