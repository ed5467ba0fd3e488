# PSI (Xu et al., ICCV 2021): scribble-supervised DeepLab-v3+ with contextual pattern propagation (CPP) and
# semantic label diffusion (SLD) (wsss/psi/). Table 3's rows are networks of the one stage train_psi:
# psi (CPP + SLD), psi_baseline (neither; partial cross-entropy only), psi_cpp, psi_sld; psi_ms is psi's
# model predicted multi-scale + flip. Single-scale rows predict without flip; no CRF (Sec. 5.2).
# `rule all` trains psi only; `snakemake psi_ablation` trains and scores the other rows, and with
# `--config ablations=True` they also go into metrics.csv and the report.
PSI = config["psi"]
PSI_NETS = {"psi": (True, True), "psi_baseline": (False, False), "psi_cpp": (True, False), "psi_sld": (False, True)}
PSI_ABLATION = ["psi_baseline", "psi_cpp", "psi_sld"]
INFER_NETS.update({net: dict(scales=[1.0], flip=False, crf=False) for net in PSI_NETS})
INFER_NETS["psi_ms"] = dict(model=f"{RUN}/psi/model.pt", scales=PSI["infer_scales"], flip=True, crf=False)


def psi_values(wildcards):
    """train_psi's params for one row: the CPP keys only with CPP, the SLD keys only with SLD (so an SLD
    key reruns the networks that diffuse, and only those)."""
    cpp, sld = PSI_NETS[wildcards.psi]
    values = dict(
        class_names=CLASSES,
        seed=config["seed"],
        device=config["device"],
        split=TRAIN,
        backbone=config["model"]["backbone"],
        pretrained=config["model"]["pretrained"],
        **{k: PSI[k] for k in ("crop", "scale", "rotation", "batch_size", "epochs", "lr", "momentum")},
        **{k: PSI[k] for k in ("weight_decay", "head_lr_mult", "head_channels")},
        lambda_1=PSI["lambda_1"] if cpp or sld else 0.0,  # the baseline: partial cross-entropy only
        cpp=cpp,
        sld=sld,
    )
    if cpp:
        values.update({k: PSI[k] for k in ("cpp_width", "cpp_radii", "cpp_destination")})
    if sld:
        values.update({k: PSI[k] for k in ("steps", "k", "lambda_2", "sld_radius", "sld_hidden", "sld_lr")})
    return values


rule train_psi:
    """PSI Sec. 3-4: DeepLab-v3+ (+ CPP) on scribbles, alternating with label diffusion (+ SLD)."""
    input:
        split=split_file(TRAIN),
        init=CAM_MODEL if INIT_FROM_CAM else [],
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
        root=dataset_root,
    threads: 8
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
            "--root {params.root:q} {params.init} --out {output.model:q} --supervision {output.supervision:q}"
            " --scores {output.scores:q}",
            gpu=True,
        )


def psi_metrics(nets):
    return expand(f"{RUN}/metrics/seg_{{net}}.csv", net=nets)


METRIC_FILES.extend(psi_metrics(["psi", "psi_ms"] + (PSI_ABLATION if config["ablations"] else [])))


rule psi_ablation:
    """PSI Table 3: baseline / + CPP / + SLD / both / both + multi-scale, mIoU on the evaluation split."""
    input:
        psi_metrics(PSI_ABLATION + ["psi", "psi_ms"]),
ABLATIONS.extend(rules.psi_ablation.input)
