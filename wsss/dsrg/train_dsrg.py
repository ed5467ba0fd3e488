"""The train_dsrg stage: DSRG training (Sec. 3.2-3.3, Fig. 2) of a DeepLab-v2 network from seed cues.

Every iteration, on the network's output grid (stride 8):
  P = softmax of the logits, floored as SEC does (wsss.dsrg.losses.seg_probs);
  Q = dense CRF of P on the image downscaled to that grid (wsss.crf, Koltun's pairwise defaults with the
      spatial deviations divided by `crf_scale`, 12 in the released code; unary -P as released, or -log P
      with `crf_log_unary`), floored;
  S = kernels.region_grow(Q, original cues, present classes, th_fg, th_bg): grown from the ORIGINAL cues
      of the image every time (Sec. 1: "DSRG always choose the original seed cues as initial seed
      points"), on the CRF-refined probabilities as the released UpdateSeedLayer3 does; `growth: false`
      trains on the original cues (Table 2's "+BSL" row);
  loss = balanced seeding loss(P, S) (Eq. 1) + constrain loss(P, Q) (Eq. 2), whose gradient also reaches P
      through Q as the released CRF layer passes it (wsss.dsrg.losses.constrain_loss).
The input (`input`): "resize", as released (train-s.prototxt: ImageData new_height / new_width 321 and the
AnnotationLayer's mirror), warps the whole image to `crop` x `crop` and mirrors it, so no cue is lost;
"crop" takes a random `crop` window (after an optional `scale`) as train_seg does. The cues (dsrg_seeds,
image size) follow the image and are sampled onto the output grid at the cells' own positions (0, 8, ...,
320 for 321 px: wsss.seg.losses.grid_labels), as is the ground truth of the supervision log.
The schedule is in SGD `iterations` (released solver-s: 8,000 of 20 images), so a 10,582-image and a
1,464-image run follow the same schedule; parameters in DeepLab-v2's groups (wsss.models.deeplab.param_groups:
biases x2 without weight decay, new layers x`head_lr_mult`, their biases x2 that; fixed BN with ImageNet weights).

Outputs: `out` (the network, as train_seg saves it, so infer_seg reads it), `supervision` (CSV per epoch,
i.e. per len(split) // batch_size iterations: mean precision, recall and IoU over classes of the supervision
against the ground truth, as Fig. 4; epoch 0 is the original cues; the labelled fraction; seconds per
iteration in the network step, the CRF and the growth) and `plot` (that CSV drawn).

Defaults are the released values (solver-s / train-s.prototxt; the paper's Sec. 4.1 in brackets): batch_size
20, input resize, crop 321 (the warp side), scale null, lr 0.0005, lr_policy step, lr_step 1000 [2000],
lr_gamma 0.33 [0.1], iterations 8000 [not stated; 15 epochs of 10,582 would be ~7,900], momentum 0.9,
weight_decay 0.0005, head_lr_mult 10, th_fg 0.85, th_bg 0.99, crf_scale 12, crf_log_unary false (the
released layers pass P itself as the unary energy; the paper only says Koltun's CRF).
"""
import random
import time

import matplotlib
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from kernels import region_grow
from wsss import distributed, metrics
from wsss.crf import dense_crf
from wsss.datasets import voc
from wsss.dsrg.losses import balanced_seed_loss, constrain_loss, floor_probs, seg_probs
from wsss.io import atomic_path, save_csv
from wsss.models import deeplab
from wsss.params import Param, resolve
from wsss.runtime import seed_everything
from wsss.seg.losses import grid_labels
from wsss.seg.train_seg import NETWORK_PARAMS
from wsss.training import fit, iterations_per_epoch
from wsss.transforms import IMAGENET_MEAN, IMAGENET_STD, TrainAugment

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402  (after choosing the file-only backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

PARAMS = {
    **NETWORK_PARAMS,
    "tags_from": voc.TAGS_FROM,
    "growth": Param(bool, True, "grow the seeds every iteration (false: Table 2's +BSL row)"),
    "saliency_background": Param(bool, True, "whether the cues' background came from saliency (for the log)"),
    "input": Param(str, "resize", "resize: the image warped to crop x crop, as released | crop: a random crop"),
    "scale": Param(list, None, "input crop: random rescale range; null: none"),
    "iterations": Param(int, 8000, "SGD iterations (released solver-s: 8000)"),
    "th_fg": Param(float, 0.85, "Eq. 3: foreground growing threshold"),
    "th_bg": Param(float, 0.99, "Eq. 3: background growing threshold"),
    "crf_scale": Param(float, 12, "the CRF's spatial deviations divided by this (41x41 grid)"),
    "crf_log_unary": Param(bool, False, "CRF unary -log P instead of the released layers' -P"),
}


def run(params: dict, *, root, seeds, out, supervision, plot, init=None):
    """Trains DSRG on the cues `seeds`/<id>.png of `split`; `init`: a saved network to start from (the
    demo starts from its CAM network's backbone; the paper from ImageNet weights, `pretrained`)."""
    distributed.launch(train, resolve(params, PARAMS, "train_dsrg"), root=root, seeds=seeds, out=out,
                       supervision=supervision, plot=plot, init=init)


def train(params: dict, *, root, seeds, out, supervision, plot, init=None):
    seed_everything(params["seed"])
    if distributed.is_main() and not params["saliency_background"]:
        print("train_dsrg: the seed cues' background comes from the CAMs, not from saliency as in the paper "
              "(dsrg.saliency_dir is null)", flush=True)
    class_names = params["class_names"]
    ids = voc.read_ids(root, params["split"])
    tags = voc.image_tags(root, ids, class_names, params["tags_from"])
    dataset = CuedImages(root, ids, seeds, tags, len(class_names), augment(params))
    model = deeplab.build(params)
    if init is not None:
        deeplab.load_weights(model, init)
    per_epoch = iterations_per_epoch(len(ids), params["batch_size"], voc.path(root, "split", params["split"]))
    log = SupervisionLog(len(class_names), per_epoch)
    fit(model, deeplab.param_groups(model, params["head_lr_mult"]), dataset,
        DSRGStep(params, log, model.backbone.output_stride), params, params["iterations"], out=out,
        desc="train_dsrg", tracker=log, module=__name__, whole_images=(root, ids),
        inputs=[*voc.split_files(root, params["split"], "image",
                                 voc.tag_kind(voc.tags_source(root, ids, params["tags_from"]))), seeds, init])
    if distributed.is_main():
        table = log.table()
        save_csv(supervision, table)
        save_plot(plot, table, "DSRG supervision" + ("" if params["growth"] else " (no growth)"))


INPUTS = ("resize", "crop")


def augment(params: dict) -> TrainAugment:
    """The training input of params["input"] (module docstring)."""
    if params["input"] not in INPUTS:
        raise ValueError(f"input must be one of {INPUTS}, got {params['input']!r}")
    if params["input"] == "resize":
        if params["scale"]:
            raise ValueError("scale applies to input 'crop' only; input 'resize' warps the whole image")
        return TrainAugment(params["crop"], warp=True)
    return TrainAugment(params["crop"], scale=tuple(params["scale"]) if params["scale"] else None)


class CuedImages(Dataset):
    """Augmented image, its original cues, image tags and ground truth; keyed as wsss.training.BatchPlan."""

    def __init__(self, root, ids, seeds, tags, n_classes, augment):
        self.root, self.ids, self.n_classes, self.augment = root, ids, n_classes, augment
        self.cue_files = voc.label_files(seeds, ids, "seed cues")
        self.tags = torch.from_numpy(tags)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, key):
        index, aug_seed = key
        image_id = self.ids[index]
        image = voc.load_image(voc.path(self.root, "image", image_id))
        cues = voc.load_mask(self.cue_files[index], self.n_classes, image.shape[:2])
        gt = voc.load_mask_or_void(self.root, image_id, self.n_classes, image.shape[:2])  # supervision stats
        # the same seed gives the same scale, flip and crop to both label maps
        x, cues = self.augment(image, cues, random.Random(aug_seed))
        _, gt = self.augment(image, gt, random.Random(aug_seed))
        return {"image": x, "cues": cues, "gt": gt, "tags": self.tags[index]}


class DSRGStep:
    """loss_fn of wsss.training.fit for one DSRG iteration (module docstring)."""

    def __init__(self, params, log, stride: int):
        self.params, self.log, self.stride = params, log, stride

    def __call__(self, model, batch, it):
        p = self.params
        logits = model(batch["image"])
        probs = seg_probs(logits)
        grid = logits.shape[-2:]
        original = cue_seeds(grid_labels(batch["cues"], grid, self.stride), logits.shape[1])
        started = clock(probs)
        q = floor_probs(crf_batch(small_images(batch["image"], grid), probs.detach(), p["crf_scale"],
                                  p["crf_log_unary"]))
        crf_done = clock(q)
        present = torch.cat([torch.ones_like(batch["tags"][:, :1]), batch["tags"]], 1).bool()
        grown = region_grow(q, original, present, p["th_fg"], p["th_bg"]) if p["growth"] else original
        self.log.add(it, original, grown, grid_labels(batch["gt"], grid, self.stride), crf_done - started,
                     clock(grown) - crf_done)
        return balanced_seed_loss(probs, grown) + constrain_loss(probs, q)


def clock(t: torch.Tensor) -> float:
    """time.perf_counter() once t's device has finished its queued work (CUDA runs asynchronously)."""
    if t.is_cuda:
        torch.cuda.synchronize(t.device)
    return time.perf_counter()


def cue_seeds(cues: torch.Tensor, n_classes: int) -> torch.Tensor:
    """bool [B, C, h, w] seed sets S_c of a [B, h, w] cue map (255 = no cue)."""
    return cues[:, None] == torch.arange(n_classes, device=cues.device)[None, :, None, None]


def small_images(x: torch.Tensor, size) -> np.ndarray:
    """uint8 [B, h, w, 3] RGB images for the CRF: the normalised batch un-normalised and resized to the
    output grid (bilinear, corners aligned, as the released code's scipy zoom)."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = F.interpolate((x * std + mean) * 255, size, mode="bilinear", align_corners=True)
    return rgb.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def crf_batch(images: np.ndarray, probs: torch.Tensor, scale: float, log_unary: bool) -> torch.Tensor:
    """Dense-CRF marginals [B, C, h, w] (on probs' device) of each image's probabilities."""
    q = [dense_crf(img, p, scale=scale, log_unary=log_unary) for img, p in zip(images, probs.cpu().numpy())]
    return torch.from_numpy(np.stack(q)).to(probs.device)


def supervision_map(seeds: torch.Tensor) -> torch.Tensor:
    """[B, h, w] class of each pixel's seeds (the highest one when several, as region_grow's label map),
    C = unlabelled."""
    classes = torch.arange(seeds.shape[1], device=seeds.device)[None, :, None, None]
    label = torch.where(seeds, classes, -1).amax(1)
    return torch.where(label < 0, seeds.shape[1], label)


class SupervisionLog:
    """Per-epoch quality of the supervision against the ground truth (DSRG Fig. 4) and timings; a tracker
    for wsss.training.fit (its state goes into the checkpoints; the confusions are summed over DDP
    ranks at the end of each epoch)."""
    COLUMNS = ["epoch", "precision", "recall", "iou", "labelled", "network_s", "crf_s", "grow_s"]

    def __init__(self, n_classes: int, per_epoch: int):
        self.n, self.per_epoch = n_classes, per_epoch
        # confusions with an extra prediction column n = unlabelled, so recall counts what is left out
        self.cues = np.zeros((n_classes + 1, n_classes + 1), np.int64)
        self.grown = np.zeros_like(self.cues)
        self.seconds = np.zeros(3)  # whole iterations, crf, growth, summed over the epoch so far
        self.rows = np.zeros((0, len(self.COLUMNS)))

    def add(self, it, original, grown, gt, crf_s, grow_s):
        gt = gt.cpu().numpy()
        if it < self.per_epoch:  # epoch 0 of Fig. 4: the original cues, seen through epoch 1's crops
            self.cues += metrics.confusion(supervision_map(original).cpu().numpy(), gt, self.n + 1)
        self.grown += metrics.confusion(supervision_map(grown).cpu().numpy(), gt, self.n + 1)
        self.seconds[1:] += crf_s, grow_s

    def end_iteration(self, it, seconds):
        self.seconds[0] += seconds
        if (it + 1) % self.per_epoch:
            return
        epoch = (it + 1) // self.per_epoch
        self.grown = distributed.total(self.grown)
        if epoch == 1:
            cues = distributed.total(self.cues)
            self._append([0, *metrics.supervision_quality(cues, self.n), np.nan, np.nan, np.nan])
        total, crf_s, grow_s = self.seconds / self.per_epoch
        self._append([epoch, *metrics.supervision_quality(self.grown, self.n), total - crf_s - grow_s, crf_s, grow_s])
        if distributed.is_main():
            tqdm.write("epoch {:.0f}: precision {:.3f} recall {:.3f} iou {:.3f} labelled {:.3f}".format(*self.rows[-1]))
        self.grown[:] = 0
        self.seconds[:] = 0

    def _append(self, row):
        self.rows = np.vstack([self.rows, row])

    def table(self) -> pd.DataFrame:
        table = pd.DataFrame(self.rows, columns=self.COLUMNS)
        table["epoch"] = table["epoch"].astype(int)
        return table

    def state_dict(self):
        return {k: torch.from_numpy(getattr(self, k).copy()) for k in ("cues", "grown", "seconds", "rows")}

    def load_state_dict(self, state):
        for k, v in state.items():
            setattr(self, k, v.numpy())


def save_plot(file, table: pd.DataFrame, title: str):
    """Precision, recall and IoU of the supervision over epochs (DSRG Fig. 4)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for metric in ("precision", "recall", "iou"):
        ax.plot(table["epoch"], 100 * table[metric], marker="o", label=metric)
    ax.set(xlabel="epoch", ylabel="%", title=title, ylim=(0, 100))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    fig.tight_layout()
    with atomic_path(file) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
