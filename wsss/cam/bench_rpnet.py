"""Training cost per iteration of RPNet vs the plain CAM network, in one process on the same batches:
`python -m wsss.cam.bench_rpnet [--size 128] [--batch 16] [--backbone small] [--proto-channels 64] [--iters 10]
[--device cpu|cuda] [--quick]` (defaults: the demo's settings, config.yaml; --quick: 3 iterations at 64 px).

Each iteration is what wsss.training.fit runs (loss, backward, SGD step); data loading is left out (RPNet
loads and augments 1 + K images per item instead of 1). The two networks alternate, iteration by
iteration, so a machine whose load changes during the run slows both alike. Prints seconds per iteration
and the ratio (the issue's aim: RPNet <= 2.5x)."""
import argparse
import time

import torch

from wsss.cam import rpnet
from wsss.cam.net import CAMNet
from wsss.cam.train_cam import classification_loss
from wsss.models import resnet

N_CLASSES = 5  # the demo's shapes


def _step(net, loss_fn, batch, optimizer, device):
    started = time.perf_counter()
    loss = loss_fn(net, batch, 0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--backbone", default="small")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--references", type=int, default=1)
    parser.add_argument("--proto-channels", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="3 iterations at 64 px (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.iters, args.size = 3, 64
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, k, s = args.batch, args.references, args.size
    tags = (torch.rand(b, N_CLASSES) < 0.4).float()
    tags[torch.arange(b), torch.randint(0, N_CLASSES, (b,))] = 1
    batch = {"image": torch.randn(b, 3, s, s).contiguous(memory_format=torch.channels_last), "tags": tags,
             "refs": torch.randn(b, k, 3, s, s), "ref_tags": tags[:, None].expand(b, k, N_CLASSES)}
    batch = {key: value.to(device) for key, value in batch.items()}
    nets = {"cam": (CAMNet(resnet(args.backbone), N_CLASSES), classification_loss),
            "rpnet": (rpnet.RPNet(resnet(args.backbone), N_CLASSES, proto_channels=args.proto_channels),
                      lambda net, batch, it: rpnet.rpnet_loss(net, batch, it, weight=10.0))}
    optimizers = {}
    for name, (net, _) in nets.items():
        net.to(device, memory_format=torch.channels_last).train()
        optimizers[name] = torch.optim.SGD(net.parameters(), lr=0.01)
    seconds = {name: [] for name in nets}
    for it in range(args.iters + 1):  # the first iteration of each warms up and is not counted
        for name, (net, loss_fn) in nets.items():
            t = _step(net, loss_fn, batch, optimizers[name], device)
            if it:
                seconds[name].append(t)
    median = {name: sorted(ts)[len(ts) // 2] for name, ts in seconds.items()}
    print(f"{args.device}, {args.backbone}, {s} px, batch {b}, {k} reference(s), {args.proto_channels} prototype "
          f"channels, {args.threads} thread(s), {args.iters} iterations")
    for name, t in median.items():
        print(f"  {name:6s} {t * 1000:8.1f} ms / iteration (median)")
    print(f"  ratio rpnet / cam: {median['rpnet'] / median['cam']:.2f}")


if __name__ == "__main__":
    main()
