"""Training cost per iteration of RPNet vs the plain CAM network, in one process on the same batches:
`python -m wsss.rpnet.bench [--size 128] [--batch 16] [--backbone small] [--neck-channels 64] [--iters 10]
[--device cpu|cuda] [--quick]` (defaults: the demo's settings, config.yaml; --quick: 3 iterations at 64 px;
`--proto-channels` is the former name of --neck-channels).

Each iteration is what wsss.training.fit runs (loss, backward, SGD step); data loading is left out (RPNet
loads and augments 1 + K images per item instead of 1). Three networks alternate, iteration by iteration, so
a machine whose load changes during the run slows them alike: the plain CAM network (IRNet, no neck), RPNet
as released (the region branch also at scales 0.5, 1.5, 2.0 without gradient) and RPNet with the region
branch at scale 1 only (`region_scales` []). Prints seconds per iteration and the ratios to the plain one."""
import argparse
import functools
import time

import torch

from wsss.cam.net import CAMNet
from wsss.cam.train_cam import classification_loss
from wsss.models import resnet
from wsss.rpnet.losses import rpnet_loss
from wsss.rpnet.net import PARAMS, RPNet

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
    parser.add_argument("--neck-channels", "--proto-channels", dest="neck_channels", type=int, default=64)
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
    loss = functools.partial(rpnet_loss, weight=PARAMS["consistency_weight"].default,
                             peak_floor=PARAMS["peak_floor"].default)

    def rpnet(scales):
        return RPNet(CAMNet(resnet(args.backbone), N_CLASSES, neck_channels=args.neck_channels), region_scales=scales)

    batch = {key: value.to(device) for key, value in batch.items()}
    nets = {"cam": (CAMNet(resnet(args.backbone), N_CLASSES), classification_loss),
            "rpnet": (rpnet(PARAMS["region_scales"].default), loss),
            "rpnet_1scale": (rpnet([]), loss)}
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
    print(f"{args.device}, {args.backbone}, {s} px, batch {b}, {k} reference(s), neck {args.neck_channels} channels, "
          f"{args.threads} thread(s), {args.iters} iterations")
    for name, t in median.items():
        print(f"  {name:12s} {t * 1000:8.1f} ms / iteration (median)")
    for name in ("rpnet", "rpnet_1scale"):
        print(f"  ratio {name} / cam: {median[name] / median['cam']:.2f}")


if __name__ == "__main__":
    main()
