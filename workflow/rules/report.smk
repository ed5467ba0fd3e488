rule metrics:
    """One long table of every evaluation: stage, method, split, metric, class, value."""
    input:
        METRIC_FILES,
    output:
        table=report(f"{RUN}/metrics.csv", caption="../report/metrics.rst", category="Metrics"),
    params:
        code=code("metrics"),
    log:
        f"{RUN}/logs/metrics.log",
    benchmark:
        f"{RUN}/benchmarks/metrics.tsv"
    run:
        wsss("metrics", params, log, resources, inputs=list(input), out=output.table)


rule report:
    """Summary table, plots and CAM overlays; `snakemake --report` bundles them into one HTML file."""
    input:
        split=split_file(TRAIN),
        metrics=rules.metrics.output.table,
        sweep=rules.eval_cam.output.sweep,
        cams=rules.make_cam.output.cams,
        benchmarks=expand(f"{RUN}/benchmarks/{{rule}}.tsv", rule=BENCHMARKED),
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
    log:
        f"{RUN}/logs/report.log",
    benchmark:
        f"{RUN}/benchmarks/report.tsv"
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
            benchmarks=list(input.benchmarks),
            summary=output.summary,
            sweep_plot=output.sweep_plot,
            overlays=output.overlays,
        )
