"""Cost as the work grows: `python -m wsss.pipeline.bench_scaling [--sides 128 256 512] [--quick] [--device cpu]`
(or `python -m wsss.bench --only scaling`).

Runs the real stages and trainers, with the paper presets' networks (ResNet-50 for CAMs, RPNet and IRNet,
ResNet-101 DeepLab-v2 / DeepLabV3+ for the segmentation networks) and settings (scales, CRFs, 256 walk steps),
on a generated VOC-format data set of square images of each side, in one thread, and prints for each:
- the CPU seconds per image (a per-image stage: its run over 2 images minus its run over 1, so loading the
  model and compiling drop out; a trainer: two epochs over the 2 images minus one epoch, per image, at
  batch 1 (PSI: 2, its image-pooling BatchNorm needs it)) at every side. CPU time, not wall time: on a
  machine shared with other work it still measures the work (one core's seconds);
- the exponent k of a least-squares fit seconds = a * side^k (k = 2: linear in the pixels);
- the forward multiply-adds of its network at the largest side (torch.utils.flop_counter, 2 FLOPs each).
Then extrapolates to each paper preset (config/voc12.yaml, voc12_scribble.yaml: 10,582 train_aug images;
context.yaml, coco.yaml): core-hours of this CPU from the fits, and GPU hours from the counted FLOPs at an
assumed sustained rate (GPU_TFLOPS), the CPU-only parts (dense CRFs) kept as CPU hours. Results:
docs/benchmarks.md.
"""
import argparse
import contextlib
import math
import os
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

RUN_BY_DEFAULT = False  # tens of minutes on a 2-core CPU: `python -m wsss.bench --only scaling`

GPU_TFLOPS = 40.0  # assumed sustained rate of one A100-class GPU on these convnets (mixed precision, ~1/8 of peak)
VOC_SIDE = math.sqrt(500 * 375)  # a typical VOC image, as one square side (per-image stages)
TRAIN_AUG = 10582
VOC_VAL = 1449
CONTEXT_TRAIN, CONTEXT_VAL = 4998, 5105  # config/context.yaml: VOC 2010's images, so VOC_SIDE
COCO_TRAIN, COCO_VAL = 82081, 40137  # config/coco.yaml: the images with objects
COCO_SIDE = math.sqrt(640 * 480)  # a typical COCO image
N_IMAGES = 2  # per side; the per-image figure is (N images - 1 image) / (N - 1)
CLASSES = ["background", "disc", "square", "triangle", "ring", "cross"]


def _cpu(fn) -> float:
    """CPU seconds of this process while fn() runs: on a machine shared with other work, wall time measures
    the scheduler; CPU time measures the work (one thread here, so also the wall time of a quiet core)."""
    started = time.process_time()
    fn()
    return time.process_time() - started


def _per_image(stage, work: Path) -> float:
    """Seconds per image of a per-image stage: its run over the `train` split (2 images) minus its run over
    the `one` split (1 image), so loading the model and compiling drop out."""
    one = _cpu(lambda: stage("one", work / "one"))
    return (_cpu(lambda: stage("train", work / "many")) - one) / (N_IMAGES - 1)


def _per_trained_image(train, work: Path) -> float:
    """Seconds per training image of a trainer: train(1, out) runs one epoch over the 2 images, train(3, out)
    three; the difference is two epochs' steps, without the building, loading and first-step warm-up."""
    one = _cpu(lambda: train(1, work / "one.pt"))
    return (_cpu(lambda: train(3, work / "three.pt")) - one) / (2 * N_IMAGES)


def _best(fn, repeats=3) -> float:
    fn()  # compiled, cached
    return min(_cpu(fn) for _ in range(repeats))


def forward_flops(net, x) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops()


def measure_side(side: int, work: Path, device: str) -> dict[str, float]:
    """{stage or trainer: CPU seconds per image} at one image side."""
    from kernels import region_grow
    from kernels.bench.region_grow import random_inputs as grow_inputs
    from wsss.cam import make_cam, train_cam
    from wsss.cdsp import cdsp_distance_maps, distance, train_cdsp
    from wsss.datasets import demo_dataset, voc
    from wsss.dsrg import train_dsrg
    from wsss.irnet import cam_to_ir_label, make_ins_seg_labels, make_sem_seg_labels, train_irn
    from wsss.irnet import net as irn_net
    from wsss.psi import train_psi
    from wsss.seg import infer_seg, train_seg

    root = work / "voc"
    demo_dataset.run(dict(seed=side, n_train=N_IMAGES, n_val=1, size=side), root=root)
    image_id = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    (root / "ImageSets" / "Segmentation" / "one.txt").write_text(image_id + "\n")
    masks = root / "SegmentationClass"  # stand-ins for pseudo-labels and seeds: same format, same cost
    base = dict(seed=0, device=device, class_names=CLASSES, pretrained=None, num_workers=0, batch_size=1,
                weight_decay=0.0001, split="train", crop=side, checkpoint_every=10 ** 6)
    cam = {**base, "backbone": "resnet50", "tags_from": "masks", "resize_long": [side, side], "lr": 0.1}
    seg = {**base, "arch": "deeplab_v2", "backbone": "resnet101", "lr": 0.001, "momentum": 0.9, "head_lr_mult": 10}
    walk = dict(radius=5, beta=10, steps=256, bg_thres=0.25, input_scale=1.0, device=device)
    t = {}
    # the label stages use the networks of the trainers' three-epoch runs
    cam_model, irn_model, seg_model = (work / name / "three.pt" for name in ("train_cam", "train_irn", "train_seg"))
    t["train_cam"] = _per_trained_image(lambda n, o: train_cam.run({**cam, "epochs": n}, root=root, out=o),
                                        work / "train_cam")
    t["train_cam (RPNet)"] = _per_trained_image(lambda n, o: train_cam.run(
        {**cam, "epochs": n, "method": "rpnet", "neck_channels": 512}, root=root, out=o), work / "rpnet")
    t["make_cam"] = _per_image(lambda split, o: make_cam.run(
        dict(class_names=CLASSES, tags_from="masks", split=split, device=device, scales=[1.0, 0.5, 1.5, 2.0]),
        root=root, model=cam_model, out=o), work / "cams")
    cams = work / "cams" / "many"
    t["cam_to_ir_label"] = _per_image(lambda split, o: cam_to_ir_label.run(
        dict(split=split, num_workers=0), root=root, cams=cams, out=o), work / "ir")
    irn = {**base, "backbone": "resnet50", "lr": 0.01, "irn_backbone": "cam", "scale": [1.0, 1.0],
           "input_scale": 1.0, "momentum": 0.0, "radius": 10}
    t["train_irn"] = _per_trained_image(lambda n, o: train_irn.run(
        {**irn, "epochs": n}, root=root, ir_labels=masks, cam_model=cam_model, out=o), work / "train_irn")
    t["make_sem_seg_labels"] = _per_image(lambda split, o: make_sem_seg_labels.run(
        dict(walk, split=split), root=root, cams=cams, irn_model=irn_model, out=o), work / "sem")
    g = torch.Generator().manual_seed(0)
    grid = -(-side // 4)
    scores, boundary = torch.rand(3, grid, grid, generator=g), torch.rand(grid, grid, generator=g) ** 4
    t["random walk (in make_sem_seg_labels)"] = _best(lambda: irn_net.propagate(
        scores, boundary, (side, side), (side, side), 10, 256, 5))
    t["make_ins_seg_labels"] = _per_image(lambda split, o: make_ins_seg_labels.run(
        dict(walk, split=split, dp_iterations=100, centroid_thres=2.5), root=root, cams=cams, irn_model=irn_model,
        out=o), work / "ins")
    seg_run = {**seg, "scale": [1.0, 1.0]}
    t["train_seg"] = _per_trained_image(lambda n, o: train_seg.run(
        {**seg_run, "iterations": n * N_IMAGES}, root=root, labels=masks, out=o), work / "train_seg")
    t["infer_seg"] = _per_image(lambda split, o: infer_seg.run(
        dict(split=split, device=device, scales=[0.75, 1.0, 1.25], flip=True, crf=True), root=root,
        model=seg_model, out=o), work / "pred")
    t["train_dsrg"] = _per_trained_image(lambda n, o: train_dsrg.run(
        {**seg, "tags_from": "masks", "iterations": n * N_IMAGES}, root=root, seeds=masks, out=o,
        supervision=o.with_suffix(".csv"), plot=o.with_suffix(".png")), work / "train_dsrg")
    grown = grow_inputs(1, 21, -(-side // 8), -(-side // 8), 3, g)  # DSRG's output grid (41 x 41 at 321 px)
    t["DSRG growing step (region_grow, 21 classes)"] = _best(lambda: region_grow(*grown), 5)
    scribble = voc.load_scribble(voc.scribble_files(root, [image_id])[0], len(CLASSES))
    mask = voc.load_mask(masks / f"{image_id}.png", len(CLASSES), scribble.shape)
    t["cdsp_distance_maps"] = _best(lambda: (distance.scribble_map(scribble, 1.0), distance.pseudo_map(mask, 6.0)), 5)
    maps = dict(dist_scribble=work / "ds", dist_pseudo=work / "dp")
    cdsp_distance_maps.run(dict(class_names=CLASSES, split="train"), root=root, pseudo=masks,
                           out_scribble=maps["dist_scribble"], out_pseudo=maps["dist_pseudo"])
    t["train_cdsp"] = _per_trained_image(lambda n, o: train_cdsp.run(
        {**seg, "epochs": n, "warmup_epochs": 0}, root=root, pseudo=masks, out=o, **maps), work / "train_cdsp")
    psi = {**base, "batch_size": 2, "backbone": "resnet101", "scale": [1.0, 1.0], "sld": False, "lr": 0.001}
    t["train_psi"] = _per_trained_image(lambda n, o: train_psi.run(
        {**psi, "epochs": n}, root=root, out=o, supervision=o.with_suffix(".sup"), scores=o.with_suffix(".scores")),
        work / "train_psi")
    return t


def network_flops(side: int) -> dict[str, float]:
    """Forward FLOPs of each network on one side x side image (2 per multiply-add)."""
    from wsss.cam import net as cam_net
    from wsss.irnet import net as irn_net
    from wsss.psi import net as psi_net
    from wsss.models import deeplab
    x = torch.zeros(1, 3, side, side)
    names = CLASSES
    nets = {
        "CAM network (ResNet-50)": cam_net.build(dict(backbone="resnet50", class_names=names, pretrained=None)),
        "RPNet (ResNet-50, image + 1 reference)": None,
        "IRNet (ResNet-50, image + mirror)": irn_net.build("resnet50"),
        "DeepLab-v2 (ResNet-101)": deeplab.build(dict(arch="deeplab_v2", backbone="resnet101", class_names=names,
                                                     pretrained=None)),
        "DeepLabV3+ with CPP (ResNet-101, PSI)": psi_net.build(dict(backbone="resnet101", class_names=names)),
    }
    flops = {}
    for name, net in nets.items():
        if net is None:  # RPNet's backbone runs on the image and its reference: twice the CAM network's
            flops[name] = 2 * flops["CAM network (ResNet-50)"]
            continue
        net.eval()
        flops[name] = forward_flops(net, torch.cat([x, x]) if name.startswith("IRNet") else x)
    return flops


def fit_exponent(sides, seconds) -> tuple[float, float]:
    """(a, k) of the least-squares line log t = log a + k log side, over the positive measurements (a
    difference of two runs can come out <= 0 when the work is below the noise); NaN with fewer than two."""
    sides, seconds = np.asarray(sides, float), np.asarray(seconds, float)
    keep = seconds > 0
    if keep.sum() < 2:
        return float("nan"), float("nan")
    k, log_a = np.polyfit(np.log(sides[keep]), np.log(seconds[keep]), 1)
    return math.exp(log_a), k


# What each paper preset runs, per stage: (images, passes per image, side, network whose FLOPs it spends,
# FLOPs factor). Training: 3x a forward pass; the preset's batch and iterations give images x passes.
# Numbers: config/*.yaml and the schema's defaults (the README's tables).
MULTI_SCALE = (1 + 0.25 + 2.25 + 4) * 2  # make_cam: scales 1, 0.5, 1.5, 2 (their pixels), with flip
INFER_SCALES = (0.5625 + 1 + 1.5625) * 2  # infer_seg: 0.75, 1, 1.25, with flip


def _tag_chains(train: int, val: int, side: float) -> list[tuple]:
    """IRNet's and RPNet's chains (`cam.methods: [irnet, rpnet]`), each from its CAM network to a DeepLab
    scored on val: `train` images (the label stages cover train_split and label_split, the first holding the
    second), per-image stages at `side`."""
    return [
        ("train_cam", train * 5, 512, "CAM network (ResNet-50)", 3),
        ("train_cam (RPNet)", train * 5, 512, "RPNet (ResNet-50, image + 1 reference)", 3),
        ("make_cam", train * 2, side, "CAM network (ResNet-50)", MULTI_SCALE),
        ("cam_to_ir_label", train * 2, side, None, 0),
        ("train_irn", train * 3 * 2, 512, "IRNet (ResNet-50, image + mirror)", 3 / 2),
        ("make_sem_seg_labels", train * 2, 512, "IRNet (ResNet-50, image + mirror)", 1),
        ("make_ins_seg_labels", train * 2, 512, "IRNet (ResNet-50, image + mirror)", 1),
        ("train_seg", 20000 * 20 * 2, 321, "DeepLab-v2 (ResNet-101)", 3),
        ("infer_seg", val * 2, side, "DeepLab-v2 (ResNet-101)", INFER_SCALES),
    ]


PRESETS = {
    "voc12 (IRNet, RPNet, DSRG)": _tag_chains(TRAIN_AUG, VOC_VAL, VOC_SIDE) + [
        ("train_dsrg", 8000 * 20 * 2, 321, "DeepLab-v2 (ResNet-101)", 3),
        ("train_seg", 20000 * 10, 321, "DeepLab-v2 (ResNet-101)", 3),  # the DSRG retrain (batch 10)
        ("infer_seg", VOC_VAL * 3, VOC_SIDE, "DeepLab-v2 (ResNet-101)", INFER_SCALES),
    ],
    "voc12_scribble (PSI, CDSP)": [
        ("train_psi", TRAIN_AUG * 200, 512, "DeepLabV3+ with CPP (ResNet-101, PSI)", 3),
        ("cdsp_distance_maps", TRAIN_AUG, VOC_SIDE, None, 0),
        ("train_cdsp", TRAIN_AUG * 50, 465, "DeepLab-v2 (ResNet-101)", 3),
        ("infer_seg", VOC_VAL * 2, VOC_SIDE, "DeepLabV3+ with CPP (ResNet-101, PSI)", INFER_SCALES),
    ],
    "context (PSI)": [
        ("train_psi", CONTEXT_TRAIN * 200, 512, "DeepLabV3+ with CPP (ResNet-101, PSI)", 3),
        ("infer_seg", CONTEXT_VAL, VOC_SIDE, "DeepLabV3+ with CPP (ResNet-101, PSI)", INFER_SCALES),
    ],
    "coco (IRNet, RPNet)": _tag_chains(COCO_TRAIN, COCO_VAL, COCO_SIDE),
}
# Notes on the passes: the RPNet, DSRG-no-growth and IRNet / RPNet chains run twice in voc12 (both CAM
# methods: `cam.methods: [irnet, rpnet]`; DSRG with and without growth); train_irn at batch 32 for 3
# epochs sees image pairs only through the backbone once (the FLOPs factor 3 / 2 spreads the mirror);
# infer_seg predicts val with each network (3 networks in voc12: seg_irnet, seg_rpnet, dsrg_retrain; 2 in
# voc12_scribble: psi, cdsp); PSI's label diffusion (sld) adds passes that are not counted.


def extrapolate(fits: dict, flops: dict, flops_side: int) -> pd.DataFrame:
    """Per preset and stage: core-hours on this CPU (the fit at the stage's side, times its images), GPU
    hours (its network's FLOPs at GPU_TFLOPS), and the core-hours that stay on the CPU in a GPU run (the
    stages without a network: dense CRFs, distance maps; in train_dsrg the per-iteration CRF and growing,
    measured as train_dsrg minus train_seg)."""
    def seconds(stage, side):
        a, k = fits[stage]
        return a * side ** k

    rows = []
    for preset, stages in PRESETS.items():
        for stage, images, side, network, factor in stages:
            core_hours = images * seconds(stage, side) / 3600
            gpu_hours = (images * factor * flops[network] * (side / flops_side) ** 2 / (GPU_TFLOPS * 1e12) / 3600
                         if network else 0.0)
            cpu_only = (core_hours if network is None else
                        images * max(seconds(stage, side) - seconds("train_seg", side), 0) / 3600
                        if stage == "train_dsrg" else 0.0)
            rows.append(dict(preset=preset, stage=stage, images=images, side=round(side), core_hours=core_hours,
                             gpu_hours=gpu_hours, cpu_only_core_hours=cpu_only))
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wsss.pipeline.bench_scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--quick", action="store_true", help="sides 64 and 96 (a smoke run; the fits mean little)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the measured and extrapolated tables here (CSV)")
    parser.add_argument("--measured", type=Path, nargs="+", help="measure nothing: fit and extrapolate the "
                        "scaling_measured.csv of earlier runs (e.g. sides measured in parallel processes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # CPU seconds of one thread: core-seconds, also on a shared machine
    numba.set_num_threads(1)
    if args.measured:
        table = pd.concat([pd.read_csv(f, index_col=0).drop(columns="exponent", errors="ignore")
                           for f in args.measured], axis=1)
        table.columns = [int(c) for c in table.columns]
        table = table[sorted(table.columns)]
    else:
        print(f"load average {os.getloadavg()[0]:.1f}, 1 thread, CPU seconds", flush=True)
        measured = {}
        for side in ([64, 96] if args.quick else sorted(args.sides)):
            with tempfile.TemporaryDirectory(prefix=f"wsss-scaling-{side}-") as tmp, \
                    contextlib.redirect_stderr(open(os.devnull, "w")):
                measured[side] = measure_side(side, Path(tmp), args.device)
            print(f"side {side}: " + ", ".join(f"{k} {v:.3g} s" for k, v in measured[side].items()) +
                  f" (load average {os.getloadavg()[0]:.1f})", flush=True)
        table = pd.DataFrame(measured)
    sides = list(table.columns)
    fits = {stage: fit_exponent(sides, table.loc[stage].to_numpy()) for stage in table.index}
    table["exponent"] = [fits[s][1] for s in table.index]
    flops = network_flops(sides[-1])
    pd.set_option("display.width", 200)
    print("\nCPU seconds per image on one core of this machine (trainers: per training image at batch 1, PSI 2), "
          "and the exponent k of seconds ~ side^k")
    print(table.to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"\nforward GFLOP at {sides[-1]} px: " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in flops.items()))
    projected = extrapolate(fits, flops, sides[-1])
    print(f"\nextrapolated to the paper presets (VOC train_aug {TRAIN_AUG} images; GPU hours at {GPU_TFLOPS:g} "
          "TFLOP/s sustained)")
    print(projected.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\ntotals per preset")
    print(projected.groupby("preset")[["core_hours", "gpu_hours", "cpu_only_core_hours"]].sum().to_string(
        float_format=lambda v: f"{v:.3g}"))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "scaling_measured.csv")
        projected.to_csv(args.out / "scaling_voc.csv", index=False)


if __name__ == "__main__":
    main()
