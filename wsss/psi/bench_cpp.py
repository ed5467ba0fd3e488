"""The cost of CPP: one PSI training step (forward, L_seg, backward, SGD step) with CPP against the same
network without it, alternating in one process; prints the median seconds of each and their ratio (issue
17's target: <= 1.5x).

    python -m wsss.psi.bench_cpp [--device cpu|cuda] [--crop 96] [--batch 8] [--width 64] [--repeats 20] [--quick]

Defaults are the demo's (config.yaml psi: small backbone, crop 96, batch 8, 64 channels); the paper's
setting is --backbone resnet101 --crop 512 --width 256 (a GPU)."""
import argparse
import statistics
import time

import torch

from wsss.psi import net
from wsss.psi.losses import seg_loss


def step_seconds(model, optimizer, x, y, dev) -> float:
    started = time.perf_counter()
    loss = seg_loss(model(x), y, 5.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="small")
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=64, help="head_channels and cpp_width")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 steps at batch 2 (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.batch = 3, 2
    dev = torch.device(args.device)
    torch.manual_seed(0)
    names = [str(i) for i in range(6)]
    x = torch.randn(args.batch, 3, args.crop, args.crop, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, len(names), (args.batch, args.crop, args.crop), device=dev)
    y[:, ::2] = 255  # partly unlabelled, as scribbles
    runs = {}
    for cpp in (False, True):
        model = net.build(dict(backbone=args.backbone, class_names=names, cpp=cpp, cpp_width=args.width,
                               head_channels=args.width)).to(dev, memory_format=torch.channels_last).train()
        runs[cpp] = (model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), [])
    for i in range(args.repeats + 2):  # alternating, so both see the same machine load; 2 warm-up steps
        for model, optimizer, times in runs.values():
            seconds = step_seconds(model, optimizer, x, y, dev)
            if i >= 2:
                times.append(seconds)
    without, with_cpp = (statistics.median(runs[c][2]) for c in (False, True))
    print(f"{args.device} {args.backbone} batch {args.batch} crop {args.crop} width {args.width}: step without CPP "
          f"{without * 1000:.1f} ms, with CPP {with_cpp * 1000:.1f} ms, ratio {with_cpp / without:.2f}x")


if __name__ == "__main__":
    main()
