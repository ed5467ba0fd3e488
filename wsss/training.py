"""The SGD loop every trainer shares (train_cam, train_irn, train_seg, train_dsrg): deterministic
batches, poly or step learning-rate decay with a learning-rate multiplier per parameter group,
checkpoints to resume from, and data parallelism over the job's GPUs (wsss.distributed).

Batches come from `BatchPlan`: epoch e visits a permutation drawn from (seed, e) and each batch slot gets its
own augmentation seed, so an item's crop depends on (seed, epoch, slot), not on history. That makes a
resumed run end with the weights of an uninterrupted one (bit for bit on the CPU with the same threads,
docs/reliability.md), and lets N ranks each take a slice of the same global batch.

Every `checkpoint_every` iterations (param, optional) rank 0 saves weights, optimizer, RNG state, the
history and the iteration next to `out` (`<out>.ckpt`), keyed by `run_key`: the params, the trainer's code
version and a digest of its input files. A rerun with the same key continues from there; any other
checkpoint is of another run and is started afresh.
The saved network: {"state_dict", "params", "history"} with history {"loss", "seconds"}: the mean loss
(over all ranks) and the wall time of each complete epoch. Next to it, `train_log.csv` (TRAIN_LOG) has one
row per iteration: iteration, epoch, loss (rank 0's share of the batch), lr (the base group's), seconds;
it is rewritten at every checkpoint, so it shows the progress of a long run.

`amp` (param) runs the network's forward pass (not the losses) under torch.autocast (bfloat16 on the CPU,
float16 with a gradient scaler on a GPU); `num_workers` null loads batches in the job's threads - 1 worker
processes on a GPU. With `bn_images` (param) and `whole_images`, the network's trainable BatchNorm statistics
are recomputed on whole images at the end (precise_bn)."""
import contextlib
import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from wsss import distributed
from wsss.datasets import voc
from wsss.io import save_csv, save_torch
from wsss.models.backbone import FixedBatchNorm
from wsss.params import Param
from wsss.provenance import code_version
from wsss.runtime import DEVICE, device, threads

# The parameters of `fit`, part of every trainer's PARAMS.
PARAMS = {
    "seed": Param(int, 0, "seeds the batch order, the augmentation and the initialisation"),
    "device": DEVICE,
    "batch_size": Param(int, help="images per SGD step (over all DDP ranks)"),
    "lr": Param(float, help="base learning rate"),
    "momentum": Param(float, 0.9, "SGD momentum"),
    "weight_decay": Param(float, help="SGD weight decay"),
    "lr_policy": Param(str, "poly", "poly: lr (1 - it / n) ** power; step: lr gamma ** (it // lr_step); "
                       "cosine: linear warm-up over warmup_iters, then cosine to 0 (CDSP)"),
    "power": Param(float, 0.9, "poly decay exponent"),
    "lr_step": Param(int, 1, "step policy: iterations per decay step"),
    "lr_gamma": Param(float, 1.0, "step policy: decay factor"),
    "warmup_iters": Param(int, 0, "cosine policy: iterations of linear warm-up"),
    "checkpoint_every": Param(int, 0, "iterations between resumable checkpoints (0: none)"),
    "num_workers": Param((int, type(None)), None, "DataLoader worker processes (0: load in the training process; "
                         "null: the job's threads - 1 on a GPU, 0 on the CPU, whose threads compute)"),
    "amp": Param(bool, False, "mixed precision: autocast the forward pass (float16 + gradient scaling on a GPU)"),
    "bn_images": Param(int, 0, "precise BN (precise_bn): whole training images over which the trainable BatchNorm "
                       "layers' statistics are recomputed after training; 0: keep the crops' running averages"),
    "bn_scales": Param(list, [1.0], "precise BN: the image scales of the statistics of BatchNorm on pooled 1 x 1 maps "
                       "(DeepLab-v3's image pooling; the inference scales)"),
}
TRAIN_LOG = "train_log.csv"  # per-iteration log, in the folder of the saved network


class BatchPlan:
    """This rank's part of the batches of iterations start..n_iters-1, as lists of (index, augmentation
    seed): the last incomplete batch of an epoch is dropped; rank r of W takes slots [r B/W, (r+1) B/W)."""

    def __init__(self, n_items: int, batch_size: int, seed: int, start: int, n_iters: int, rank: int = 0,
                 world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} does not split evenly over {world} processes")
        self.per_epoch = iterations_per_epoch(n_items, batch_size)
        self.n_items, self.batch_size, self.seed, self.start, self.n_iters = n_items, batch_size, seed, start, n_iters
        self.share = batch_size // world
        self.offset = rank * self.share

    def __len__(self):
        return max(0, self.n_iters - self.start)

    def __iter__(self):
        for it in range(self.start, self.n_iters):
            epoch, pos = divmod(it, self.per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n_items)
            first = pos * self.batch_size + self.offset
            yield [(int(order[s]), int(np.random.SeedSequence([self.seed, epoch, s]).generate_state(1)[0]))
                   for s in range(first, first + self.share)]


def iterations_per_epoch(n_items: int, batch_size: int, source="the training set") -> int:
    """Full batches per epoch; `source` (the split file) names the culprit when there is not one."""
    if n_items < batch_size:
        raise voc.DataError(f"{source}: {n_items} images, fewer than one batch of {batch_size}")
    return n_items // batch_size


def lr_factor(params: dict, it: int, n_iters: int) -> float:
    """Poly ((1 - it / n_iters) ** power: IRNet's PolyOptimizer, DeepLab), step (DSRG: gamma ** (it //
    lr_step)) or cosine (CDSP's train.py adjust_learning_rate: it / warmup_iters during the warm-up, from 0,
    then half a cosine to 0) decay."""
    policy = params["lr_policy"]
    if policy == "poly":
        return (1 - it / n_iters) ** params["power"]
    if policy == "step":
        return params["lr_gamma"] ** (it // params["lr_step"])
    if policy == "cosine":
        warmup = params["warmup_iters"]
        if it < warmup:
            return it / warmup
        return 0.5 * (1 + math.cos(math.pi * (it - warmup) / max(1, n_iters - warmup)))
    raise ValueError(f"lr_policy must be 'poly', 'step' or 'cosine', got {policy!r}")


class History:
    """Mean loss over all ranks and wall seconds of each complete epoch; checkpointed with the weights."""

    def __init__(self, per_epoch: int):
        self.per_epoch, self.loss, self.seconds, self.rows = per_epoch, [], [], []
        self.loss_sum, self.started, self.iteration_started = 0.0, time.perf_counter(), time.perf_counter()

    def end_iteration(self, it: int, loss: float, lr: float):
        now = time.perf_counter()
        self.rows.append(dict(iteration=it, epoch=it // self.per_epoch, loss=loss, lr=lr,
                              seconds=now - self.iteration_started))
        self.iteration_started = now
        self.loss_sum += loss
        if (it + 1) % self.per_epoch:
            return
        self.loss.append(float(distributed.total(np.array([self.loss_sum]))[0]) / distributed.size() / self.per_epoch)
        self.seconds.append(time.perf_counter() - self.started)
        if distributed.is_main():
            tqdm.write(f"epoch {len(self.loss)}: loss {self.loss[-1]:.4f}, {self.seconds[-1]:.1f} s")
        self.loss_sum, self.started = 0.0, time.perf_counter()

    def restart_clock(self):
        self.started = self.iteration_started = time.perf_counter()

    def summary(self) -> dict:
        return {"loss": self.loss, "seconds": self.seconds}

    def state_dict(self):
        return {**self.summary(), "loss_sum": self.loss_sum, "rows": self.rows}

    def load_state_dict(self, state):
        self.loss, self.seconds, self.loss_sum = list(state["loss"]), list(state["seconds"]), state["loss_sum"]
        self.rows = list(state.get("rows", []))
        self.iteration_started = time.perf_counter()

    def write_log(self, out):
        """The per-iteration rows to train_log.csv next to `out` (rank 0)."""
        if distributed.is_main():
            save_csv(Path(out).with_name(TRAIN_LOG),
                     pd.DataFrame(self.rows, columns=["iteration", "epoch", "loss", "lr", "seconds"]))


def fit(model, groups, dataset, loss_fn, params: dict, n_iters: int, *, out, desc: str, module: str, inputs,
        tracker=None, finish=None, first: int = 0, stop: int | None = None, history: History | None = None,
        saved=None, whole_images=None):
    """Trains `model` for `n_iters` SGD iterations of `loss_fn(net, batch, iteration) -> loss` over `dataset`
    (items keyed by BatchPlan, batches of dicts), then rank 0 saves it to `out` and returns the History.
    first, stop: run only iterations first..stop-1 (stop: n_iters) of that n_iters-iteration schedule (its
    learning rates and batches), a phase of a longer training (PSI's alternating steps); history: the
    previous phase's return value, so that the log and the saved history cover every phase.

    groups: [(parameters, learning-rate multiplier)] or [(parameters, lr multiplier, weight-decay
    multiplier)]. params: resolved against PARAMS (the trainer's PARAMS include them). net is `model` under
    DDP when several ranks train. tracker: optional object with end_iteration(it, seconds), state_dict and
    load_state_dict, checkpointed with the weights. finish: optional finish(model), run on rank 0 after the
    last iteration, before the model is saved. module (the trainer's `__name__`) and inputs (the files and
    folders it reads) key the checkpoint (`run_key`). saved: the part of `model` whose weights go to `out`
    (default: all of it; RPNet's region branch and CDSP's LoRM train only, so they stay out; checkpoints
    hold the whole model). whole_images: (root, ids) of the training images for precise_bn, run on every rank
    (PSI's ranks diffuse with the network between phases)."""
    dev = device(params["device"])
    # channels-last runs the CPU convolutions about 1.4x faster and suits GPU convolutions as well
    model.to(dev, memory_format=torch.channels_last).train()
    net = distributed.wrap(model)
    optimizer = torch.optim.SGD([{"params": list(p), "weight_decay": params["weight_decay"] * (wd[0] if wd else 1)}
                                 for p, _, *wd in groups], lr=params["lr"], momentum=params["momentum"])
    stop = n_iters if stop is None else stop
    if not 0 <= first <= stop <= n_iters:
        raise ValueError(f"fit: iterations {first}..{stop} are not a part of the schedule's 0..{n_iters}")
    if history is None:
        history = History(iterations_per_epoch(len(dataset), params["batch_size"]))
    history.restart_clock()  # a later phase: what ran in between is no training time
    ckpt = Path(f"{out}.ckpt")
    key = run_key(params, module, inputs)
    start = resume(ckpt, key, model, optimizer, history, tracker) or first
    plan = BatchPlan(len(dataset), params["batch_size"], params["seed"], start, stop,
                     distributed.rank(), distributed.size())
    workers = params["num_workers"]
    if workers is None:
        workers = max(0, threads() - 1) if dev.type == "cuda" else 0
    loader = DataLoader(dataset, batch_sampler=plan, num_workers=workers, pin_memory=dev.type == "cuda",
                        persistent_workers=workers > 0)
    autocast, scaler = mixed_precision(params["amp"], dev)
    step_net = ReducedPrecision(net, autocast) if params["amp"] else net
    bar = tqdm(total=stop, initial=start, desc=desc, disable=not distributed.is_main())
    try:  # a failure (a full disk, say) closes the bar: a process that goes on keeps no stale one
        for it, batch in enumerate(loader, start):
            for group, (_, mult, *_wd) in zip(optimizer.param_groups, groups):
                group["lr"] = params["lr"] * mult * lr_factor(params, it, n_iters)
            started = time.perf_counter()
            loss = loss_fn(step_net, {k: _to(v, dev) for k, v in batch.items()}, it)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            value = loss.item()  # waits for the GPU, so the times below are real
            if not math.isfinite(value) and not scaler.is_enabled():  # float16's scaler skips such steps itself
                raise FloatingPointError(
                    f"{desc}: the loss is {value} at iteration {it + 1} of {n_iters}, so the network's weights are "
                    f"no longer numbers: training diverged and nothing is saved. Lower the learning rate (lr "
                    f"{params['lr']}) or check the inputs")
            history.end_iteration(it, value, optimizer.param_groups[0]["lr"])
            if tracker is not None:
                tracker.end_iteration(it, time.perf_counter() - started)
            bar.update()
            bar.set_postfix(loss=f"{value:.4f}")
            if params["checkpoint_every"] and (it + 1) % params["checkpoint_every"] == 0 and it + 1 < stop:
                save_checkpoint(ckpt, it + 1, key, model, optimizer, history, tracker)
                history.write_log(out)
    finally:
        bar.close()
    if whole_images is not None and params["bn_images"]:
        precise_bn(model if saved is None else saved, *whole_images, params["bn_images"], params["batch_size"], dev,
                   params["bn_scales"])
    if distributed.is_main():
        if finish is not None:
            finish(model)
        weights = (model if saved is None else saved).state_dict()
        save_torch(out, {"state_dict": {k: v.cpu() for k, v in weights.items()}, "params": params,
                         "history": history.summary()})
        history.write_log(out)  # after the network: a run that failed to save it leaves no complete log
        ckpt.unlink(missing_ok=True)
    return history


def precise_bn(net, root, ids, n_images: int, batch_size: int, dev, scales=(1.0,)) -> int:
    """Precise BatchNorm: the running statistics of `net`'s trainable BatchNorm layers recomputed as plain
    averages over `n_images` of `ids` (evenly spread, in order), whole images in batches of at most
    `batch_size`; no weight changes. Running averages gathered on small rescaled, padded crops can miss
    whole images by 2-3x (docs/diagnosis.md "Issue 22": PSI's heads on EfficientNet-Lite, val pixel accuracy
    8.6 % -> 90.4 %). Fixed (ImageNet) BatchNorm stays as it is. A BatchNorm of pooled 1 x 1 maps (DeepLab-v3's
    image pooling) takes the mean and variance of its inputs over the images at each of `scales` instead
    (_pooled_statistics). Returns the number of layers recomputed."""
    layers = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
              and not isinstance(m, FixedBatchNorm)]
    if not layers:
        return 0
    picked = ids[::max(1, len(ids) // n_images)][:n_images]
    was_training, momenta = net.training, [m.momentum for m in layers]
    net.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    with torch.no_grad():
        for _, x in tqdm(voc.image_batches(root, picked, batch_size), desc="precise BN",
                         disable=not distributed.is_main()):
            net(x.to(dev))
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    if [float(s) for s in scales] != [1.0]:
        _pooled_statistics(net, layers, voc.image_batches(root, picked, batch_size), dev, scales)
    net.train(was_training)
    return len(layers)


def _pooled_statistics(net, layers, batches, dev, scales):
    """The running mean / variance of those `layers` whose input is a pooled 1 x 1 map: of that input over the
    `batches` each rescaled by every one of `scales`, through the eval-mode network. Pooled features of whole
    images vary little from image to image, less than from scale to scale, so the statistics of one scale
    blew up another's and multi-scale inference predicted one class everywhere (docs/diagnosis.md
    "Precise BN and image pooling")."""
    seen = {m: [] for m in layers}
    hooks = [m.register_forward_pre_hook(lambda m, args: seen[m].append(args[0].flatten(1).double())
                                         if args[0][0, 0].numel() == 1 else None) for m in layers]
    net.eval()
    with torch.no_grad():
        for _, x in batches:
            for s in scales:
                net(F.interpolate(x.to(dev), scale_factor=float(s), mode="bilinear", align_corners=False))
    for hook in hooks:
        hook.remove()
    for m, inputs in seen.items():
        if inputs:
            inputs = torch.cat(inputs)
            m.running_mean.copy_(inputs.mean(0))
            m.running_var.copy_(inputs.var(0))


def mixed_precision(enabled: bool, dev: torch.device):
    """(autocast context factory, gradient scaler): float16 with loss scaling on a GPU, bfloat16 (no scaling
    needed) on the CPU; a no-op pair when disabled."""
    if not enabled:
        return contextlib.nullcontext, torch.amp.GradScaler("cpu", enabled=False)
    dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    return (lambda: torch.autocast(dev.type, dtype=dtype)), torch.amp.GradScaler(dev.type, enabled=dev.type == "cuda")


class ReducedPrecision(torch.nn.Module):
    """`net` whose forward pass runs under autocast and returns float32 tensors: the losses, the CRF and the
    numba kernels (which know no bfloat16 / float16) see full precision."""

    def __init__(self, net, autocast):
        super().__init__()
        self.net, self.autocast = net, autocast

    def forward(self, *args, **kwargs):
        with self.autocast():
            out = self.net(*args, **kwargs)
        return torch.utils._pytree.tree_map(lambda t: t.float() if torch.is_tensor(t) and t.is_floating_point() else t,
                                            out)


def _to(value: torch.Tensor, dev):
    """A batch tensor on the device; images (4-d) channels-last like the model."""
    if value.dim() == 4:
        return value.to(dev, memory_format=torch.channels_last, non_blocking=True)
    return value.to(dev, non_blocking=True)


def run_key(params: dict, module: str, inputs) -> dict:
    """What a checkpoint must match to be resumed: the params, the code version of the trainer `module` and a
    digest of `inputs` (files and folders; a changed label, split or init file is another run)."""
    return {"params": params, "code": code_version(module), "inputs": digest(inputs)}


def digest(paths) -> str:
    """sha256 over the names and bytes of `paths` (None skipped; a folder: its non-hidden files, recursively;
    a missing path counts as missing). About a second per GB."""
    h = hashlib.sha256()
    for index, item in enumerate(paths):  # by position, not by path: a moved run folder is the same run
        if item is None:
            continue
        item = Path(item)
        files = [item] if not item.is_dir() else sorted(
            f for f in item.rglob("*") if f.is_file() and not any(p.startswith(".") for p in f.relative_to(item).parts))
        h.update(f"{index}\0{len(files)}\0".encode())
        for f in files:
            h.update(f"{f.relative_to(item) if f != item else ''}\0".encode())
            if f.is_file():
                with open(f, "rb") as stream:
                    h.update(hashlib.file_digest(stream, "sha256").digest())
            else:
                h.update(b"missing")
    return h.hexdigest()


def save_checkpoint(file, iteration, key, model, optimizer, history, tracker):
    if not distributed.is_main():
        return
    state = {"iteration": iteration, "key": key, "state_dict": model.state_dict(),
             "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "history": history.state_dict()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    if tracker is not None:
        state["tracker"] = tracker.state_dict()
    save_torch(file, state)


def resume(file: Path, key: dict, model, optimizer, history, tracker) -> int:
    """Restores a checkpoint written under the same `run_key` and returns its iteration (0 without one). One
    of other params, code or inputs belongs to another run: it is ignored and overwritten by the next
    checkpoint."""
    if not file.is_file():
        return 0
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise voc.DataError(f"{file}: unreadable checkpoint ({e}); delete it to start afresh") from e
    if state.get("key") != key or "history" not in state:
        changed = [k for k in key if (state.get("key") or {}).get(k) != key[k]]
        tqdm.write(f"{file}: checkpoint of other {', '.join(changed) or 'state'} (or an older wsss), starting afresh")
        return 0
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    history.load_state_dict(state["history"])
    if tracker is not None:
        tracker.load_state_dict(state["tracker"])
    tqdm.write(f"{file}: resuming at iteration {state['iteration']}")
    return state["iteration"]
