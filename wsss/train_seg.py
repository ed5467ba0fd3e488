"""The train_seg stage: a DeepLab network trained fully supervised on a folder of pseudo-labels
(`<labels>/<id>.png`, palette PNGs, 255 = ignore): IRNet's random-walk labels, DSRG's retrain (Sec. 4.4),
the scribble methods' labels.

Cross-entropy with ignore, SGD with momentum, poly learning rate (new layers at `head_lr_mult` x), random
scale, flip and crop (wsss.transforms). Paper values (DeepLab-v2 as DSRG's retrain, released solver-f):
arch deeplab_v2, batch_size 20, crop 321, scale [0.5, 2.0], lr 0.001, power 0.9, iterations 20000,
momentum 0.9, weight_decay 0.0005, head_lr_mult 10. The retrain starts from the DSRG model (`init`), as the
released run.sh does.

`fit` is the training loop every segmentation trainer shares. It is resumable: every `checkpoint_every`
iterations it saves weights, optimizer, RNG state and iteration next to `out` (`<out>.ckpt`); a rerun with
the same params continues from there and ends with the weights of an uninterrupted run (on the CPU),
because each batch and each crop is drawn from RNGs seeded by (seed, epoch, position), not by history.
"""
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from wsss import data
from wsss.io import atomic_path
from wsss.losses import cross_entropy
from wsss.models import deeplab
from wsss.runtime import device, seed_everything
from wsss.transforms import TrainAugment


def run(params: dict, *, root, labels, out, init=None):
    """Trains on the pseudo-labels `labels`/<id>.png of `split` and saves {"state_dict", "params"} to `out`;
    `init`: a saved network (segmentation or CAM model) to start from instead of `pretrained`."""
    seed_everything(params["seed"])
    ids = data.read_ids(root, params["split"])
    dataset = PseudoLabelled(root, ids, labels, len(params["class_names"]),
                             TrainAugment(params["crop"], scale=tuple(params["scale"])))
    model = deeplab.build(params)
    if init is not None:
        deeplab.load_weights(model, init)
    fit(model, dataset, lambda net, batch, it: cross_entropy(net(batch["image"]), batch["label"]),
        params, params["iterations"], out=out, desc="train_seg")


class PseudoLabelled(Dataset):
    """Augmented (image, label) pairs; items are keyed by (index, augmentation seed), see BatchPlan."""

    def __init__(self, root, ids, labels, n_classes, augment):
        self.root, self.ids, self.n_classes, self.augment = root, ids, n_classes, augment
        self.files = label_files(labels, ids, "pseudo-label")

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, key):
        index, aug_seed = key
        image = data.load_image(data.path(self.root, "image", self.ids[index]))
        label = data.load_mask(self.files[index], self.n_classes, image.shape[:2])
        x, y = self.augment(image, label, random.Random(aug_seed))
        return {"image": x, "label": y}


def label_files(folder, ids, what: str) -> list[Path]:
    """`folder`/<id>.png for every id; checked up front, so a missing file stops the stage before training."""
    files = [Path(folder) / f"{i}.png" for i in ids]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise data.DataError(f"{missing[0]}: {what} not found ({len(missing)} of {len(ids)} missing in {folder})")
    return files


class BatchPlan:
    """Batches of (index, augmentation seed) for iterations start..n_iters-1: epoch e visits a permutation
    drawn from (seed, e), the last incomplete batch dropped; each slot gets its own augmentation seed."""

    def __init__(self, n_items: int, batch_size: int, seed: int, start: int, n_iters: int):
        self.per_epoch = iterations_per_epoch(n_items, batch_size)
        self.n_items, self.batch_size, self.seed, self.start, self.n_iters = n_items, batch_size, seed, start, n_iters

    def __len__(self):
        return max(0, self.n_iters - self.start)

    def __iter__(self):
        for it in range(self.start, self.n_iters):
            epoch, pos = divmod(it, self.per_epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n_items)
            slots = range(pos * self.batch_size, (pos + 1) * self.batch_size)
            yield [(int(order[s]), int(np.random.SeedSequence([self.seed, epoch, s]).generate_state(1)[0]))
                   for s in slots]


def iterations_per_epoch(n_items: int, batch_size: int) -> int:
    if n_items < batch_size:
        raise data.DataError(f"{n_items} training images are fewer than one batch of {batch_size}")
    return n_items // batch_size


def lr_factor(params: dict, it: int, n_iters: int) -> float:
    """Poly (DeepLab: (1 - it / n_iters) ** power) or step (DSRG: gamma ** (it // lr_step)) decay."""
    policy = params.get("lr_policy", "poly")
    if policy == "poly":
        return (1 - it / n_iters) ** params.get("power", 0.9)
    if policy == "step":
        return params["lr_gamma"] ** (it // params["lr_step"])
    raise ValueError(f"lr_policy must be 'poly' or 'step', got {policy!r}")


def fit(model, dataset, loss_fn, params: dict, n_iters: int, *, out, desc: str, tracker=None):
    """Trains `model` for `n_iters` SGD iterations of `loss_fn(model, batch, iteration) -> loss` over
    `dataset` (items keyed by BatchPlan), checkpointing, then saves {"state_dict", "params"} to `out`.

    tracker: optional object with end_iteration(it, seconds) and state_dict / load_state_dict, whose
    state is checkpointed with the weights (train_dsrg's supervision log)."""
    dev = device(params.get("device", "auto"))
    model.to(dev).train()
    backbone, heads = deeplab.param_groups(model)
    mults = [1.0, params.get("head_lr_mult", 10.0)]
    optimizer = torch.optim.SGD([{"params": backbone}, {"params": heads}], lr=params["lr"],
                                momentum=params.get("momentum", 0.9), weight_decay=params["weight_decay"])
    ckpt = Path(f"{out}.ckpt")
    start = resume(ckpt, params, model, optimizer, tracker)
    plan = BatchPlan(len(dataset), params["batch_size"], params["seed"], start, n_iters)
    loader = DataLoader(dataset, batch_sampler=plan, num_workers=params.get("num_workers", 0))
    bar = tqdm(total=n_iters, initial=start, desc=desc)
    for it, batch in enumerate(loader, start):
        for group, mult in zip(optimizer.param_groups, mults):
            group["lr"] = params["lr"] * mult * lr_factor(params, it, n_iters)
        started = time.perf_counter()
        loss = loss_fn(model, {k: v.to(dev) for k, v in batch.items()}, it)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if tracker is not None:
            tracker.end_iteration(it, time.perf_counter() - started)
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (it + 1) % params["checkpoint_every"] == 0 and it + 1 < n_iters:
            save_checkpoint(ckpt, it + 1, params, model, optimizer, tracker)
    bar.close()
    save_model(out, model, params)
    ckpt.unlink(missing_ok=True)


def save_model(out, model, params):
    with atomic_path(out) as tmp:
        torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "params": params}, tmp)


def save_checkpoint(file, iteration, params, model, optimizer, tracker):
    state = {"iteration": iteration, "params": params, "state_dict": model.state_dict(),
             "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    if tracker is not None:
        state["tracker"] = tracker.state_dict()
    with atomic_path(file) as tmp:
        torch.save(state, tmp)


def resume(file: Path, params, model, optimizer, tracker) -> int:
    """Restores a checkpoint written with the same params and returns its iteration (0 without one). One
    from other params belongs to another run: it is ignored and overwritten by the next checkpoint."""
    if not file.is_file():
        return 0
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise data.DataError(f"{file}: unreadable checkpoint ({e}); delete it to start afresh") from e
    if state.get("params") != params:
        tqdm.write(f"{file}: checkpoint of other params, starting afresh")
        return 0
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if tracker is not None:
        tracker.load_state_dict(state["tracker"])
    tqdm.write(f"{file}: resuming at iteration {state['iteration']}")
    return state["iteration"]
