# IRNet (Ahn et al. 2019) beyond the chain of chain.smk (which makes the relation labels, IRNet and the random-walk
# labels of every CAM method): IRNet's instance pseudo-labels (Sec. 5.1-5.2) and its boundaries scored against the
# ground truth, on the plain CAM network's chain (IRNET) (wsss/irnet/).


rule make_ins_seg_labels:
    """Sec. 5.1-5.2: displacement field -> centroids -> instance-wise CAMs, random walk; one shard."""
    input:
        split=split_file(LABEL),
        cams=IRNET.cams,
        irn_model=IRNET.irn_model,
    output:
        instances=shard_folder("irn/ins_seg"),
    params:
        **stage_params(
            "make_ins_seg_labels",
            split=LABEL,
            device=config["device"],
            shard=shard(),
            **plan.walk_params(config),
            centroid_thres=IRN["centroid_thres"],
            dp_iterations=IRN["dp_iterations"],
        ),
        root=dataset_root,
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


rule eval_ins_seg:
    """AP^r at IoU 0.5 and 0.7 of the instance pseudo-labels against SegmentationObject (Tables 1-3)."""
    localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
    input:
        split=split_file(LABEL),
        ins_seg=f"{RUN}/irn/ins_seg",
    output:
        metrics=f"{RUN}/metrics/ins_seg.csv",
    params:
        **stage_params("eval_ins_seg", class_names=CLASSES, split=LABEL),
        root=dataset_root,
    log:
        log_file("eval_ins_seg"),
    benchmark:
        bench("eval_ins_seg")
    conda:
        ENV
    shell:
        wsss("eval_ins_seg", "--root {params.root:q} --ins_seg {input.ins_seg:q} --out {output.metrics:q}")


rule eval_boundary:
    """IRNet's boundary map against the ground-truth class boundaries: precision / recall / f1 (issue 13)."""
    input:
        split=split_file(LABEL),
        cams=IRNET.cams,
        irn_model=IRNET.irn_model,
    output:
        metrics=f"{RUN}/metrics/boundary.csv",
        sweep=f"{RUN}/irn/boundary_sweep.csv",
    params:
        **stage_params("eval_boundary", split=LABEL, device=config["device"], input_scale=IRN["input_scale"]),
        root=dataset_root,
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


if config["dataset"]["instances"]:  # SegmentationObject exists (not for PASCAL-Context)
    OUT.add("irnet", "metrics", rules.eval_ins_seg.output.metrics, split=LABEL)
    OUT.add("irnet", "overlay", f"{RUN}/irn/ins_seg", "instances", LABEL)
OUT.add("irnet", "metrics", rules.eval_boundary.output.metrics, split=LABEL)
