if config["dataset"]["demo"]:

    rule demo_dataset:
        """The demo data set in PASCAL VOC 2012 / ScribbleSup formats, generated from a seed."""
        output:
            train=split_file(TRAIN),
            val=split_file(EVAL),
        params:
            code=code("demo_dataset"),
            class_names=CLASSES,
            seed=config["demo"]["seed"],
            n_train=config["demo"]["n_train"],
            n_val=config["demo"]["n_val"],
            size=config["demo"]["size"],
        log:
            f"{RUN}/logs/demo_dataset.log",
        benchmark:
            f"{RUN}/benchmarks/demo_dataset.tsv"
        run:
            wsss("demo_dataset", params, log, resources, root=DATA)
