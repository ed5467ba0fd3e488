"""Data-parallel training over the GPUs a job was given: a rule with `resources: gpu=N` trains with torch
DDP over its N devices.

A trainer's run() hands its work to `launch(train, params, **paths)`. With one process (the CPU, one GPU)
that is a plain call. With N it spawns N processes, one per device, joined in a process group (NCCL on
GPUs, gloo on the CPU), and each runs `train`. N is WSSS_WORLD_SIZE when set (tests run two CPU processes),
else the job's GPUs (WSSS_GPUS, which the workflow sets from the rule's `gpu` resource) when the device is
a GPU, else 1.

Every rank draws the same global batches (wsss.training.BatchPlan) and takes its slice of each; DDP
averages the gradients, and losses normalised by counts over the batch divide by `mean(count)`, so N ranks
of batch B/N step as one process of batch B. BatchNorm layers that learn their statistics are synchronised
on GPUs (SyncBatchNorm); on the CPU each rank normalises its own slice. Rank 0 writes the outputs. A
killed launcher takes its ranks with it (each rank sets PR_SET_PDEATHSIG to SIGKILL; tested), so no orphan
goes on to write the outputs of a job Snakemake has given up."""
import multiprocessing
import os
import sys
import tempfile

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from wsss import jobs, runtime


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def world_size(device_preference: str = "auto") -> int:
    """How many processes a trainer runs as (module docstring)."""
    if "WSSS_WORLD_SIZE" in os.environ:
        return int(os.environ["WSSS_WORLD_SIZE"])
    if runtime.device(device_preference).type == "cuda":
        return max(1, int(os.environ.get("WSSS_GPUS") or 1))
    return 1


def launch(fn, params: dict, **paths):
    """fn(params, **paths) in one process, or in one process per device under DDP; `fn` must be a
    module-level function (the spawned processes import it)."""
    n = world_size(params.get("device", "auto"))
    if n == 1:
        return fn(params, **paths)
    backend = "nccl" if runtime.device(params.get("device", "auto")).type == "cuda" else "gloo"
    if backend == "nccl" and torch.cuda.device_count() < n:
        raise RuntimeError(f"training on {n} GPUs, but only {torch.cuda.device_count()} are visible "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    print(f"DDP: training on {n} processes ({backend})", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="wsss-ddp-") as tmp:  # file rendezvous: no port to collide on
        mp.spawn(_rank_main, args=(n, backend, f"file://{tmp}/rendezvous", fn, params, paths), nprocs=n)


def _rank_main(rank_: int, n: int, backend: str, init_method: str, fn, params, paths):
    # torch's spawn only sends SIGINT when the launcher dies, which a rank inside destroy_process_group (waiting
    # for the others) can outlive; a killed job must take its ranks with it at once
    jobs.die_with_parent()
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():  # the launcher died before the signal was set
        os._exit(1)
    if backend == "nccl":
        torch.cuda.set_device(rank_)
    else:  # CPU ranks share the job's cores
        runtime.use_threads(max(1, runtime.threads() // n))
    dist.init_process_group(backend, init_method=init_method, rank=rank_, world_size=n)
    try:
        fn(params, **paths)
    finally:
        dist.destroy_process_group()


def wrap(model: nn.Module) -> nn.Module:
    """The model under DDP (learned BatchNorm synchronised on GPUs); the model itself in one process.
    Parameters stay the same objects, so an optimizer may hold them before or after."""
    if size() == 1:
        return model
    if next(model.parameters()).is_cuda:
        _sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model)


def _sync_batchnorm(module: nn.Module):
    """Replaces every plain nn.BatchNorm2d by a SyncBatchNorm holding the same tensors. Not torch's
    convert_sync_batchnorm: that also converts subclasses such as FixedBatchNorm, whose stored statistics
    must stay fixed."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = nn.SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            sync.weight, sync.bias = child.weight, child.bias
            sync.running_mean, sync.running_var = child.running_mean, child.running_var
            sync.num_batches_tracked = child.num_batches_tracked
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            _sync_batchnorm(child)


def mean(t: torch.Tensor) -> torch.Tensor:
    """The average of `t` over the ranks, detached (`t` itself in one process). A loss that divides a sum
    over its batch slice by mean(count) is, once DDP averages the gradients, the whole batch's sum / count."""
    t = t.detach()
    if size() == 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / size()


def total(a: np.ndarray) -> np.ndarray:
    """Element-wise sum of an array over the ranks (per-rank counts such as confusion matrices)."""
    if size() == 1:
        return a
    t = torch.from_numpy(np.ascontiguousarray(a))
    if dist.get_backend() == "nccl":
        t = t.to(torch.device("cuda", torch.cuda.current_device()))  # NCCL reduces on this rank's GPU
    dist.all_reduce(t)
    return t.cpu().numpy()
