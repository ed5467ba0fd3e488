# RPNet (Liu et al.): RPNet's CAM network (wsss/cam/rpnet.py, train_cam with method rpnet), then IRNet's chain
# unchanged (Table I "Base + RPNet + BR"), all under {RUN}/rpnet/. Each rule is the plain chain's rule (cam.smk,
# irnet.smk, seg.smk) with RPNet's paths; only train_cam's params differ (config cam.rpnet), so an RPNet key
# reruns this branch and never the plain one. Metrics rows: rpnet (CAMs), rpnet_rw (random-walk labels),
# seg_rpnet (segmentation), next to the plain chain's cam, irnet_rw, seg_irnet. Built when cam.methods lists
# rpnet. Target cam_vs_fraction: RPNet Table II (part of `ablations`; on the report with config ablations).
RP_RUN = f"{RUN}/rpnet"
RP_CAM_MODEL = f"{RP_RUN}/cam/model.pt"


use rule train_cam as rpnet_train_cam with:
    output:
        model=RP_CAM_MODEL,
    params:
        root=dataset_root,
        **stage_params("train_cam", **train_cam_values("rpnet")),
    log:
        log_file("rpnet_train_cam"),
    benchmark:
        bench("rpnet_train_cam")


use rule make_cam as rpnet_make_cam with:
    input:
        split=split_files(LABELLED),
        model=RP_CAM_MODEL,
    output:
        cams=shard_folder("rpnet/cam/maps"),
    log:
        log_file("rpnet_make_cam", sharded=True),
    benchmark:
        bench("rpnet_make_cam", sharded=True)


use rule eval_cam as rpnet_eval_cam with:
    input:
        split=split_file(LABEL),
        checked=DATA_CHECKED,
        cams=f"{RP_RUN}/cam/maps",
    output:
        metrics=f"{RP_RUN}/metrics/eval_cam.csv",
        sweep=f"{RP_RUN}/cam/threshold_sweep.csv",
    params:
        root=dataset_root,
        **stage_params(
            "eval_cam", class_names=CLASSES, split=LABEL, thresholds=config["cam"]["eval_thresholds"], method="rpnet"
        ),
    log:
        log_file("rpnet_eval_cam"),
    benchmark:
        bench("rpnet_eval_cam")


use rule cam_to_ir_label as rpnet_cam_to_ir_label with:
    input:
        split=split_files(LABELLED),
        cams=f"{RP_RUN}/cam/maps",
    output:
        labels=shard_folder("rpnet/irn/ir_label"),
    log:
        log_file("rpnet_cam_to_ir_label", sharded=True),
    benchmark:
        bench("rpnet_cam_to_ir_label", sharded=True)


use rule train_irn as rpnet_train_irn with:
    input:
        split=split_file(TRAIN),
        ir_labels=f"{RP_RUN}/irn/ir_label",
        cam_model=RP_CAM_MODEL,
    output:
        model=f"{RP_RUN}/irn/model.pt",
    log:
        log_file("rpnet_train_irn"),
    benchmark:
        bench("rpnet_train_irn")


use rule make_sem_seg_labels as rpnet_make_sem_seg_labels with:
    input:
        split=split_files(LABELLED),
        cams=f"{RP_RUN}/cam/maps",
        irn_model=f"{RP_RUN}/irn/model.pt",
    output:
        labels=shard_folder("rpnet/irn/sem_seg"),
    log:
        log_file("rpnet_make_sem_seg_labels", sharded=True),
    benchmark:
        bench("rpnet_make_sem_seg_labels", sharded=True)


use rule eval_sem_seg as rpnet_eval_sem_seg with:
    input:
        split=split_file(LABEL),
        labels=f"{RP_RUN}/irn/sem_seg",
    output:
        metrics=f"{RP_RUN}/metrics/sem_seg.csv",
    params:
        root=dataset_root,
        **stage_params("eval_sem_seg", class_names=CLASSES, split=LABEL, stage="sem_seg", method="rpnet_rw"),
    log:
        log_file("rpnet_eval_sem_seg"),
    benchmark:
        bench("rpnet_eval_sem_seg")


use rule train_seg as rpnet_train_seg with:
    input:
        split=split_file(TRAIN),
        labels=f"{RP_RUN}/irn/sem_seg",
        init=RP_CAM_MODEL if INIT_FROM_CAM else [],
    output:
        model=f"{RP_RUN}/seg_irnet/model.pt",
    log:
        log_file("rpnet_train_seg"),
    benchmark:
        bench("rpnet_train_seg")


use rule infer_seg as rpnet_infer_seg with:
    input:
        split=split_file("{split}"),
        model=f"{RP_RUN}/seg_irnet/model.pt",
    output:
        pred=shard_folder("rpnet/seg_irnet/pred/{split}"),
    log:
        log_file("rpnet_infer_seg_{split}", sharded=True),
    benchmark:
        bench("rpnet_infer_seg_{split}", sharded=True)


ruleorder: rpnet_infer_seg > infer_seg  # infer_seg's {net} would also match rpnet/seg_irnet


use rule eval_seg as rpnet_eval_seg with:
    input:
        split=split_file(EVAL),
        pred=f"{RP_RUN}/seg_irnet/pred/{EVAL}",
    output:
        metrics=f"{RP_RUN}/metrics/seg_irnet.csv",
    params:
        root=dataset_root,
        **stage_params("eval_seg", class_names=CLASSES, split=EVAL, method="seg_rpnet"),
    log:
        log_file("rpnet_eval_seg"),
    benchmark:
        bench("rpnet_eval_seg")


if "rpnet" in config["cam"]["methods"]:
    METRIC_FILES.extend(f"{RP_RUN}/metrics/{name}.csv" for name in ("eval_cam", "sem_seg", "seg_irnet"))


# RPNet Table II: both CAM networks trained on each share of the training images, CAMs scored on all of them.
TABLE2 = f"{RUN}/table2/{{method}}_{{fraction}}"
TABLE2_FRACTIONS = [str(f) for f in config["cam"]["table2_fractions"]]
TABLE2_PLOT = f"{RUN}/report/cam_vs_fraction.png"


use rule train_cam as table2_train_cam with:
    output:
        model=f"{TABLE2}/cam/model.pt",
    wildcard_constraints:
        method="irnet|rpnet",
        fraction=r"[0-9.]+",
    params:
        root=dataset_root,
        **{**stage_params("train_cam"), "json": table2_train_params},
    log:
        log_file("table2_train_cam_{method}_{fraction}"),
    benchmark:
        bench("table2_train_cam/{method}_{fraction}")


use rule make_cam as table2_make_cam with:
    input:
        split=split_files(LABELLED),
        model=f"{TABLE2}/cam/model.pt",
    output:
        cams=shard_folder("table2/{method}_{fraction}/cam/maps"),
    log:
        log_file("table2_make_cam_{method}_{fraction}", sharded=True),
    benchmark:
        bench("table2_make_cam_{method}_{fraction}", sharded=True)


use rule eval_cam as table2_eval_cam with:
    input:
        split=split_file(LABEL),
        checked=DATA_CHECKED,
        cams=f"{TABLE2}/cam/maps",
    output:
        metrics=f"{TABLE2}/eval_cam.csv",
        sweep=f"{TABLE2}/threshold_sweep.csv",
    params:
        root=dataset_root,
        **stage_params(
            "eval_cam",
            class_names=CLASSES,
            split=LABEL,
            thresholds=config["cam"]["eval_thresholds"],
            method=wildcard("method"),
        ),
    log:
        log_file("table2_eval_cam_{method}_{fraction}"),
    benchmark:
        bench("table2_eval_cam/{method}_{fraction}")


rule cam_vs_fraction:
    """RPNet Table II: CAM mIoU of the plain CAM network and RPNet against the share of training images."""
    input:
        expand(f"{TABLE2}/eval_cam.csv", method=["irnet", "rpnet"], fraction=TABLE2_FRACTIONS),
    output:
        table=f"{RUN}/report/cam_vs_fraction.csv",
        plot=report(TABLE2_PLOT, caption="../report/cam_vs_fraction.rst", category="CAM"),
    params:
        **stage_params("cam_vs_fraction", methods=["irnet", "rpnet"], fractions=config["cam"]["table2_fractions"]),
    log:
        log_file("cam_vs_fraction"),
    benchmark:
        bench("cam_vs_fraction")
    conda:
        ENV
    shell:
        wsss(
            "cam_vs_fraction",
            "--inputs {input:q} --table {output.table:q} --plot {output.plot:q}",
        )


ABLATIONS.extend(rules.cam_vs_fraction.output)
if config["ablations"]:
    REPORT_FIGURES.append(("RPNet Table II: CAM mIoU of the plain CAM network and RPNet against the share of "
                           "training images", TABLE2_PLOT))
