"""`python -m wsss.cdsp.bench [--quick]`: CDSP's two speed / memory targets, printed as ratios.

1. Distance maps at 375 x 500 (a VOC image): `distance_bytes` (exact EDT) vs the release's brute force over
   every point (`brute_force`, compiled with numba as the release is), on ScribbleSup-like scribbles (3 px
   polylines, ~3.4 % of the pixels) and on a pseudo-label boundary; best of several runs; bytes compared.
2. LoRM memory per image at 59 x 59 features with 2048 channels (DeepLab-v2 ResNet at 465 px crops): the peak
   of CPU memory allocated by torch during forward + backward (torch.profiler's memory events, both in this
   run), for the whole module and for the attention step alone (Q, K, F given), fused vs dense HW x HW.
"""
import argparse
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from wsss.cdsp.distance import boundary, brute_force, distance_bytes
from wsss.cdsp.losses import LoRM
from wsss.datasets.voc import rasterise_scribbles


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
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


def peak_mib(fn):
    """Peak torch CPU memory (MiB) allocated while fn() runs, above what was allocated before."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak / 2 ** 20


def attention(q, k, v, rows, fused):
    if fused:
        return rows[..., None] * torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)
    return (rows[..., None] * torch.softmax(q @ k.transpose(-1, -2), -1)) @ v


def memory_benchmark(quick):
    torch.manual_seed(0)
    side, channels = (30, 512) if quick else (59, 2048)
    n = side * side
    module = LoRM(channels)
    module.to(memory_format=torch.channels_last)  # as wsss.training.fit trains
    features = torch.randn(1, channels, side, side).relu().to(memory_format=torch.channels_last).requires_grad_()
    pseudo = torch.randint(0, 3, (1, side * 8, side * 8))
    whole = {name: peak_mib(lambda: fn(features, pseudo).backward()) for name, fn in
             (("dense", module.dense), ("fused", module.forward))}
    # [batch, heads, positions, channels]: the fused kernels take 4-d inputs only
    q, k, v = (torch.nn.functional.normalize(torch.randn(1, 1, n, channels), dim=-1).requires_grad_()
               for _ in range(3))
    rows = (torch.rand(1, 1, n) < 0.5).float()
    core = {name: peak_mib(lambda: attention(q, k, v, rows, name == "fused").square().sum().backward())
            for name in ("dense", "fused")}
    hw = n * n * 4 / 2 ** 20
    print(f"LoRM per image, {side}x{side} features, {channels} channels (one HW x HW float32 = {hw:.1f} MiB), "
          f"forward + backward peak:")
    print(f"  whole module: dense {whole['dense']:.0f} MiB, fused {whole['fused']:.0f} MiB, "
          f"ratio 1/{whole['dense'] / whole['fused']:.1f}")
    print(f"  attention step (Q, K, F given): dense {core['dense']:.0f} MiB, fused {core['fused']:.0f} MiB, "
          f"ratio 1/{core['dense'] / core['fused']:.1f}")
    print(f"  (one HW x C float32 tensor = {n * channels * 4 / 2 ** 20:.1f} MiB: the fused step's output and the "
          "gradients of Q, K, F are four of them)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wsss.cdsp.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, a smaller LoRM case")
    args = parser.parse_args(argv)
    distance_benchmark(args.quick)
    memory_benchmark(args.quick)


if __name__ == "__main__":
    main()
