# The pipeline's own rules (wsss/pipeline/): merging shards, the metrics table, the report. metrics.csv and the
# report show what the rule files registered (OUT) for config `methods`, with the ablation rows of the methods
# config `ablations` names (SHOWN).


if SHARDED:

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


# Without masks (your own images) nothing is scored: no metrics table, no CAM threshold sweep in the report.
METRICS_TABLE = f"{RUN}/metrics.csv" if shown("metrics") else None
SWEEP = [f"{IRNET.dir}/cam/threshold_sweep.csv"] if SCORED is None or LABEL in SCORED else []

if METRICS_TABLE:

    rule metrics:
        """One long table of every evaluation: stage, method, split, metric, class, value."""
        localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
        input:
            [e.file for e in shown("metrics")],
        output:
            table=report(METRICS_TABLE, caption="../report/metrics.rst", category="Metrics"),
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
    """The run's page: a table per stage, plots, overlay galleries, run times (wsss/pipeline/report.py);
    `snakemake --report` bundles it with the plots into one HTML file."""
    localrule: True  # cheap: runs in the Snakemake process, not as a cluster job
    input:
        split=split_file(LABEL),
        eval_split=split_file(EVAL),
        metrics_csv=METRICS_TABLE or [],
        sweep=SWEEP,
        figures=[e.file for e in shown("figure")],
        train_logs=[e.file for e in shown("train_log")],
        overlays=[e.file for e in shown("overlay")],
        tables=[e.file for e in shown("table")],
    output:
        summary=report(f"{RUN}/report/summary.html", caption="../report/summary.rst", category="Report"),
        sweep_plot=(
            [report(f"{RUN}/report/cam_threshold_sweep.png", caption="../report/sweep.rst", category="CAM")]
            if SWEEP
            else []
        ),
        loss_plot=report(f"{RUN}/report/loss_curves.png", caption="../report/losses.rst", category="Training"),
    params:
        **stage_params(
            "report",
            class_names=CLASSES,
            n_overlays=config["report"]["n_overlays"],
            shards=config["shards"],  # benchmarks of shards of another count are old runs' (not summed)
            paper_numbers=config["report"]["paper_numbers"],
            figure_captions=[e.label for e in shown("figure")],
            train_log_names=[e.label for e in shown("train_log")],
            overlay_columns=[[e.label, e.split] for e in shown("overlay")],
            table_captions=[e.label for e in shown("table")],
        ),
        root=dataset_root,
        benchmarks=f"{RUN}/benchmarks",
        config=f"{RUN}/config.yaml",  # written before any job (common.smk); not an input: no rerun for it
        scores=report_scores,  # --metrics_csv, --sweep, --sweep_plot where the run scores anything
    log:
        log_file("report"),
    benchmark:
        bench("report")
    conda:
        ENV
    shell:
        wsss(
            "report",
            "--root {params.root:q} {params.scores}"
            " --figures {input.figures:q} --train_logs {input.train_logs:q} --overlays {input.overlays:q}"
            " --tables {input.tables:q}"
            " --benchmarks {params.benchmarks:q} --summary {output.summary:q}"
            " --loss_plot {output.loss_plot:q} --config {params.config:q}",
        )
