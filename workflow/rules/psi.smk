# PSI (Xu et al., ICCV 2021): scribble-supervised DeepLab-v3+ with contextual pattern propagation (CPP) and
# semantic label diffusion (SLD) (wsss/psi/). Table 3's rows are networks of the one stage train_psi
# (plan.PSI_NETS): psi (CPP + SLD; the method), psi_baseline (neither: DeepLab-v3+), psi_cpp, psi_sld (its
# ablation), all on Eq. 11's L_seg (partial cross-entropy + lambda_1 L_p), so each row adds exactly its
# component; psi_ms is psi's model predicted multi-scale + flip. Single-scale rows predict without flip; no CRF
# (Sec. 5.2; plan.infer_nets).
PSI = config["psi"]


rule train_psi:
    """PSI Sec. 3-4: DeepLab-v3+ (+ CPP) on scribbles, alternating with label diffusion (+ SLD)."""
    input:
        split=split_file(TRAIN),
        checked=DATA_CHECKED,  # validate_data: nothing trains on bad data
        scribble_list=SCRIBBLE_LIST,  # a real data set's scribbles, converted first (rule scribble_pngs)
        init=CAM_MODEL if SCRIBBLE_FROM_CAM else [],
        scribbles=[],  # the root's; cdsp.smk's train_psi_scribbles gives a dropped / shrunk set (Fig. 7)
    output:
        model=f"{RUN}/{{psi}}/model.pt",
        train_log=f"{RUN}/{{psi}}/train_log.csv",  # written by wsss.training.fit beside the model
        supervision=directory(f"{RUN}/{{psi}}/supervision"),
        scores=f"{RUN}/{{psi}}/supervision.csv",
    wildcard_constraints:
        psi="|".join(plan.PSI_NETS),
    params:
        # as stage_params("train_psi", ...), with a set of keys that depends on the row
        code=code_version(STAGES["train_psi"]),
        json=lambda wc: shlex.quote(json.dumps(plan.psi_values(config, wc.psi))),
        init=init_arg,
        scribbles=scribbles_arg,
        root=dataset_root,
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("train_psi_{psi}"),
    benchmark:
        bench("train_psi_{psi}")
    conda:
        ENV
    shell:
        wsss(
            "train_psi",
            "--root {params.root:q} {params.init} {params.scribbles} --out {output.model:q}"
            " --supervision {output.supervision:q} --scores {output.scores:q}",
            gpu=True,
        )


rule psi_fig2:
    """PSI Fig. 2: the supervision of the first training images at t = 0 .. steps, over the images."""
    input:
        split=split_file(TRAIN),
        supervision=f"{RUN}/psi/supervision",
    output:
        png=f"{RUN}/psi/fig2.png",
    params:
        **stage_params(
            "psi_fig2",
            class_names=CLASSES,
            split=TRAIN,
            steps=PSI["steps"],
            n_images=config["report"]["n_overlays"],
        ),
        root=dataset_root,
    log:
        log_file("psi_fig2"),
    benchmark:
        bench("psi_fig2")
    conda:
        ENV
    shell:
        wsss("psi_fig2", "--root {params.root:q} --supervision {input.supervision:q} --out {output.png:q}")


segmentation_network("psi", "psi")
segmentation_network("psi", "psi_ms", train_log=False)  # psi's model
for net in plan.PSI_ABLATION:
    segmentation_network("psi", net, ablation=True)
OUT.add(
    "psi",
    "figure",
    rules.psi_fig2.output.png,
    "PSI Fig. 2: the supervision of training images at each label-diffusion step (t0: the scribbles; grey: unlabelled)",
)
