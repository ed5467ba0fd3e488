# DSRG (Huang et al. 2018): seed cues and training with seeded region growing (wsss/dsrg/). The networks
# share plan.seg_params with seg.smk; dsrg_retrain is a train_seg job there. The method: dsrg and its retrain;
# its ablation (Table 2): dsrg_nogrowth, the same training without growth.
DSRG = config["dsrg"]


rule dsrg_seeds:
    """DSRG Sec. 3.1: seed cues from the CAMs (foreground) and saliency or a low CAM (background)."""
    input:
        split=split_files(LABELLED),
        cams=IRNET.cams,
    output:
        seeds=directory(f"{RUN}/dsrg/seeds"),
    params:
        **stage_params(
            "dsrg_seeds",
            split=LABELLED,
            fg_rule=DSRG["fg_rule"],
            fg_fraction=DSRG["fg_fraction"],
            bg_cam=DSRG["bg_cam"],
            bg_saliency=DSRG["bg_saliency"],
            saliency_dir=DSRG["saliency_dir"],
        ),
        root=dataset_root,
    log:
        log_file("dsrg_seeds"),
    benchmark:
        bench("dsrg_seeds")
    conda:
        ENV
    shell:
        wsss("dsrg_seeds", "--root {params.root:q} --cams {input.cams:q} --out {output.seeds:q}")


rule train_dsrg:
    """DSRG Sec. 3.2-3.3: balanced seeding + constrain losses, seeds grown every iteration (or not)."""
    input:
        split=split_file(TRAIN),
        seeds=rules.dsrg_seeds.output.seeds,
        init=CAM_MODEL if SEG_FROM_CAM else [],
    output:
        model=f"{RUN}/{{dsrg}}/model.pt",
        train_log=f"{RUN}/{{dsrg}}/train_log.csv",  # written by wsss.training.fit beside the model
        supervision=f"{RUN}/{{dsrg}}/supervision.csv",
        plot=report(
            f"{RUN}/{{dsrg}}/supervision.png",
            caption="../report/supervision.rst",
            category="DSRG",
            labels={"network": "{dsrg}", "figure": "supervision (Fig. 4)"},
        ),
    wildcard_constraints:
        dsrg="dsrg|dsrg_nogrowth",
    params:
        **stage_params(
            "train_dsrg",
            **plan.seg_params(config),
            tags_from=TAGS_FROM,
            growth=lambda wc: wc.dsrg == "dsrg",
            saliency_background=DSRG["saliency_dir"] is not None,
            input=DSRG["input"],
            scale=DSRG["scale"],
            iterations=DSRG["iterations"],
            lr=DSRG["lr"],
            lr_policy="step",
            lr_step=DSRG["lr_step"],
            lr_gamma=DSRG["lr_gamma"],
            th_fg=DSRG["th_fg"],
            th_bg=DSRG["th_bg"],
            crf_scale=DSRG["crf_scale"],
            crf_log_unary=DSRG["crf_log_unary"],
        ),
        root=dataset_root,
        init=init_arg,
    threads: JOB_THREADS
    resources:
        gpu=1,
    log:
        log_file("train_dsrg_{dsrg}"),
    benchmark:
        bench("train_dsrg_{dsrg}")
    conda:
        ENV
    shell:
        wsss(
            "train_dsrg",
            "--root {params.root:q} --seeds {input.seeds:q} {params.init}"
            " --out {output.model:q} --supervision {output.supervision:q} --plot {output.plot:q}",
            gpu=True,
        )


for net, ablation in (("dsrg", False), ("dsrg_nogrowth", True)):
    OUT.add(
        "dsrg",
        "figure",
        f"{RUN}/{net}/supervision.png",
        f"DSRG Fig. 4: supervision of {net} against the ground truth per epoch (epoch 0: the seeds)",
        split=TRAIN,
        ablation=ablation,
        against_masks=True,
    )
OUT.add("dsrg", "overlay", rules.dsrg_seeds.output.seeds, "DSRG seeds", TRAIN)
OUT.add("dsrg", "overlay", f"{RUN}/dsrg/pred/{TRAIN}", "DSRG", TRAIN)
segmentation_network("dsrg", "dsrg")
segmentation_network("dsrg", "dsrg_nogrowth", ablation=True)
segmentation_network("dsrg", "dsrg_retrain")
