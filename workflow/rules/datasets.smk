# Built-in data sets, generated in the PASCAL VOC 2012 / ScribbleSup formats the real loaders read
# (wsss/datasets/).
if config["dataset"]["demo"]:

    rule demo_dataset:
        """The demo data set in PASCAL VOC 2012 / ScribbleSup formats, generated from a seed.
        Class names must come from its shape families: disc, square, triangle, ring, cross, star."""
        output:
            train=split_file(TRAIN),
            val=split_file(EVAL),
        params:
            **stage_params("demo_dataset", class_names=CLASSES, **config["demo"]),
        log:
            log_file("demo_dataset"),
        benchmark:
            bench("demo_dataset")
        shell:
            WSSS + " demo_dataset --params {params.json} --root {DATA:q} > {log:q} 2>&1"


# Every split the run reads; validate_data checks them all before the first training and evaluation job.
# A stage that reads another split adds it here (one line).
VALIDATED_SPLITS = [
    TRAIN,
    EVAL,
]
DATA_CHECKED = f"{RUN}/data/validate_data.txt"


rule validate_data:
    """Ids, images, masks (size, label values) and image-level tags of every split the run reads, checked
    in seconds before anything trains on them."""
    input:
        splits=[split_file(split) for split in dict.fromkeys(VALIDATED_SPLITS)],
    output:
        report=DATA_CHECKED,
    params:
        **stage_params("validate_data", splits=list(dict.fromkeys(VALIDATED_SPLITS)), class_names=CLASSES,
                       tags_from=TAGS_FROM),
    threads: 4
    log:
        log_file("validate_data"),
    benchmark:
        bench("validate_data")
    shell:
        WSSS + " validate_data --params {params.json} --root {DATA:q} --out {output.report:q} > {log:q} 2>&1"
