# IRNet (Ahn et al. 2019) Sec. 4-5: relation labels, IRNet, semantic and instance pseudo-labels (wsss/irnet/).
IRN = config["irn"]


rule cam_to_ir_label:
    """Sec. 4.2: confident foreground / background from the CAMs, refined by dense CRF; one shard."""
    input:
        split=split_files(LABELLED),
        cams=f"{RUN}/cam/maps",
    output:
        labels=shard_folder("irn/ir_label"),
    params:
        root=dataset_root,
        **stage_params(
            "cam_to_ir_label",
            split=LABELLED,
            shard=wildcard("scatteritem"),
            conf_fg_thres=IRN["conf_fg_thres"],
            conf_bg_thres=IRN["conf_bg_thres"],
            crf_gt_prob=IRN["crf_gt_prob"],
            crf_gauss_sxy=IRN["crf_gauss_sxy"],
            crf_gauss_compat=IRN["crf_gauss_compat"],
            crf_bi_sxy=IRN["crf_bi_sxy"],
            crf_bi_srgb=IRN["crf_bi_srgb"],
            crf_bi_compat=IRN["crf_bi_compat"],
            crf_iterations=IRN["crf_iterations"],
        ),
    threads: JOB_THREADS
    log:
        log_file("cam_to_ir_label", sharded=True),
    benchmark:
        bench("cam_to_ir_label", sharded=True)
    conda:
        ENV
    shell:
        wsss("cam_to_ir_label", "--root {params.root:q} --cams {input.cams:q} --out {output.labels:q}")


rule train_irn:
    """Sec. 4.1-4.5: boundary and displacement branches on the frozen backbone (Eq. 5-9)."""
    input:
        split=split_file(TRAIN),
        ir_labels=f"{RUN}/irn/ir_label",
        cam_model=CAM_MODEL,
    output:
        model=f"{RUN}/irn/model.pt",
        train_log=f"{RUN}/irn/train_log.csv",  # written by wsss.training.fit beside the model
    params:
        root=dataset_root,
        **stage_params(
            "train_irn",
            class_names=CLASSES,
            seed=config["seed"],
            device=config["device"],
            split=TRAIN,
            backbone=config["model"]["backbone"],
            pretrained=CAM_PRETRAINED,
            irn_backbone="cam" if INIT_FROM_CAM else "pretrained",
            radius=IRN["pair_radius"],
            input_scale=IRN["input_scale"],
            crop=IRN["crop"],
            scale=IRN["scale"],
            batch_size=IRN["batch_size"],
            epochs=IRN["epochs"],
            checkpoint_every=config["train"]["checkpoint_every"],
            amp=config["train"]["amp"],
            lr=IRN["lr"],
            momentum=IRN["momentum"],
            weight_decay=IRN["weight_decay"],
            source_window=IRN["source_window"],
        ),
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("train_irn"),
    benchmark:
        bench("train_irn")
    conda:
        ENV
    shell:
        wsss(
            "train_irn",
            "--root {params.root:q} --ir_labels {input.ir_labels:q}"
            " --cam_model {input.cam_model:q} --out {output.model:q}",
            gpu=True,
        )


rule make_sem_seg_labels:
    """Sec. 5: random walk of the CAMs within IRNet's boundaries -> semantic pseudo-labels; one shard."""
    input:
        split=split_files(LABELLED),
        cams=f"{RUN}/cam/maps",
        irn_model=rules.train_irn.output.model,
    output:
        labels=shard_folder("irn/sem_seg"),
    params:
        root=dataset_root,
        **stage_params(
            "make_sem_seg_labels",
            split=LABELLED,
            device=config["device"],
            shard=wildcard("scatteritem"),
            **walk_params(),
            background=IRN["rw_background"],
            bg_power=IRN["rw_bg_power"],
        ),
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("make_sem_seg_labels", sharded=True),
    benchmark:
        bench("make_sem_seg_labels", sharded=True)
    conda:
        ENV
    shell:
        wsss(
            "make_sem_seg_labels",
            "--root {params.root:q} --cams {input.cams:q}"
            " --irn_model {input.irn_model:q} --out {output.labels:q}",
            gpu=True,
        )


rule make_ins_seg_labels:
    """Sec. 5.1-5.2: displacement field -> centroids -> instance-wise CAMs, random walk; one shard."""
    input:
        split=split_file(LABEL),
        cams=f"{RUN}/cam/maps",
        irn_model=rules.train_irn.output.model,
    output:
        instances=shard_folder("irn/ins_seg"),
    params:
        root=dataset_root,
        **stage_params(
            "make_ins_seg_labels",
            split=LABEL,
            device=config["device"],
            shard=wildcard("scatteritem"),
            **walk_params(),
            centroid_thres=IRN["centroid_thres"],
            dp_iterations=IRN["dp_iterations"],
        ),
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("make_ins_seg_labels", sharded=True),
    benchmark:
        bench("make_ins_seg_labels", sharded=True)
    conda:
        ENV
    shell:
        wsss(
            "make_ins_seg_labels",
            "--root {params.root:q} --cams {input.cams:q}"
            " --irn_model {input.irn_model:q} --out {output.instances:q}",
            gpu=True,
        )


rule eval_sem_seg:
    """mIoU of a set of semantic pseudo-labels (the IR labels or the random-walk labels) on the label split."""
    localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
    input:
        split=split_file(LABEL),
        labels=f"{RUN}/irn/{{labels}}",
    output:
        metrics=f"{RUN}/metrics/{{labels}}.csv",
    wildcard_constraints:
        labels="ir_label|sem_seg",
    params:
        root=dataset_root,
        **stage_params(
            "eval_sem_seg",
            class_names=CLASSES,
            split=LABEL,
            stage=wildcard("labels"),
            method=lambda wc: "irnet_rw" if wc.labels == "sem_seg" else "irnet_crf",
        ),
    log:
        log_file("eval_sem_seg_{labels}"),
    benchmark:
        bench("eval_sem_seg_{labels}")
    conda:
        ENV
    shell:
        wsss("eval_sem_seg", "--root {params.root:q} --labels {input.labels:q} --out {output.metrics:q}")


rule eval_ins_seg:
    """AP^r at IoU 0.5 and 0.7 of the instance pseudo-labels against SegmentationObject (Tables 1-3)."""
    localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
    input:
        split=split_file(LABEL),
        ins_seg=f"{RUN}/irn/ins_seg",
    output:
        metrics=f"{RUN}/metrics/ins_seg.csv",
    params:
        root=dataset_root,
        **stage_params("eval_ins_seg", class_names=CLASSES, split=LABEL),
    log:
        log_file("eval_ins_seg"),
    benchmark:
        bench("eval_ins_seg")
    conda:
        ENV
    shell:
        wsss("eval_ins_seg", "--root {params.root:q} --ins_seg {input.ins_seg:q} --out {output.metrics:q}")


METRIC_FILES.extend([f"{RUN}/metrics/ir_label.csv", f"{RUN}/metrics/sem_seg.csv"])
if config["dataset"]["instances"]:  # SegmentationObject exists (not for PASCAL-Context)
    METRIC_FILES.append(f"{RUN}/metrics/ins_seg.csv")
TRAIN_LOGS.append(("train_irn", f"{RUN}/irn/train_log.csv"))
OVERLAY_COLUMNS.extend([("IR labels", LABEL, f"{RUN}/irn/ir_label"), ("random walk", LABEL, f"{RUN}/irn/sem_seg")])
if config["dataset"]["instances"]:
    OVERLAY_COLUMNS.append(("instances", LABEL, f"{RUN}/irn/ins_seg"))


rule eval_boundary:
    """IRNet's boundary map against the ground-truth class boundaries: precision / recall / f1 (issue 13)."""
    input:
        split=split_file(LABEL),
        cams=f"{RUN}/cam/maps",
        irn_model=rules.train_irn.output.model,
    output:
        metrics=f"{RUN}/metrics/boundary.csv",
        sweep=f"{RUN}/irn/boundary_sweep.csv",
    params:
        root=dataset_root,
        **stage_params("eval_boundary", split=LABEL, device=config["device"], input_scale=IRN["input_scale"]),
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("eval_boundary"),
    benchmark:
        bench("eval_boundary")
    conda:
        ENV
    shell:
        wsss(
            "eval_boundary",
            "--root {params.root:q} --cams {input.cams:q} --irn_model {input.irn_model:q}"
            " --metrics {output.metrics:q} --sweep {output.sweep:q}",
            gpu=True,
        )


METRIC_FILES.append(rules.eval_boundary.output.metrics)
