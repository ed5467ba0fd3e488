# The pipeline's own rules (wsss/pipeline/): merging shards, the metrics table, the report.


rule gather_shards:
    """Merges the shard folders of a per-image stage into one folder (config `shards`)."""
    localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
    input:
        lambda wc: gather.shard(f"{RUN}/{{folder}}.shards/{{scatteritem}}", folder=wc.folder),
    output:
        directory(f"{RUN}/{{folder}}"),
    wildcard_constraints:
        folder="|".join(SHARDED),
    params:
        **stage_params("gather_shards"),
    log:
        f"{RUN}/logs/gather_shards/{{folder}}.log",
    benchmark:
        f"{RUN}/benchmarks/gather_shards/{{folder}}.tsv"
    conda:
        ENV
    shell:
        wsss("gather_shards", "--inputs {input:q} --out {output:q}")


rule metrics:
    """One long table of every evaluation: stage, method, split, metric, class, value."""
    localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
    input:
        METRIC_FILES,
    output:
        table=report(f"{RUN}/metrics.csv", caption="../report/metrics.rst", category="Metrics"),
    params:
        **stage_params("metrics"),
    log:
        log_file("metrics"),
    benchmark:
        bench("metrics")
    conda:
        ENV
    shell:
        wsss("metrics", "--inputs {input:q} --out {output.table:q}")


rule report:
    """Summary table, plots and CAM overlays; `snakemake --report` bundles them into one HTML file."""
    localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
    input:
        split=split_file(TRAIN),
        metrics=rules.metrics.output.table,
        sweep=rules.eval_cam.output.sweep,
        cams=f"{RUN}/cam/maps",
    output:
        summary=report(f"{RUN}/report/summary.html", caption="../report/summary.rst", category="Metrics"),
        sweep_plot=report(f"{RUN}/report/cam_threshold_sweep.png", caption="../report/sweep.rst", category="CAM"),
        overlays=report(
            directory(f"{RUN}/report/overlays"),
            patterns=["{name}.png"],
            caption="../report/overlays.rst",
            category="CAM",
        ),
    params:
        root=dataset_root,
        **stage_params(
            "report",
            class_names=CLASSES,
            split=TRAIN,
            n_overlays=config["report"]["n_overlays"],
            shards=config["shards"],  # benchmarks of shards of another count are old runs' (not summed)
        ),
        benchmarks=f"{RUN}/benchmarks",
    log:
        log_file("report"),
    benchmark:
        bench("report")
    conda:
        ENV
    shell:
        wsss(
            "report",
            "--root {params.root:q} --metrics_csv {input.metrics:q} --sweep {input.sweep:q}"
            " --cams {input.cams:q} --benchmarks {params.benchmarks:q} --summary {output.summary:q} --sweep_plot {output.sweep_plot:q} --overlays {output.overlays:q}"
        )
