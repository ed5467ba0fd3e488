# PSI (Xu et al., ICCV 2021): scribble-supervised DeepLab-v3+ with contextual pattern propagation (CPP) and
# semantic label diffusion (SLD) (wsss/psi/). Table 3's rows are networks of the one stage train_psi:
# psi (CPP + SLD), psi_baseline (neither: DeepLab-v3+), psi_cpp, psi_sld, all on Eq. 11's L_seg (partial
# cross-entropy + lambda_1 L_p), so each row adds exactly its component; psi_ms is psi's model predicted
# multi-scale + flip. Single-scale rows predict without flip; no CRF (Sec. 5.2).
# `rule all` trains psi only; `snakemake psi_ablation` trains and scores the other rows, and with
# `--config ablations=True` they also go into metrics.csv and the report.
PSI = config["psi"]
PSI_NETS = {"psi": (True, True), "psi_baseline": (False, False), "psi_cpp": (True, False), "psi_sld": (False, True)}
PSI_ABLATION = ["psi_baseline", "psi_cpp", "psi_sld"]
INFER_NETS.update({net: dict(scales=[1.0], flip=False, crf=False) for net in PSI_NETS})
INFER_NETS["psi_ms"] = dict(model=f"{RUN}/psi/model.pt", scales=PSI["infer_scales"], flip=True, crf=False)


rule train_psi:
    """PSI Sec. 3-4: DeepLab-v3+ (+ CPP) on scribbles, alternating with label diffusion (+ SLD)."""
    input:
        split=split_file(TRAIN),
        init=CAM_MODEL if INIT_FROM_CAM else [],
        scribbles=[],  # the root's; cdsp.smk's train_psi_scribbles gives a dropped / shrunk set (Fig. 7)
    output:
        model=f"{RUN}/{{psi}}/model.pt",
        supervision=directory(f"{RUN}/{{psi}}/supervision"),
        scores=f"{RUN}/{{psi}}/supervision.csv",
    wildcard_constraints:
        psi="|".join(PSI_NETS),
    params:
        # as stage_params("train_psi", ...), with a set of keys that depends on the row
        code=code_version(STAGES["train_psi"]),
        json=lambda wc: shlex.quote(json.dumps(psi_values(wc))),
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
        root=dataset_root,
        **stage_params("psi_fig2", class_names=CLASSES, split=TRAIN, steps=PSI["steps"],
                       n_images=config["report"]["n_overlays"]),
    log:
        log_file("psi_fig2"),
    benchmark:
        bench("psi_fig2")
    conda:
        ENV
    shell:
        wsss("psi_fig2", "--root {params.root:q} --supervision {input.supervision:q} --out {output.png:q}")


if SCRIBBLES:
    METRIC_FILES.extend(psi_metrics(["psi", "psi_ms"] + (PSI_ABLATION if config["ablations"] else [])))
    REPORT_FIGURES.append(("PSI Fig. 2: the supervision of training images at each label-diffusion step "
                           "(t0: the scribbles; grey: unlabelled)", f"{RUN}/psi/fig2.png"))


rule psi_ablation:
    """PSI Table 3: baseline / + CPP / + SLD / both / both + multi-scale, mIoU on the evaluation split."""
    input:
        psi_metrics(PSI_ABLATION + ["psi", "psi_ms"]),
ABLATIONS.extend(rules.psi_ablation.input)
