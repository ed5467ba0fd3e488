# The papers' central claims side by side (wsss/orderings/): `snakemake orderings`, not in the default target
# unless orderings.report is true. Per (backbone, seed) of config `orderings` a whole run with the claims'
# ablation rows under {RUN}/orderings/<backbone>_s<seed>/ (a nested Snakemake: wsss/orderings/orderings_run.py says
# why), then the claims table over the seeds: {RUN}/orderings/claims.csv (on the report page with orderings.report) and .md.
from wsss.orderings import claim_targets, nested_config, workflow_version

ORDERINGS = f"{RUN}/orderings"
ORDERING_RUNS = [
    (b, s)
    for b in config["orderings"]["backbones"] or [config["model"]["backbone"]]
    for s in config["orderings"]["seeds"]
]
for backbone, seed in ORDERING_RUNS:  # a backbone without weights to give it: an error naming the key, now
    nested_config(config, backbone, seed, RUN)


rule orderings_run:
    """One (backbone, seed): the whole pipeline with the claims' ablation rows, in its own run_dir (a nested Snakemake)."""
    localrule: True  # the nested Snakemake schedules the run's jobs itself
    input:
        data=[split_file(split) for split in dict.fromkeys(VALIDATED_SPLITS)],  # the data set, made once, here
    output:
        config_file=f"{ORDERINGS}/runs/{{backbone}}_s{{seed}}.yaml",
        metrics=f"{ORDERINGS}/runs/{{backbone}}_s{{seed}}.csv",
    wildcard_constraints:
        backbone="[a-z0-9_]+",
        seed=r"\d+",
    params:
        **stage_params(
            "orderings_run",
            config=lambda wc: nested_config(
                config, wc.backbone, int(wc.seed), f"{ORDERINGS}/{wc.backbone}_s{wc.seed}"
            ),
            targets=lambda wc: claim_targets(f"{ORDERINGS}/{wc.backbone}_s{wc.seed}", config["methods"]),
        ),
        workflow=workflow_version(),  # any code or rule change calls the run again; it reruns what is stale
    threads: max(1, 2 * JOB_THREADS)  # every core (JOB_THREADS is half of them): one run at a time
    log:
        log_file("orderings_run/{backbone}_s{seed}"),
    benchmark:
        bench("orderings_run/{backbone}_s{seed}")
    conda:
        ENV
    shell:
        wsss("orderings_run", "--data {input.data:q} --config_file {output.config_file:q} --metrics {output.metrics:q}")


rule orderings_table:
    """The claims over the runs: mean and spread over seeds, the paper's numbers, holds / fails."""
    localrule: True
    input:
        metrics=[f"{ORDERINGS}/runs/{b}_s{s}.csv" for b, s in ORDERING_RUNS],
    output:
        table=f"{ORDERINGS}/claims.csv",
        markdown=f"{ORDERINGS}/claims.md",
    params:
        **stage_params("orderings_table", runs=[[b, s] for b, s in ORDERING_RUNS], label_split=LABEL, eval_split=EVAL),
    log:
        log_file("orderings_table"),
    benchmark:
        bench("orderings_table")
    conda:
        ENV
    shell:
        wsss("orderings_table", "--metrics_csv {input.metrics:q} --out {output.table:q} --markdown {output.markdown:q}")


rule orderings:
    """Target: the claims table (heavy: a whole run per backbone and seed with the ablation rows its claims compare)."""
    input:
        rules.orderings_table.output,


if config["orderings"]["report"]:
    OUT.add(
        None,
        "table",
        rules.orderings_table.output.table,
        f"The papers' claims over seeds {config['orderings']['seeds']} (percent; paper: VOC 2012)",
    )
