# CDSP (Zhang et al., AAAI 2024): pseudo-labels from the scribbles' classes, distance maps, and a DeepLab
# trained with L_segs + L_segc + LoRM + DEL (wsss/cdsp/). Networks live in {RUN}/<net>/ and are inferred and
# evaluated by infer_seg / eval_seg (seg.smk). The method trains `cdsp` (config cdsp.losses, on
# cdsp.pseudo_labels and the original scribbles); its ablation adds Table 2's rows, Table 3's pseudo-label
# sources and Fig. 7's dropped / shrunk scribbles (CDSP, the scribble-only baseline and PSI) and their tables.
CDSP = config["cdsp"]
ALL_LOSSES = ["segs", "segc", "lorm", "ds", "dc"]
CDSP_NETS = plan.cdsp_nets(config)
# Table 3: the main source first, then the others (no duplicates)
CDSP_TABLE3 = list(dict.fromkeys([CDSP["pseudo_labels"], *CDSP["table3_pseudo_labels"]]))
# Fig. 7's PSI curve: PSI (CPP + SLD, rules/psi.smk) on each scribble set (net -> set), predicted like `psi`
CDSP_PSI_NETS = plan.cdsp_psi_nets(config)


rule cdsp_pseudo_labels:
    """CDSP Eq. 4-6: the CAMs of the scribbles' classes, thresholded and merged into one label map."""
    input:
        split=split_file(TRAIN),
        scribble_list=SCRIBBLE_LIST,
        cams=IRNET.cams,
        scribbles=[],  # the root's; cdsp_pseudo_labels_scribbles: a Fig. 7 set's
    output:
        labels=directory(f"{RUN}/cdsp/pseudo_labels"),
    params:
        **stage_params("cdsp_pseudo_labels", class_names=CLASSES, split=TRAIN, threshold=CDSP["cam_threshold"]),
        root=dataset_root,
        scribbles=scribbles_arg,
    log:
        log_file("cdsp_pseudo_labels"),
    benchmark:
        bench("cdsp_pseudo_labels")
    conda:
        ENV
    shell:
        wsss(
            "cdsp_pseudo_labels",
            "--root {params.root:q} --cams {input.cams:q} {params.scribbles} --out {output.labels:q}",
        )


use rule cdsp_pseudo_labels as cdsp_pseudo_labels_scribbles with:
    input:
        split=split_file(TRAIN),
        scribble_list=SCRIBBLE_LIST,
        cams=IRNET.cams,
        scribbles=f"{RUN}/cdsp/scribbles/{{scribbles}}",
    output:
        labels=directory(f"{RUN}/cdsp/pseudo_labels_{{scribbles}}"),
    wildcard_constraints:
        scribbles=r"(drop|shrink)\d+",
    log:
        log_file("cdsp_pseudo_labels_{scribbles}"),
    benchmark:
        bench("cdsp_pseudo_labels_{scribbles}")


rule cdsp_scribbles:
    """Fig. 7: scribbles with each object stroke dropped (probability r) or each stroke shrunk (ratio r)."""
    input:
        split=split_file(TRAIN),
        scribble_list=SCRIBBLE_LIST,
    output:
        scribbles=directory(f"{RUN}/cdsp/scribbles/{{mode}}{{pct}}"),
    wildcard_constraints:
        mode="drop|shrink",
        pct=r"\d+",
    params:
        **stage_params(
            "cdsp_scribbles",
            class_names=CLASSES,
            split=TRAIN,
            mode=wildcard("mode"),
            ratio=lambda wc: int(wc.pct) / 100,
            seed=config["seed"],
        ),
        root=dataset_root,
    log:
        log_file("cdsp_scribbles_{mode}{pct}"),
    benchmark:
        bench("cdsp_scribbles_{mode}{pct}")
    conda:
        ENV
    shell:
        wsss(
            "cdsp_scribbles",
            "--root {params.root:q} --out {output.scribbles:q}",
        )


rule cdsp_distance_maps:
    """Eq. 14 / 16 distance maps (uint8 PNGs) of the scribbles and of the pseudo-label boundaries."""
    input:
        split=split_file(TRAIN),
        scribble_list=SCRIBBLE_LIST,
        pseudo=lambda wc: plan.pseudo_folder(config, wc.source, wc.scribbles),
        scribbles=lambda wc: scribble_folder(wc.scribbles),
    output:
        scribble=directory(f"{RUN}/cdsp/maps/{{source}}/{{scribbles}}/scribble"),
        pseudo=directory(f"{RUN}/cdsp/maps/{{source}}/{{scribbles}}/pseudo"),
    wildcard_constraints:
        source="[^/]+",
        scribbles="[^/]+",
    params:
        **stage_params(
            "cdsp_distance_maps",
            class_names=CLASSES,
            split=TRAIN,
            lambda_s=CDSP["lambda_s"],
            lambda_c=CDSP["lambda_c"],
        ),
        root=dataset_root,
        scribbles=scribbles_arg,
    log:
        log_file("cdsp_distance_maps_{source}_{scribbles}"),
    benchmark:
        bench("cdsp_distance_maps_{source}_{scribbles}")
    conda:
        ENV
    shell:
        wsss(
            "cdsp_distance_maps",
            "--root {params.root:q} --pseudo {input.pseudo:q} {params.scribbles}"
            " --out_scribble {output.scribble:q} --out_pseudo {output.pseudo:q}",
        )


rule train_cdsp:
    """CDSP Eq. 5: DeepLab trained on scribbles and pseudo-labels with LoRM and the distance entropy loss."""
    input:
        unpack(train_cdsp_input),
        split=split_file(TRAIN),
        scribble_list=SCRIBBLE_LIST,  # a real data set's scribbles, converted first (rule scribble_pngs)
    output:
        model=f"{RUN}/{{net}}/model.pt",
        train_log=f"{RUN}/{{net}}/train_log.csv",  # written by wsss.training.fit beside the model
    wildcard_constraints:
        net="|".join(CDSP_NETS),
    params:
        **stage_params(
            "train_cdsp",
            class_names=CLASSES,
            seed=config["seed"],
            device=config["device"],
            split=TRAIN,
            arch=CDSP["arch"],
            output_stride=CDSP["output_stride"],
            backbone=config["model"]["backbone"],
            pretrained=config["model"]["pretrained"],
            crop=CDSP["crop"],
            scale=CDSP["scale"],
            batch_size=CDSP["batch_size"],
            epochs=CDSP["epochs"],
            warmup_epochs=CDSP["warmup_epochs"],
            lr=CDSP["lr"],
            momentum=CDSP["momentum"],
            weight_decay=CDSP["weight_decay"],
            head_lr_mult=CDSP["head_lr_mult"],
            rotate=CDSP["rotate"],
            blur=CDSP["blur"],
            label_smoothing=CDSP["label_smoothing"],
            **plan.precise_bn_values(config, CDSP["infer_scales"]),
            checkpoint_every=CDSP["checkpoint_every"],
            losses=lambda wc: CDSP_NETS[wc.net][0],
        ),
        root=dataset_root,
        init=init_arg,
        scribbles=scribbles_arg,
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("train_cdsp_{net}"),
    benchmark:
        bench("train_cdsp_{net}")
    conda:
        ENV
    shell:
        wsss(
            "train_cdsp",
            "--root {params.root:q} --pseudo {input.pseudo:q} {params.scribbles}"
            " --dist_scribble {input.dist_scribble:q} --dist_pseudo {input.dist_pseudo:q} {params.init}"
            " --out {output.model:q}",
            gpu=True,
        )


use rule train_psi as train_psi_scribbles with:
    input:
        split=split_file(TRAIN),
        checked=DATA_CHECKED,
        scribble_list=SCRIBBLE_LIST,
        init=CAM_MODEL if SCRIBBLE_FROM_CAM else [],
        scribbles=f"{RUN}/cdsp/scribbles/{{scribbles}}",
    output:
        model=f"{RUN}/{{psi}}_{{scribbles}}/model.pt",
        train_log=f"{RUN}/{{psi}}_{{scribbles}}/train_log.csv",
        supervision=directory(f"{RUN}/{{psi}}_{{scribbles}}/supervision"),
        scores=f"{RUN}/{{psi}}_{{scribbles}}/supervision.csv",
    wildcard_constraints:
        psi="|".join(plan.PSI_NETS),
        scribbles=r"(drop|shrink)\d+",
    log:
        log_file("train_psi_{psi}_{scribbles}"),
    benchmark:
        bench("train_psi_{psi}_{scribbles}")


rule cdsp_tables:
    """CDSP Table 2 (loss terms), Table 3 (pseudo-label sources) and Fig. 7 (drop / shrink) from the metrics."""
    input:
        split=split_file(TRAIN),
        metrics=[f"{RUN}/metrics/seg_{net}.csv" for net in [*CDSP_NETS, *CDSP_PSI_NETS]],
        pseudo=[plan.pseudo_folder(config, s) for s in CDSP_TABLE3],
    output:
        table2=f"{RUN}/cdsp/table2.csv",
        table3=f"{RUN}/cdsp/table3.csv",
        fig7=f"{RUN}/cdsp/fig7.csv",
        plot=report(f"{RUN}/cdsp/fig7.png", caption="../report/cdsp_fig7.rst", category="CDSP"),
    params:
        **stage_params(
            "cdsp_tables",
            class_names=CLASSES,
            split=TRAIN,
            nets={net: dict(losses=l, source=s, scribbles=c) for net, (l, s, c) in CDSP_NETS.items()},
            main=dict(losses=CDSP["losses"], source=CDSP["pseudo_labels"]),
            psi_nets=CDSP_PSI_NETS,
            sources=CDSP_TABLE3,
            all_losses=ALL_LOSSES,
        ),
        root=dataset_root,
    log:
        log_file("cdsp_tables"),
    benchmark:
        bench("cdsp_tables")
    conda:
        ENV
    shell:
        wsss(
            "cdsp_tables",
            "--root {params.root:q} --metrics_csv {input.metrics:q} --pseudo {input.pseudo:q}"
            " --table2 {output.table2:q} --table3 {output.table3:q} --fig7 {output.fig7:q}"
            " --plot {output.plot:q}",
        )


segmentation_network("cdsp", "cdsp")
OUT.add(
    "cdsp",
    "table",
    rules.cdsp_tables.output.table2,
    f"CDSP Table 2: loss terms (1 = used), mIoU on {EVAL}",
    ablation=True,
)
OUT.add(
    "cdsp",
    "table",
    rules.cdsp_tables.output.table3,
    f"CDSP Table 3: pseudo-label sources (pseudo_miou on {TRAIN}), mIoU on {EVAL}",
    ablation=True,
)
OUT.add(
    "cdsp",
    "figure",
    rules.cdsp_tables.output.plot,
    f"CDSP Fig. 7: mIoU on {EVAL} vs scribble drop / shrink ratio (CDSP, PSI, scribble-only)",
    ablation=True,
)
