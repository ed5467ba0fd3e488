"""`python -m wsss.cdsp.bench [--quick] [--device cpu|cuda]`: CDSP's two speed / memory targets, printed as ratios.

1. Distance maps at 375 x 500 (a VOC image): `distance_bytes` (exact EDT) vs the release's brute force over
   every point (`brute_force`, compiled with numba as the release is), on ScribbleSup-like scribbles (3 px
   polylines, ~3.4 % of the pixels) and on a pseudo-label boundary; best of several runs; bytes compared.
2. LoRM at 59 x 59 features with 2048 channels (DeepLab-v2 ResNet at 465 px crops), `LoRM.forward` (new) vs
   the release's dense HW x HW (`LoRM.dense`), in this run: the peak of CPU memory allocated by torch during
   forward + backward (torch.profiler's memory events) at batch 1, the memory per image (the peaks' growth
   from batch 1 to batch 3, halved: parameter gradients and per-call transients do not grow with the batch),
   and the seconds (wall and CPU) of forward + backward at batch 1. With `--device cuda` LoRM runs on the GPU
   (memory: torch.cuda's peak allocated; the distance maps are CPU code either way).
"""
import argparse
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from wsss.cdsp.distance import boundary, brute_force, distance_bytes
from wsss.cdsp.losses import LoRM
from wsss.datasets.voc import rasterise_scribbles


def best_time(fn, repeats, clock=time.perf_counter):
    times = []
    for _ in range(repeats):
        started = clock()
        fn()
        times.append(clock() - started)
    return min(times)


def scribble_points(rng, shape, fraction=0.034):
    """Random 3 px wide polylines until about `fraction` of the pixels are drawn."""
    strokes = []
    while True:
        n = rng.integers(3, 8)
        start = rng.uniform((0, 0), shape[::-1])
        points = np.cumsum(np.vstack([start, rng.normal(0, 25, (n, 2))]), 0)
        strokes.append((1, [tuple(p) for p in np.clip(points, 0, np.array(shape[::-1]) - 1).round().astype(int)]))
        drawn = rasterise_scribbles(strokes, shape) != 255
        if drawn.mean() >= fraction:
            return drawn


def pseudo_boundary(rng, shape):
    gy, gx = np.indices(shape)
    fg = np.zeros(shape, bool)
    for _ in range(3):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(40, 120)
        fg |= (gy - cy) ** 2 + (gx - cx) ** 2 < r ** 2
    return boundary(fg.astype(np.uint8))


def distance_benchmark(quick):
    rng = np.random.default_rng(0)
    shape = (375, 500)
    brute_force(np.eye(3, dtype=bool), 1.0)  # compile
    for name, points, lam in (("scribble", scribble_points(rng, shape), 1.0),
                              ("pseudo boundary", pseudo_boundary(rng, shape), 6.0)):
        same = np.array_equal(distance_bytes(points, lam), brute_force(points, lam))
        fast = best_time(lambda: distance_bytes(points, lam), 3 if quick else 10)
        slow = best_time(lambda: brute_force(points, lam), 1 if quick else 3)
        print(f"distance map {name} 375x500, {points.sum()} points, lambda {lam}: EDT {fast * 1e3:.1f} ms, "
              f"brute force {slow * 1e3:.0f} ms, ratio {slow / fast:.0f}x, identical bytes: {same}")


def peak_mib(fn, device=torch.device("cpu")):
    """Peak torch memory (MiB) allocated on `device` while fn() runs, above what was allocated before."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak / 2 ** 20


def lorm_case(batch, side, channels, device):
    """Random channels-last ReLU features (as trained) and a pseudo-label with foreground and background."""
    features = torch.randn(batch, channels, side, side).relu().to(device, memory_format=torch.channels_last)
    return features.requires_grad_(), torch.randint(0, 3, (batch, side * 8, side * 8)).to(device)


def lorm_step(module, fn, features, pseudo):
    """A function running forward + backward from scratch (and waiting for the GPU): gradients are unset now
    (outside any measurement: freeing them would count), so each run allocates its own."""
    module.zero_grad(set_to_none=True)
    features.grad = None

    def step():
        fn(features, pseudo).backward()
        if features.is_cuda:
            torch.cuda.synchronize(features.device)
    return step


def memory_benchmark(quick, device):
    torch.manual_seed(0)
    side, channels = (30, 512) if quick else (59, 2048)
    n = side * side
    module = LoRM(channels)
    module.to(device, memory_format=torch.channels_last)  # as wsss.training.fit trains
    ways = {"dense": module.dense, "new": module.forward}
    peaks = {}
    for batch in (1, 3):
        features, pseudo = lorm_case(batch, side, channels, device)
        for name, fn in ways.items():
            peaks[name, batch] = peak_mib(lorm_step(module, fn, features, pseudo), device)
    features, pseudo = lorm_case(1, side, channels, device)
    # wall time and the process's CPU time (all threads): the latter varies less on a shared machine
    seconds = {(name, clock): best_time(lorm_step(module, fn, features, pseudo), 1 if quick else 3, clock)
               for name, fn in ways.items() for clock in (time.perf_counter, time.process_time)}
    per_image = {name: (peaks[name, 3] - peaks[name, 1]) / 2 for name in ways}
    print(f"LoRM on {device}, {side}x{side} features, {channels} channels (one HW x HW float32 = {n * n * 4 / 2 ** 20:.1f} MiB, "
          f"one HW x C = {n * channels * 4 / 2 ** 20:.1f} MiB), forward + backward:")
    print(f"  peak at batch 1 (whole module, parameter gradients included): dense {peaks['dense', 1]:.0f} MiB, "
          f"new {peaks['new', 1]:.0f} MiB, ratio 1/{peaks['dense', 1] / peaks['new', 1]:.1f}")
    print(f"  per image = (peak at batch 3 - peak at batch 1) / 2: dense {per_image['dense']:.0f} MiB, "
          f"new {per_image['new']:.0f} MiB, ratio 1/{per_image['dense'] / per_image['new']:.1f}")
    for label, clock in (("wall", time.perf_counter), ("CPU", time.process_time)):
        dense, new = seconds["dense", clock], seconds["new", clock]
        print(f"  {label} time at batch 1: dense {dense:.2f} s, new {new:.2f} s, ratio {new / dense:.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wsss.cdsp.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, a smaller LoRM case")
    parser.add_argument("--device", default="cpu", help="where LoRM runs (the distance maps are CPU code)")
    args = parser.parse_args(argv)
    distance_benchmark(args.quick)
    memory_benchmark(args.quick, torch.device(args.device))


if __name__ == "__main__":
    main()
