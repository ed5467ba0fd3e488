"""`python -m wsss.gpu_check [--device cuda] [--parts kernels,speed,amp,ddp,dag] [--quick] [--out FILE]`:
everything that only a GPU can show, in one command of a few minutes, ending with one table.

- kernels: every CUDA kernel against its CPU (numba) result on random inputs: the largest difference,
  relative to the largest value (region growing: the pixels that differ; gradients too where the op has them);
- speed: every CUDA kernel against its torch fallback on the same GPU (the random walk at 128 x 128, C = 21:
  target < 5 ms, one cooperative launch for all 256 steps);
- amp: a few mixed-precision iterations of every trainer (train_cam for IRNet and RPNet, train_irn, train_seg,
  train_dsrg, train_psi, train_cdsp) on a tiny generated data set: time, last loss, peak GPU memory;
- ddp: one training step as two DDP processes (NCCL) where two GPUs are visible, else NCCL's init and an
  all-reduce in one process;
- dag: the demo DAG's first stages up to the random-walk labels' mIoU with `snakemake --resources gpu=1`.

Every part also runs without a GPU (`--device cpu`: the kernels under numba's CUDA simulator when
NUMBA_ENABLE_CUDASIM=1, else their torch backend; bfloat16 autocast; gloo), which is how tests/test_gpu_check.py
tests it. The exit status is 1 when a check fails. Recorded tables: docs/benchmarks.md.
"""
import argparse
import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("kernels", "speed", "amp", "ddp", "dag")
TINY_DATA = dict(seed=0, n_train=8, n_val=4, size=64, min_radius=0.14, max_radius=0.24)


def row(part, check, value, target="", ok=True) -> dict:
    return dict(part=part, check=check, value=value, target=target, ok="ok" if ok else "FAIL")


def _cuda_backend(device: torch.device) -> str:
    """The backend whose kernels are checked: numba.cuda on a GPU or under the simulator, else torch."""
    from kernels import _backend
    return "cuda" if _backend.numba_cuda_usable() and (device.type == "cuda" or _backend.cuda_simulator()) else "torch"


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


# ---------------------------------------------------------------------------------------------- kernels

def check_kernels(device: torch.device, quick: bool) -> list[dict]:
    from kernels import line_max_affinity, neighbor_offsets, neighborhood_aggregate, random_walk, region_grow
    from kernels.bench.neighborhood_aggregate import random_inputs as aggregate_inputs
    from kernels.bench.region_grow import random_inputs as grow_inputs
    backend = _cuda_backend(device)
    cpu = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    rows = []

    h, w = (6, 7) if quick else (96, 128)
    for radius in ((3,) if quick else (5, 10)):
        boundary = torch.rand(2, h, w, generator=g)
        weight = torch.rand(2, len(neighbor_offsets(radius)), h, w, generator=g)  # a loss that weighs every pair
        results = []
        for b, dev in ((backend, device), ("numba", cpu)):
            x = boundary.to(dev).requires_grad_()
            out = line_max_affinity(x, radius, backend=b)
            (out * weight.to(dev)).sum().backward()
            results.append((out, x.grad))
        err = max(_relative(a, b) for a, b in zip(*results))
        rows.append(row("kernels", f"line_max_affinity {backend} vs numba, {h}x{w} r={radius}, value + gradient",
                        f"{err:.1e}", "0", err == 0))

    c, h, w, steps = (2, 5, 6, 4) if quick else (21, 64, 64, 256)
    scores, boundary = torch.rand(1, c, h, w, generator=g), torch.rand(1, h, w, generator=g) ** 4
    got = random_walk(scores.to(device), boundary.to(device), steps=steps, backend=backend)
    err = _relative(got, random_walk(scores, boundary, steps=steps, backend="numba"))
    rows.append(row("kernels", f"random_walk {backend} vs numba, {h}x{w} C={c}, {steps} steps", f"{err:.1e}",
                    "<= 1e-5", err <= 1e-5))

    shape = (1, 4, 6, 6) if quick else (2, 21, 161, 161)
    probs, seeds, present = grow_inputs(*shape, n_present=min(3, shape[1]), generator=g)
    got = region_grow(probs.to(device), seeds.to(device), present.to(device), backend=backend).cpu()
    differ = int((got != region_grow(probs, seeds, present, backend="numba")).sum())
    rows.append(row("kernels", f"region_grow {backend} vs numba, {'x'.join(map(str, shape))}",
                    f"{differ} pixels differ", "0", differ == 0))

    (h, w), ch = ((5, 5), 4) if quick else ((33, 33), 64)
    radii, strides = (1, 1, 1, 4), (0, 0, 0, 0)
    q, keys, values = aggregate_inputs(1, ch, h, w, [(h, w)] * 4, g)
    results = []
    for b, dev in ((backend, device), ("numba", cpu)):
        leaves = [t.to(dev).requires_grad_() for t in (q, *keys, *values)]
        outs = neighborhood_aggregate(leaves[0], leaves[1:5], leaves[5:], radii, strides, backend=b)
        sum(o.sum() * (i + 1) for i, o in enumerate(outs)).backward()
        results.append(outs + [t.grad for t in leaves])
    err = max(_relative(a, b) for a, b in zip(*results))
    rows.append(row("kernels", f"neighborhood_aggregate {backend} vs numba, {h}x{w} C={ch}, value + gradient",
                    f"{err:.1e}", "<= 1e-4", err <= 1e-4))
    return rows


def time_kernels(device: torch.device, quick: bool) -> list[dict]:
    from kernels import line_max_affinity, neighborhood_aggregate, random_walk, region_grow
    from kernels.bench._harness import measure
    from kernels.bench.neighborhood_aggregate import random_inputs as aggregate_inputs
    from kernels.bench.region_grow import random_inputs as grow_inputs
    backend = _cuda_backend(device)
    g = torch.Generator().manual_seed(1)
    n = 8 if quick else 128
    boundary = torch.rand(1, n, n, generator=g).to(device)
    grow = [t.to(device) for t in grow_inputs(1, *((4, 8, 8) if quick else (21, 321, 321)), 3, g)]
    (h, ch) = (5, 4) if quick else (65, 256)
    q, keys, values = (x.to(device) if torch.is_tensor(x) else [t.to(device) for t in x]
                       for x in aggregate_inputs(1, ch, h, h, [(h, h)] * 4, g))
    c, steps = (2, 4) if quick else (21, 256)
    scores = torch.rand(1, c, n, n, generator=g).to(device)
    cases = [(f"line_max_affinity {n}x{n} r=5", lambda b: line_max_affinity(boundary, 5, backend=b), None),
             (f"random_walk {n}x{n} C={c}, {steps} steps", lambda b: random_walk(scores, boundary, steps=steps, backend=b),
              None if quick else 5.0),
             (f"region_grow {'x'.join(map(str, grow[0].shape[1:]))}", lambda b: region_grow(*grow, backend=b), None),
             (f"neighborhood_aggregate {h}x{h} C={ch} forward", lambda b: neighborhood_aggregate(
                 q, keys, values, (1, 1, 1, 4), (0, 0, 0, 0), backend=b), None)]
    rows = []
    for name, fn, target_ms in cases:
        fast, *_ = measure(lambda: fn(backend), device, 1 if quick else 5)
        slow, *_ = measure(lambda: fn("torch"), device, 1 if quick else 3)
        ok = target_ms is None or fast * 1e3 < target_ms
        rows.append(row("speed", f"{name}: {backend} vs torch", f"{fast * 1e3:.2f} ms vs {slow * 1e3:.2f} ms "
                        f"({slow / fast:.1f}x)", f"< {target_ms:g} ms" if target_ms else "", ok))
    return rows


# ---------------------------------------------------------------------------------------------- trainers

def train_amp(device: torch.device, workdir: Path) -> list[dict]:
    """A few mixed-precision iterations of every trainer on a tiny data set (8 images at 64 px)."""
    from wsss.cam import train_cam
    from wsss.cdsp import cdsp_distance_maps, train_cdsp
    from wsss.datasets import demo_dataset
    from wsss.dsrg import train_dsrg
    from wsss.irnet import train_irn
    from wsss.psi import train_psi
    from wsss.seg import train_seg
    root = workdir / "voc"
    if not root.exists():
        demo_dataset.run(TINY_DATA, root=root)
    names = list(demo_dataset.PARAMS["class_names"].default)
    masks = root / "SegmentationClass"  # stand-ins for pseudo-labels and seeds: the same format
    common = dict(seed=0, device=device.type, class_names=names, split="train", backbone="small", pretrained=None,
                  amp=True, batch_size=4, weight_decay=0.0001, num_workers=0)
    seg = {**common, "arch": "deeplab_v2", "crop": 48, "lr": 0.01, "momentum": 0.9, "head_lr_mult": 10}
    cam = {**common, "tags_from": "masks", "crop": 48, "resize_long": [40, 64], "epochs": 1, "lr": 0.1}
    out = workdir / "amp"
    maps = dict(dist_scribble=out / "ds", dist_pseudo=out / "dp")
    runs = [  # (trainer, its saved network, how to run it)
        ("train_cam (IRNet)", "cam.pt", lambda: train_cam.run(cam, root=root, out=out / "cam.pt")),
        ("train_cam (RPNet)", "rpnet.pt", lambda: train_cam.run(
            {**cam, "method": "rpnet", "neck_channels": 16, "region_scales": []}, root=root, out=out / "rpnet.pt")),
        ("train_irn", "irn.pt", lambda: train_irn.run(
            {**common, "irn_backbone": "cam", "crop": 48, "scale": [0.7, 1.3], "input_scale": 1.0, "epochs": 1,
             "lr": 0.1, "momentum": 0.9, "radius": 5}, root=root, ir_labels=masks, cam_model=out / "cam.pt",
            out=out / "irn.pt")),
        ("train_seg", "seg.pt", lambda: train_seg.run(
            {**seg, "scale": [0.5, 2.0], "iterations": 3, "checkpoint_every": 2}, root=root, labels=masks,
            out=out / "seg.pt")),
        ("train_dsrg", "dsrg.pt", lambda: train_dsrg.run(
            {**seg, "tags_from": "masks", "scale": None, "iterations": 3, "lr_policy": "step", "lr_step": 2000,
             "lr_gamma": 0.1, "th_fg": 0.85, "th_bg": 0.99, "crf_scale": 12, "crf_log_unary": True, "growth": True},
            root=root, seeds=masks, out=out / "dsrg.pt", supervision=out / "dsrg.csv", plot=out / "dsrg.png")),
        ("train_psi", "psi.pt", lambda: train_psi.run(
            {**common, "crop": 48, "epochs": 2, "steps": 1, "lr": 0.01, "cpp_width": 8, "head_channels": 16,
             "lambda_1": 1.0, "sld_radius": 4, "sld_epochs": 1}, root=root, out=out / "psi.pt",
            supervision=out / "psi_sup", scores=out / "psi_scores")),
        ("train_cdsp", "cdsp.pt", lambda: (
            cdsp_distance_maps.run(dict(class_names=names, split="train"), root=root, pseudo=masks,
                                   out_scribble=maps["dist_scribble"], out_pseudo=maps["dist_pseudo"]),
            train_cdsp.run({**seg, "epochs": 2, "warmup_epochs": 1}, root=root, pseudo=masks, out=out / "cdsp.pt",
                           **maps))),
    ]
    rows = []
    for name, model, fn in runs:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        try:
            fn()
        except Exception as e:  # one failing trainer must not hide the others' results
            rows.append(row("amp", name, f"{type(e).__name__}: {e}"[:160], "runs", False))
            continue
        seconds = time.perf_counter() - started
        losses = torch.load(out / model, map_location="cpu", weights_only=False)["history"]["loss"]
        memory = f", peak {torch.cuda.max_memory_allocated(device) / 2 ** 20:.0f} MiB" if device.type == "cuda" else ""
        rows.append(row("amp", name, f"{seconds:.1f} s, last loss {losses[-1]:.3g}{memory}", "finite losses",
                        all(math.isfinite(x) for x in losses)))
    return rows


def check_ddp(device: torch.device, workdir: Path, processes: int) -> list[dict]:
    """`processes` >= 2: one training step of train_seg as that many DDP processes (NCCL on GPUs, gloo on the
    CPU); else the process group's init and an all-reduce in this process."""
    import torch.distributed as dist
    backend = "nccl" if device.type == "cuda" else "gloo"
    started = time.perf_counter()
    if processes >= 2:
        from wsss.datasets import demo_dataset
        from wsss.seg import train_seg
        root = workdir / "voc"
        if not root.exists():
            demo_dataset.run(TINY_DATA, root=root)
        params = dict(seed=0, device=device.type, class_names=list(demo_dataset.PARAMS["class_names"].default),
                      split="train", backbone="small", pretrained=None, arch="deeplab_v2", crop=48,
                      batch_size=4, lr=0.01, momentum=0.9, head_lr_mult=10, iterations=2, checkpoint_every=2,
                      num_workers=0, weight_decay=0.0001)  # one epoch of the 8 images: one logged loss
        with _environment(WSSS_WORLD_SIZE=str(processes)):
            train_seg.run(params, root=root, labels=root / "SegmentationClass", out=workdir / "ddp" / "seg.pt")
        loss = torch.load(workdir / "ddp" / "seg.pt", weights_only=False)["history"]["loss"][-1]
        return [row("ddp", f"train_seg, 2 steps as {processes} DDP processes ({backend})",
                    f"loss {loss:.3g} in {time.perf_counter() - started:.1f} s", "finite", math.isfinite(loss))]
    with tempfile.TemporaryDirectory(prefix="wsss-gpucheck-") as tmp:
        dist.init_process_group(backend, init_method=f"file://{tmp}/rendezvous", rank=0, world_size=1)
        try:
            x = torch.ones(4, device=device)
            dist.all_reduce(x)
            value = x.sum().item()
        finally:
            dist.destroy_process_group()
    return [row("ddp", f"one-process {backend} init + all_reduce (fewer than 2 GPUs)",
                f"sum {value:g} in {time.perf_counter() - started:.1f} s", "4", value == 4)]


@contextlib.contextmanager
def _environment(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------------------------------------- workflow

DAG_CONFIG = {  # tests/test_workflow.py's tiny demo, mixed precision, IRNet's CAMs only
    "run_dir": "results/gpu_check", "seed": 0,
    "dataset": {"root": "data/gpu_check", "demo": True, "train_split": "train",
                "class_names": ["background", "disc", "square", "triangle", "ring", "cross"]},
    "demo": {"seed": 0, "n_train": 10, "n_val": 4, "size": 64},
    "model": {"backbone": "small", "pretrained": None},
    "train": {"amp": True},
    "cam": {"crop": 64, "resize_long": [48, 80], "batch_size": 5, "epochs": 1, "scales": [1.0, 0.5],
            "eval_thresholds": [0.1, 0.2, 0.3], "methods": ["irnet"]},
    "irn": {"crop": 64, "batch_size": 5, "epochs": 1, "pair_radius": 5, "dp_iterations": 5},
    "seg": {"backbone": "small", "crop": 64, "batch_size": 5, "iterations": 2, "checkpoint_every": 1,
            "infer_scales": [1.0]},
    "dsrg": {"iterations": 2, "infer_sizes": [64], "retrain_batch_size": 5},
    "psi": {"crop": 64, "batch_size": 5, "epochs": 4, "head_channels": 8, "cpp_width": 8, "lambda_1": 1,
            "sld_radius": 4, "infer_scales": [1.0, 0.5]},
    "cdsp": {"crop": 64, "batch_size": 5, "epochs": 1, "warmup_epochs": 0},
}
DAG_TARGETS = ("metrics/eval_cam.csv", "metrics/sem_seg.csv")


def run_dag(device: torch.device, workdir: Path, targets=DAG_TARGETS) -> list[dict]:
    """The demo DAG from the data set to `targets` (default: the random-walk labels' mIoU), GPU jobs capped
    at one at a time."""
    work = workdir / "dag"
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump({**DAG_CONFIG, "device": device.type}))
    files = [f"{DAG_CONFIG['run_dir']}/{t}" for t in targets]
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory",
               str(work), "--cores", str(min(8, os.cpu_count())), *files, "--resources", "gpu=1"]  # (nargs+ last)
    check = f"demo DAG to {', '.join(Path(t).stem for t in targets)}, --resources gpu=1"
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                              filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))))
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        (workdir / "dag.log").write_text(done.stdout + done.stderr)
        return [row("dag", check, f"snakemake failed (exit {done.returncode}); log: {workdir / 'dag.log'}", "runs",
                    False)]
    value = f"{seconds:.0f} s"
    if "metrics/sem_seg.csv" in targets:
        metrics = pd.read_csv(work / DAG_CONFIG["run_dir"] / "metrics/sem_seg.csv")
        miou = metrics[(metrics.metric == "iou") & metrics["class"].isna()]["value"].iloc[0]  # the class mean
        value += f", random-walk labels mIoU {miou:.3f}"
    return [row("dag", check, value, "runs", True)]


# ---------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsss.gpu_check", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="tiny kernel sizes (for the CUDA simulator)")
    parser.add_argument("--ddp-processes", type=int, help="default: 2 where two GPUs are visible, else 1")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--out", type=Path, help="also write the table here (CSV)")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"wsss GPU check on {name} (torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{torch.cuda.device_count()} GPU(s) visible)", flush=True)
    processes = args.ddp_processes or (2 if device.type == "cuda" and torch.cuda.device_count() >= 2 else 1)
    rows = []
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wsss-gpucheck-")))
        steps = {"kernels": lambda: check_kernels(device, args.quick), "speed": lambda: time_kernels(device, args.quick),
                 "amp": lambda: train_amp(device, workdir), "ddp": lambda: check_ddp(device, workdir, processes),
                 "dag": lambda: run_dag(device, workdir)}
        for part in parts:
            started = time.perf_counter()
            try:
                new = steps[part]()
            except Exception as e:
                new = [row(part, "(the part stopped)", f"{type(e).__name__}: {e}"[:160], "runs", False)]
            rows += new
            for r in new:
                print(f"  {r['part']:8s} {r['ok']:4s} {r['check']}: {r['value']}", flush=True)
            print(f"{part}: {time.perf_counter() - started:.0f} s", flush=True)
    table = pd.DataFrame(rows, columns=["part", "check", "value", "target", "ok"])
    print(f"\n{name}\n" + table.to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
    return 0 if (table.ok == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
