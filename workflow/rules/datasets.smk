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
            root=dataset_root,
        log:
            log_file("demo_dataset"),
        benchmark:
            bench("demo_dataset")
        conda:
            ENV
        shell:
            wsss("demo_dataset", "--root {params.root:q}")


if DEMO == "photos":

    rule photos_dataset:
        """Objects cut from real photographs (scikit-image's and matplotlib's bundled images) pasted on other
        photographs, in the same formats. Class names come from: coin, horse, logo, retina, gift."""
        output:
            train=split_file(TRAIN),
            val=split_file(EVAL),
        params:
            **stage_params("photos_dataset", class_names=CLASSES, **config["photos"]),
            root=dataset_root,
        log:
            log_file("photos_dataset"),
        benchmark:
            bench("photos_dataset")
        conda:
            ENV
        shell:
            wsss("photos_dataset", "--root {params.root:q}")


# Your own images (README "Label your own images"): a folder and a tags file, linked into a VOC layout at
# dataset.root (wsss/datasets/folder_dataset.py). The Snakefile has read the tags file already (FOLDER: the
# class names, the lists, the splits); a changed tags file or image, mask or scribble file reruns the conversion.
if FOLDER:

    rule folder_dataset:
        """Your images (a folder) and tags (CSV) -> links, Annotations XML, scribbles, ids.csv and lists at root."""
        input:
            tags=config["dataset"]["tags"],
        output:
            ids=f"{DATA}/{folder_dataset.IDS}",
            lists=[split_file(name) for name in FOLDER.lists()],
        params:
            **stage_params(
                "folder_dataset",
                class_names=CLASSES,
                seed=config["seed"],
                val_fraction=config["dataset"]["val_fraction"],
            ),
            root=dataset_root,
            images=config["dataset"]["images"],
            optional=folder_arguments,
            files=FOLDER.digest(),  # not passed on: a changed image, mask or scribble file reruns the rule
        log:
            log_file("folder_dataset"),
        benchmark:
            bench("folder_dataset")
        conda:
            ENV
        shell:
            wsss(
                "folder_dataset",
                "--images {params.images:q} --tags {input.tags:q} --root {params.root:q}" " {params.optional}",
            )


# Every split the run reads; validate_data checks them all before the first training and evaluation job.
# A stage that reads another split adds it here (one line). A folder data set: `all` holds every image.
VALIDATED_SPLITS = (
    [LABELLED]
    if FOLDER_DATASET
    else [
        TRAIN,
        LABEL,
        EVAL,
    ]
)
DATA_CHECKED = f"{RUN}/data/validate_data.txt"


rule validate_data:
    """Ids, images, masks (size, label values) and image-level tags of every split the run reads, checked
    in seconds before anything trains on them."""
    input:
        splits=[split_file(split) for split in dict.fromkeys(VALIDATED_SPLITS)],
    output:
        report=DATA_CHECKED,
    params:
        **stage_params(
            "validate_data",
            splits=list(dict.fromkeys(VALIDATED_SPLITS)),
            scored=[s for s in (LABEL, EVAL) if SCORED is None or s in SCORED],
            class_names=CLASSES,
            tags_from=TAGS_FROM,
        ),
        root=dataset_root,
    threads: JOB_THREADS
    log:
        log_file("validate_data"),
    benchmark:
        bench("validate_data")
    conda:
        ENV
    shell:
        wsss("validate_data", "--root {params.root:q} --out {output.report:q}")


# Converters of the real data sets' releases into the VOC layout at dataset.root (README "Reproducing the
# papers"). Each writes its split list last; a list already on disk means the conversion is done, and files
# already converted (or shipped, like the DeepLab SegmentationClassAug) are used as they are.
if config["dataset"]["sbd_root"]:

    rule sbd_train_aug:
        """SBD cls/*.mat -> SegmentationClassAug/*.png; train_aug = SBD train + SBD val + VOC train - VOC val."""
        input:
            voc_train=split_file("train"),
            voc_val=split_file("val"),
        output:
            split=split_file("train_aug"),
        params:
            **stage_params("sbd_train_aug", class_names=CLASSES),
            root=dataset_root,
            sbd=config["dataset"]["sbd_root"],
        log:
            log_file("sbd_train_aug"),
        benchmark:
            bench("sbd_train_aug")
        conda:
            ENV
        shell:
            wsss("sbd_train_aug", "--root {params.root:q} --sbd {params.sbd:q} --out {output.split:q}")


if config["dataset"]["scribbles"]:

    rule scribble_pngs:
        """ScribbleSup scribble_annotation/pascal_2012/*.xml -> pascal_2012_scribble/*.png and list `scribble`."""
        input:
            split_files(LABELLED),  # the images are in place (a converted root's links)
        output:
            split=split_file("scribble"),
        params:
            **stage_params("scribble_pngs", class_names=CLASSES),
            root=dataset_root,
        log:
            log_file("scribble_pngs"),
        benchmark:
            bench("scribble_pngs")
        conda:
            ENV
        shell:
            wsss("scribble_pngs", "--root {params.root:q} --out {output.split:q}")


if config["dataset"]["context_root"]:

    rule context_dataset:
        """PASCAL-Context (59 classes + background) on VOC2010's images -> VOC layout, lists train and val."""
        output:
            train=split_file("train"),
            val=split_file("val"),
        params:
            **stage_params("context_dataset", class_names=CLASSES),
            root=dataset_root,
            context=config["dataset"]["context_root"],
            voc2010=config["dataset"]["voc2010_root"] or "VOC2010 root not set (dataset.voc2010_root)",
        log:
            log_file("context_dataset"),
        benchmark:
            bench("context_dataset")
        conda:
            ENV
        shell:
            wsss(
                "context_dataset",
                "--context {params.context:q} --voc2010 {params.voc2010:q} --root {params.root:q}"
                " --train {output.train:q} --val {output.val:q}",
            )


if config["dataset"]["coco_root"]:

    rule coco_dataset:
        """COCO 2014 instances json -> VOC layout (80 classes 1..80, crowd void, instance masks), list <split>."""
        output:
            split=split_file("{coco_split}"),
        wildcard_constraints:
            coco_split="train2014|val2014",
        params:
            **stage_params("coco_dataset", class_names=CLASSES),
            root=dataset_root,
            annotations=lambda wc: f"{config['dataset']['coco_root']}/annotations/instances_{wc.coco_split}.json",
            images=lambda wc: f"{config['dataset']['coco_root']}/{wc.coco_split}",
        log:
            log_file("coco_dataset_{coco_split}"),
        benchmark:
            bench("coco_dataset_{coco_split}")
        conda:
            ENV
        shell:
            wsss(
                "coco_dataset",
                "--annotations {params.annotations:q} --images {params.images:q} --root {params.root:q}"
                " --out {output.split:q}",
            )


# Your own images (dataset.images, rule folder_dataset): what a user takes away from each method. Its pseudo-labels
# of every image in the tree of the images folder, {run_dir}/labels/<method>/<path>.png, and as COCO JSON,
# {run_dir}/labels/<method>.json (wsss/datasets/export_labels.py; which labels: wsss.pipeline.plan.pseudo_labels),
# and its segmentation network for `wsss predict` (plan.SEGMENTERS), all in the method's target and the default one.
LABELLED_METHODS = [cam_chain.method for cam_chain in CHAINS] + ["dsrg", "psi", "cdsp"]

if FOLDER_DATASET:

    rule export_labels:
        """A method's pseudo-labels of every image as PNGs in the images folder's tree and as COCO JSON."""
        input:
            split=split_file(LABELLED),
            ids=f"{DATA}/{folder_dataset.IDS}",
            labels=lambda wc: plan.pseudo_labels(config, wc.method),
        output:
            labels=directory(f"{RUN}/labels/{{method}}"),
            coco=f"{RUN}/labels/{{method}}.json",
        wildcard_constraints:
            method="|".join(LABELLED_METHODS),
        params:
            **stage_params("export_labels", class_names=CLASSES, split=LABELLED),
            root=dataset_root,
        log:
            log_file("export_labels_{method}"),
        benchmark:
            bench("export_labels_{method}")
        conda:
            ENV
        shell:
            wsss(
                "export_labels",
                "--root {params.root:q} --labels {input.labels:q} --out {output.labels:q} --coco {output.coco:q}",
            )

    for method in LABELLED_METHODS:
        OUT.add(method, "export", f"{RUN}/labels/{method}")
        OUT.add(method, "export", f"{RUN}/labels/{method}.json")
        OUT.add(method, "export", f"{RUN}/{plan.SEGMENTERS[method]}/model.pt")
