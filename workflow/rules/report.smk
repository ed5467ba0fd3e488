rule gather_shards:
    """Merges the shard folders of a per-image stage into one folder (config `shards`)."""
    input:
        lambda wc: gather.shard(f"{RUN}/{{folder}}.shards/{{scatteritem}}", folder=wc.folder),
    output:
        directory(f"{RUN}/{{folder}}"),
    wildcard_constraints:
        folder="|".join(SHARDED),
    params:
        code=code("gather"),
    log:
        f"{RUN}/logs/gather_shards/{{folder}}.log",
    benchmark:
        f"{RUN}/benchmarks/gather_shards/{{folder}}.tsv"
    run:
        wsss("gather", params, log, resources, inputs=list(input), out=output[0])


rule metrics:
    """One long table of every evaluation: stage, method, split, metric, class, value."""
    input:
        METRIC_FILES,
    output:
        table=report(f"{RUN}/metrics.csv", caption="../report/metrics.rst", category="Metrics"),
    params:
        code=code("metrics"),
    log:
        log_file("metrics"),
    benchmark:
        bench("metrics")
    run:
        wsss("metrics", params, log, resources, inputs=list(input), out=output.table)


rule report:
    """Summary table, plots and CAM overlays; `snakemake --report` bundles them into one HTML file."""
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
        code=code("report"),
        class_names=CLASSES,
        split=TRAIN,
        n_overlays=config["report"]["n_overlays"],
        shards=config["shards"],  # benchmarks of shards of another count are old runs' (not summed)
    log:
        log_file("report"),
    benchmark:
        bench("report")
    run:
        wsss(
            "report",
            params,
            log,
            resources,
            root=DATA,
            metrics_csv=input.metrics,
            sweep=input.sweep,
            cams=input.cams,
            benchmarks=f"{RUN}/benchmarks",
            summary=output.summary,
            sweep_plot=output.sweep_plot,
            overlays=output.overlays,
        )
