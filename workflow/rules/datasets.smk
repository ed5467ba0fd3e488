# Built-in data sets, generated in the PASCAL VOC 2012 / ScribbleSup formats the real loaders read
# (wsss/datasets/). dataset.demo: true or shapes -> the shapes demo, photos -> real photographs.
DEMO = {True: "shapes", False: None}.get(config["dataset"]["demo"], config["dataset"]["demo"])

if DEMO == "shapes":

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


if DEMO == "photos":

    rule photos_dataset:
        """Objects cut from real photographs (scikit-image's and matplotlib's bundled images) pasted on other
        photographs, in the same formats. Class names come from: coin, horse, logo, retina, gift."""
        output:
            train=split_file(TRAIN),
            val=split_file(EVAL),
        params:
            **stage_params("photos_dataset", class_names=CLASSES, **config["photos"]),
        log:
            log_file("photos_dataset"),
        benchmark:
            bench("photos_dataset")
        shell:
            WSSS + " photos_dataset --params {params.json} --root {DATA:q} > {log:q} 2>&1"
