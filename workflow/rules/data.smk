if config["dataset"]["demo"]:

    rule demo_dataset:
        """The demo data set in PASCAL VOC 2012 / ScribbleSup formats, generated from a seed (wsss/demo.py).
        Class names must come from its shape families: disc, square, triangle, ring, cross, star."""
        output:
            train=split_file(TRAIN),
            val=split_file(EVAL),
        params:
            code=code("demo_dataset"),
            class_names=CLASSES,
            **config["demo"],
        log:
            log_file("demo_dataset"),
        benchmark:
            bench("demo_dataset")
        run:
            wsss("demo_dataset", params, log, resources, root=DATA)
