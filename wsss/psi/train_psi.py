"""The train_psi stage: PSI (Xu et al., ICCV 2021) trained on scribbles, CPP and SLD each on or off
(Table 3: baseline DeepLab-v3+ on scribbles / + CPP / + SLD / both).

Alternating optimisation (Sec. 4), `steps` = t label-diffusion steps (Table 6: 3). The `epochs` are split
evenly over the t + 1 training phases (the remainder goes to the last): phase 0 trains the segmentation
network (Theta) on the scribbles y_R0; before each phase s = 1..t, with Theta fixed, `sld_epochs` passes over
the training images solve for the SLD network (theta, Adam on L_sld, Eq. 12; theta carries over between
steps), then one more pass diffuses the supervision with it, y_R_s = F_sld(y_R_{s-1}, M, theta) (Eq. 5-9,
wsss.psi.sld). The phases are consecutive parts of ONE poly schedule over all `epochs` (the paper's 200
epochs with poly; wsss.training.fit's `first`..`stop` of one schedule): its learning rate and batches continue
across the diffusion steps, only SGD's momentum restarts; train_log.csv covers every phase. Without SLD all
epochs train on the scribbles. L_seg = partial cross-entropy + lambda_1 L_p (Eq. 10-11, wsss.psi.losses), the
same in every row of Table 3.

Diffusion works at image resolution: M is the softmax of the logits upsampled (bilinear) to the image.
Outputs: `out` (the network; infer_seg rebuilds it from its params' arch, wsss.models.load_segmenter),
`supervision`/t<s>/<id>.png (palette PNG, 255 unlabelled; t0 = the scribbles) and `scores` (CSV per step:
mean precision, recall and IoU over classes of the supervision against the masks, labelled fraction).

Paper values (Sec. 5.2): SGD momentum 0.9, poly, lr 0.001, weight_decay 0.001, crop 512, scale [0.5, 2.0],
rotation 10 (degrees, +-), flip, epochs 200, lambda_1 100 (VOC; 1 on PASCAL-Context), lambda_2 1, k 20,
steps 3, multi-scale + flip at test, no CRF. Not in the paper (ours): batch_size, head_lr_mult 10 (DeepLab),
sld_radius (window growth per step, px), sld_hidden, sld_lr, sld_epochs.
"""
import contextlib
import random
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from wsss import distributed, metrics, training
from wsss.datasets import voc
from wsss.io import atomic_path, save_csv, save_png
from wsss.models import deeplab
from wsss.params import Param, resolve
from wsss.psi import net as psi_net
from wsss.psi import sld
from wsss.psi.losses import seg_loss, sld_loss
from wsss.runtime import device, seed_everything
from wsss.training import fit, iterations_per_epoch
from wsss.transforms import IMAGENET_MEAN, TrainAugment

PARAMS = {
    **training.PARAMS,
    **psi_net.PARAMS,
    "split": voc.SPLIT,
    "crop": Param(int, 512, "square training crop side"),
    "scale": Param(list, [0.5, 2.0], "random rescale range"),
    "rotation": Param(float, 10.0, "random rotation in [-rotation, rotation] degrees"),
    "head_lr_mult": Param(float, 10.0, "learning-rate multiplier of the new layers"),
    "epochs": Param(int, 200, "epochs over `split`, split over the steps + 1 training phases"),
    "lambda_1": Param(float, 100.0, "Eq. 11 weight of the smoothness term L_p (0: partial CE only)"),
    "sld": Param(bool, True, "semantic label diffusion (false: train on the scribbles throughout)"),
    "steps": Param(int, 3, "label-diffusion steps t (Table 6)"),
    "k": Param(float, 20.0, "Eq. 9 soft-binarisation factor"),
    "lambda_2": Param(float, 1.0, "Eq. 12 weight of the agreement with the segmentation"),
    "sld_radius": Param(int, 16, "Omega_{c,r}: the window radius r grows by this many pixels per step"),
    "sld_hidden": Param(int, 16, "hidden units of g(mu, sigma^2 | theta)"),
    "sld_lr": Param(float, 0.01, "Adam learning rate of theta"),
    "sld_epochs": Param(int, 5, "passes over the training images that solve for theta at each step (Theta fixed)"),
}


def run(params: dict, *, root, out, supervision, scores, scribbles=None, init=None):
    """Trains PSI on the scribbles of `split` (`scribbles`/<id>.png, e.g. CDSP's dropped / shrunk sets; default
    the root's); `init`: a saved network to start from instead of `pretrained`."""
    distributed.launch(train, resolve(params, PARAMS, "train_psi"), root=root, out=out, supervision=supervision,
                       scores=scores, scribbles=scribbles, init=init)


def train(params: dict, *, root, out, supervision, scores, scribbles=None, init=None):
    if params["arch"] != "psi":
        raise ValueError(f"train_psi trains arch 'psi', got {params['arch']!r}")
    seed_everything(params["seed"])
    ids = voc.read_ids(root, params["split"])
    n = len(params["class_names"])
    scribble_files = voc.scribble_files(root, ids, scribbles)
    scribble_maps = [voc.load_scribble(f, n) for f in scribble_files]
    dataset = Supervised(root, ids, scribble_maps, params["rotation"],
                         TrainAugment(params["crop"], scale=tuple(params["scale"])))
    model = psi_net.build(params)
    if init is not None:
        deeplab.load_weights(model, init)
    g = sld.ThresholdNet(params["sld_hidden"])
    diffusion = Diffusion(params, g, root, ids, scribble_maps)
    per_epoch = iterations_per_epoch(len(ids), params["batch_size"], voc.path(root, "split", params["split"]))
    phases = phase_epochs(params["epochs"], params["steps"] + 1 if params["sld"] else 1)
    backbone, heads = deeplab.backbone_and_heads(model)
    with (atomic_path(supervision) if distributed.is_main() else contextlib.nullcontext()) as folder:
        log = SupervisionLog(root, ids, n, folder)
        log.record(0, dataset.labels)
        ends = [int(e) for e in np.cumsum(phases) * per_epoch]  # each phase's last iteration + 1
        history = None
        for step, end in enumerate(ends):
            if step:
                dataset.labels = diffusion.step(model, step, dataset.labels)
                log.record(step, dataset.labels)
            last = step == len(phases) - 1
            phase_out = out if last else f"{out}.t{step}"
            # one poly schedule over all phases: n_iters is the whole run, the phase is first..stop-1; the
            # diffusion reads the networks of the earlier phases at one scale only
            phase_params = params if last else {**params, "bn_scales": [1.0]}
            history = fit(model, [(backbone, 1.0), (heads, params["head_lr_mult"])], dataset,
                          lambda net, batch, it: seg_loss(net(batch["image"]), batch["label"], params["lambda_1"]),
                          phase_params, ends[-1], out=phase_out, desc=f"train_psi t{step}", module=__name__,
                          inputs=[*voc.split_files(root, params["split"], "image"), *scribble_files, init],
                          first=end - phases[step] * per_epoch, stop=end, history=history,
                          whole_images=(root, ids))
            if not last and distributed.is_main():
                Path(phase_out).unlink()
    if distributed.is_main():
        save_csv(scores, log.table())


def phase_epochs(epochs: int, phases: int) -> list[int]:
    """The epochs of each training phase: an even split, the remainder to the last phase."""
    if epochs < phases:
        raise ValueError(f"epochs ({epochs}) must be at least the number of training phases ({phases})")
    return [epochs // phases] * (phases - 1) + [epochs - epochs // phases * (phases - 1)]


class Supervised(Dataset):
    """Augmented (image, current supervision) pairs keyed as wsss.training.BatchPlan; `labels` (uint8 maps
    at image size, 255 unlabelled) start as the scribbles and are replaced after each diffusion step."""

    def __init__(self, root, ids, labels, rotation, augment):
        self.root, self.ids, self.labels, self.rotation, self.augment = root, ids, list(labels), rotation, augment

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, key):
        index, aug_seed = key
        rng = random.Random(aug_seed)
        image = voc.load_image(voc.path(self.root, "image", self.ids[index]))
        image, label = rotate(image, self.labels[index], rng.uniform(-self.rotation, self.rotation))
        x, y = self.augment(image, label, rng)
        return {"image": x, "label": y}


def rotate(image: np.ndarray, label: np.ndarray, degrees: float):
    """Rotation about the centre (Sec. 5.2), same size: bilinear image filled with the mean colour (0 after
    normalisation), nearest labels filled with 255."""
    if degrees == 0:
        return image, label
    fill = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)
    image = np.asarray(Image.fromarray(image).rotate(degrees, Image.BILINEAR, fillcolor=fill))
    return image, np.asarray(Image.fromarray(label).rotate(degrees, Image.NEAREST, fillcolor=sld.IGNORE))


class Diffusion:
    """One SLD step over the training images with Theta fixed (module docstring): solve for theta, then Eq. 5."""

    def __init__(self, params, g, root, ids, scribbles):
        self.params, self.g, self.root, self.ids, self.scribbles = params, g, root, ids, scribbles
        self.optimizer = torch.optim.Adam(g.parameters(), lr=params["sld_lr"])

    def step(self, model, step: int, labels: list) -> list:
        p = self.params
        model.eval()
        self.g.to(device(p["device"])).train()
        for epoch in range(p["sld_epochs"]):  # Sec. 4: "we fix Theta and solve for theta" (L_sld, Eq. 12)
            losses = []
            for b in self.batches(model, step, labels, f"theta t{step}"):
                loss = sld_loss(b.conf, sld.gamma_of(b.mu, b.var, self.g), p["k"], b.y_0, b.omega, b.present,
                                p["lambda_2"])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                losses.append(loss.item())
            if distributed.is_main():
                tqdm.write(f"sld t{step} theta epoch {epoch}: mean L_sld {np.mean(losses):.4f}")
        grown = []
        with torch.no_grad():  # then diffuse every image with the solved theta
            for b in self.batches(model, step, labels, f"sld t{step}"):
                soft = sld.soft_binarise(b.conf, sld.gamma_of(b.mu, b.var, self.g), p["k"])
                grown += list(sld.diffuse(b.y_t, soft, b.omega, b.present).cpu().numpy().astype(np.uint8))
        model.train()
        return grown

    def batches(self, model, step: int, labels: list, desc: str):
        """A DiffusionBatch per group of training images of one size."""
        p, dev = self.params, device(self.params["device"])
        radius, n = p["sld_radius"] * step, len(p["class_names"])
        for index, x in tqdm(voc.image_batches(self.root, self.ids, p["batch_size"]), desc=desc,
                             disable=not distributed.is_main()):
            x = x.to(dev)
            y_t, y_0 = (torch.from_numpy(np.stack([m[i] for i in index]).astype(np.int64)).to(dev)
                        for m in (labels, self.scribbles))
            with torch.no_grad():
                conf = F.softmax(F.interpolate(model(x), x.shape[-2:], mode="bilinear", align_corners=False), 1)
            omega, present = sld.regions(y_t, n, radius), sld.present_classes(y_0, n)
            yield DiffusionBatch(conf, *sld.region_stats(conf, omega), y_t, y_0, omega, present)


class DiffusionBatch(NamedTuple):
    """What one SLD step needs of a batch: M (Theta's softmax at image size), Eq. 6-7's mu and sigma^2 over
    Omega_{c,r} (they do not depend on theta), y_R_t, y_R_0, Omega_{c,r} and the scribbles' classes."""
    conf: torch.Tensor
    mu: torch.Tensor
    var: torch.Tensor
    y_t: torch.Tensor
    y_0: torch.Tensor
    omega: torch.Tensor
    present: torch.Tensor


class SupervisionLog:
    """Writes each step's supervision (`folder`/t<s>/<id>.png; no folder: not the main rank) and scores it
    against the masks: mean precision / recall / IoU over classes (unlabelled pixels count against recall)
    and the labelled fraction of the pixels with a mask (of all pixels where no image has one: NaN scores)."""
    COLUMNS = ["step", "precision", "recall", "iou", "labelled"]

    def __init__(self, root, ids, n_classes, folder):
        self.root, self.ids, self.n, self.folder, self.rows = root, ids, n_classes, folder, []

    def record(self, step: int, labels: list):
        conf = np.zeros((self.n + 1, self.n + 1), np.int64)  # prediction column n = unlabelled
        unlabelled = np.zeros(2, np.int64)  # unlabelled pixels, pixels: the fraction without masks
        palette = voc.voc_palette()
        for image_id, label in zip(self.ids, labels):
            gt = voc.load_mask_or_void(self.root, image_id, self.n, label.shape)  # no mask: not scored
            conf += metrics.confusion(np.where(label == sld.IGNORE, self.n, label), gt, self.n + 1)
            unlabelled += ((label == sld.IGNORE).sum(), label.size)
            if self.folder is not None:
                save_png(Path(self.folder) / f"t{step}" / f"{image_id}.png", label, palette)
        quality = metrics.supervision_quality(conf, self.n)
        if not conf.sum():  # no image has a mask: the labelled fraction of all pixels
            quality[-1] = 1 - unlabelled[0] / max(unlabelled[1], 1)
        self.rows.append([step, *quality])
        if distributed.is_main():
            tqdm.write("supervision t{}: precision {:.3f} recall {:.3f} iou {:.3f} labelled {:.3f}".format(
                *self.rows[-1]))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.COLUMNS)
