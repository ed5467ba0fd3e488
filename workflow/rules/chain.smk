# IRNet's chain from a CAM network to a segmentation network, defined once and made for each CAM method of
# config cam.methods (wsss/pipeline/plan.py Chain): the CAM network (IRNet Sec. 3; RPNet's with method rpnet,
# settings in cam.rpnet), its CAMs and their threshold sweep, the relation labels and IRNet (Sec. 4), the
# random-walk labels (Sec. 5), then a DeepLab on them (seg.smk's train_seg, infer_seg, eval_seg as seg_<method>).
# irnet's files are in the run folder and its rules named as the stages (train_cam, ...); another method's are
# in {run_dir}/<method>/ with rules <method>_train_cam, ... (RPNet Table I: Base + BR vs Base + RPNet + BR).
# A new CAM method: its network in wsss/ (train_cam's `method`), its settings as cam.<method> in the schema.
# IRNet's own further outputs (instances, boundaries) are in irnet.smk.
IRN = config["irn"]

for cam_chain in CHAINS:

    rule:
        name:
            cam_chain.rule("train_cam")
        input:
            split=split_file(TRAIN),
            checked=DATA_CHECKED,  # validate_data: nothing trains on bad data
        output:
            model=cam_chain.cam_model,
            train_log=f"{cam_chain.dir}/cam/train_log.csv",  # written by wsss.training.fit beside the model
        params:
            **stage_params("train_cam", **plan.train_cam_values(config, cam_chain.method)),
            root=dataset_root,
        threads: JOB_THREADS
        resources:
            gpu=1,
        log:
            log_file(cam_chain.rule("train_cam")),
        benchmark:
            bench(cam_chain.rule("train_cam"))
        conda:
            ENV
        shell:
            wsss("train_cam", "--root {params.root:q} --out {output.model:q}", gpu=True)

    rule:
        name:
            cam_chain.rule("make_cam")
        input:
            split=split_files(LABELLED),
            model=cam_chain.cam_model,
        output:
            cams=shard_folder(f"{cam_chain.sub}cam/maps"),
        params:
            **stage_params(
                "make_cam",
                class_names=CLASSES,
                tags_from=TAGS_FROM,
                device=config["device"],
                split=LABELLED,
                scales=config["cam"]["scales"],
                shard=shard(),
            ),
            root=dataset_root,
        threads: JOB_THREADS
        resources:
            gpu=1,
        log:
            log_file(cam_chain.rule("make_cam"), sharded=True),
        benchmark:
            bench(cam_chain.rule("make_cam"), sharded=True)
        conda:
            ENV
        shell:
            wsss("make_cam", "--root {params.root:q} --model {input.model:q} --out {output.cams:q}", gpu=True)

    rule:
        name:
            cam_chain.rule("eval_cam")
        localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
        input:
            split=split_file(LABEL),
            checked=DATA_CHECKED,
            cams=cam_chain.cams,
        output:
            metrics=f"{cam_chain.dir}/metrics/eval_cam.csv",
            sweep=f"{cam_chain.dir}/cam/threshold_sweep.csv",
        params:
            **stage_params(
                "eval_cam",
                class_names=CLASSES,
                split=LABEL,
                thresholds=config["cam"]["eval_thresholds"],
                method=cam_chain.cam_row,
            ),
            root=dataset_root,
        log:
            log_file(cam_chain.rule("eval_cam")),
        benchmark:
            bench(cam_chain.rule("eval_cam"))
        conda:
            ENV
        shell:
            wsss(
                "eval_cam",
                "--root {params.root:q} --cams {input.cams:q} --metrics {output.metrics:q} --sweep {output.sweep:q}",
            )

    rule:
        name:
            cam_chain.rule("cam_to_ir_label")
        input:
            split=split_files(LABELLED),
            cams=cam_chain.cams,
        output:
            labels=shard_folder(f"{cam_chain.sub}irn/ir_label"),
        params:
            **stage_params(
                "cam_to_ir_label",
                split=LABELLED,
                shard=shard(),
                **{k: IRN[k] for k in ("conf_fg_thres", "conf_bg_thres", "crf_gt_prob", "crf_gauss_sxy")},
                **{k: IRN[k] for k in ("crf_gauss_compat", "crf_bi_sxy", "crf_bi_srgb", "crf_bi_compat")},
                crf_iterations=IRN["crf_iterations"],
            ),
            root=dataset_root,
        threads: JOB_THREADS
        log:
            log_file(cam_chain.rule("cam_to_ir_label"), sharded=True),
        benchmark:
            bench(cam_chain.rule("cam_to_ir_label"), sharded=True)
        conda:
            ENV
        shell:
            wsss("cam_to_ir_label", "--root {params.root:q} --cams {input.cams:q} --out {output.labels:q}")

    rule:
        name:
            cam_chain.rule("train_irn")
        input:
            split=split_file(TRAIN),
            ir_labels=f"{cam_chain.dir}/irn/ir_label",
            cam_model=cam_chain.cam_model,
        output:
            model=cam_chain.irn_model,
            train_log=f"{cam_chain.dir}/irn/train_log.csv",  # written by wsss.training.fit beside the model
        params:
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
            root=dataset_root,
        threads: JOB_THREADS
        resources:
            gpu=1,
        log:
            log_file(cam_chain.rule("train_irn")),
        benchmark:
            bench(cam_chain.rule("train_irn"))
        conda:
            ENV
        shell:
            wsss(
                "train_irn",
                "--root {params.root:q} --ir_labels {input.ir_labels:q}"
                " --cam_model {input.cam_model:q} --out {output.model:q}",
                gpu=True,
            )

    rule:
        name:
            cam_chain.rule("make_sem_seg_labels")
        input:
            split=split_files(LABELLED),
            cams=cam_chain.cams,
            irn_model=cam_chain.irn_model,
        output:
            labels=shard_folder(f"{cam_chain.sub}irn/sem_seg"),
        params:
            **stage_params(
                "make_sem_seg_labels",
                split=LABELLED,
                device=config["device"],
                shard=shard(),
                **plan.walk_params(config),
                background=IRN["rw_background"],
                bg_power=IRN["rw_bg_power"],
            ),
            root=dataset_root,
        threads: JOB_THREADS
        resources:
            gpu=1,
        log:
            log_file(cam_chain.rule("make_sem_seg_labels"), sharded=True),
        benchmark:
            bench(cam_chain.rule("make_sem_seg_labels"), sharded=True)
        conda:
            ENV
        shell:
            wsss(
                "make_sem_seg_labels",
                "--root {params.root:q} --cams {input.cams:q}"
                " --irn_model {input.irn_model:q} --out {output.labels:q}",
                gpu=True,
            )

    rule:
        name:
            cam_chain.rule("eval_sem_seg")
        localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
        input:
            split=split_file(LABEL),
            labels=f"{cam_chain.dir}/irn/{{labels}}",
        output:
            metrics=f"{cam_chain.dir}/metrics/{{labels}}.csv",
        wildcard_constraints:
            labels="ir_label|sem_seg",
        params:
            **stage_params(
                "eval_sem_seg",
                class_names=CLASSES,
                split=LABEL,
                stage=wildcard("labels"),
                method=cam_chain.labels_method,
            ),
            root=dataset_root,
        log:
            log_file(cam_chain.rule("eval_sem_seg_{labels}")),
        benchmark:
            bench(cam_chain.rule("eval_sem_seg_{labels}"))
        conda:
            ENV
        shell:
            wsss("eval_sem_seg", "--root {params.root:q} --labels {input.labels:q} --out {output.metrics:q}")

    # metrics.csv, the report and the method's target (its segmentation network: seg.smk)
    OUT.add(cam_chain.method, "metrics", f"{cam_chain.dir}/metrics/eval_cam.csv", split=LABEL)
    for labels in cam_chain.scored_labels:
        OUT.add(cam_chain.method, "metrics", f"{cam_chain.dir}/metrics/{labels}.csv", split=LABEL)
    OUT.add(cam_chain.method, "train_log", f"{cam_chain.dir}/cam/train_log.csv", f"{cam_chain.sub}cam")
    OUT.add(cam_chain.method, "train_log", f"{cam_chain.dir}/irn/train_log.csv", f"{cam_chain.sub}irn")
    OUT.add(cam_chain.method, "overlay", cam_chain.cams, f"{cam_chain.sub}CAM", TRAIN)
    if cam_chain.base:
        OUT.add(cam_chain.method, "overlay", f"{cam_chain.dir}/irn/ir_label", "IR labels", LABEL)
    OUT.add(cam_chain.method, "overlay", cam_chain.sem_seg, f"{cam_chain.sub}random walk", LABEL)
