# RPNet (Liu et al.): its CAM network (wsss/rpnet/, train_cam with method rpnet, config cam.rpnet) goes
# through IRNet's chain as every CAM method does (chain.smk: rpnet_train_cam .. rpnet_eval_sem_seg, then
# seg_rpnet; Table I "Base + RPNet + BR"). Here: its ablation, Table II (target cam_vs_fraction).


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
        **{**stage_params("train_cam"), "json": table2_train_params},
        root=dataset_root,
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
        **stage_params(
            "eval_cam",
            class_names=CLASSES,
            split=LABEL,
            thresholds=config["cam"]["eval_thresholds"],
            method=wildcard("method"),
        ),
        root=dataset_root,
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


OUT.add(
    "rpnet",
    "figure",
    TABLE2_PLOT,
    "RPNet Table II: CAM mIoU of the plain CAM network and RPNet against the share of training images",
    ablation=True,
)
