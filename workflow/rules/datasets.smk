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
            root=dataset_root,
            **stage_params("demo_dataset", class_names=CLASSES, **config["demo"]),
        log:
            log_file("demo_dataset"),
        benchmark:
            bench("demo_dataset")
        conda:
            ENV
        shell:
            wsss("demo_dataset", "--root {params.root:q}")
