"""Stage train_cam: the multi-label classifier whose CAMs seed every later stage (IRNet Sec. 3, Eq. 1;
released step/train_cam.py).

Images of `split` with their image-level tags, augmented as IRNet does (random long side in
`resize_long`, flip, `crop` x `crop` random crop); multi-label soft-margin loss on the GAP logits; SGD whose
learning rate decays as lr * (1 - step / max_step) ** 0.9 (IRNet Sec. 6.1 "polynomial decay", PolyOptimizer),
the new classifier at 10x lr. No momentum: the released PolyOptimizer passes weight_decay where SGD
expects momentum, so IRNet's SGD runs with momentum 1e-4, i.e. none.

params (IRNet on VOC 2012 / CPU demo): seed, device, class_names, tags_from, split, backbone
(resnet50 / small), pretrained (ImageNet file / null), strides ((2,2,2,1)), crop (512 / 128), resize_long
([320, 640] / [96, 160]), batch_size (16), epochs (5 / 12), lr (0.1), weight_decay (1e-4), num_workers (0).
Output `out`: {"state_dict", "params", "history"} (history: mean loss per epoch), written atomically."""
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from wsss.data import DataError, VOCDataset, path
from wsss.io import atomic_path
from wsss.models import cam
from wsss.runtime import device, seed_everything
from wsss.transforms import TrainAugment

POLY_POWER = 0.9  # IRNet torchutils.PolyOptimizer
NEW_LAYER_LR_MULT = 10  # IRNet train_cam.py: the classifier learns at 10x the backbone rate
DEFAULTS = dict(device="auto", strides=[2, 2, 2, 1], num_workers=0)


class TaggedImages(Dataset):
    """(augmented image [3, crop, crop], tags float32 [K]) pairs of a VOCDataset."""

    def __init__(self, images: VOCDataset, augment: TrainAugment):
        self.images, self.augment = images, augment

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        item = self.images[index]
        return self.augment(item["image"])[0], torch.from_numpy(item["tags"])


def run(params: dict, *, root, out):
    """Trains the CAM network on `split` of `root` and saves it to `out`."""
    p = {**DEFAULTS, **params}
    seed_everything(p["seed"])
    dev = device(p["device"])
    images = VOCDataset(root, p["split"], p["class_names"], p["tags_from"], with_mask=False)
    if len(images) < p["batch_size"]:
        raise DataError(f"{path(root, 'split', p['split'])}: {len(images)} images, fewer than one batch "
                        f"(batch_size {p['batch_size']})")
    loader = DataLoader(TaggedImages(images, TrainAugment(p["crop"], resize_long=p["resize_long"])),
                        batch_size=p["batch_size"], shuffle=True, drop_last=True, num_workers=p["num_workers"],
                        generator=torch.Generator().manual_seed(p["seed"]), pin_memory=dev.type == "cuda")
    # channels-last runs the CPU convolutions about 1.4x faster and suits GPU convolutions as well
    model = cam.build(p).to(dev, memory_format=torch.channels_last)
    optimizer, schedule = _optimizer(model, p, max_step=len(loader) * p["epochs"])
    history = []
    for epoch in range(p["epochs"]):
        history.append(_train_epoch(model, loader, optimizer, schedule, dev, f"train_cam {epoch + 1}/{p['epochs']}"))
        tqdm.write(f"epoch {epoch + 1}: loss {history[-1]:.4f}")
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    with atomic_path(out) as tmp:
        torch.save({"state_dict": state, "params": p, "history": history}, tmp)


def _optimizer(model, p, max_step):
    backbone, new = model.param_groups()
    optimizer = torch.optim.SGD([{"params": backbone, "lr": p["lr"]},
                                 {"params": new, "lr": NEW_LAYER_LR_MULT * p["lr"]}],
                                lr=p["lr"], weight_decay=p["weight_decay"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / max_step) ** POLY_POWER)
    return optimizer, schedule


def _train_epoch(model, loader, optimizer, schedule, dev, desc) -> float:
    """One pass over the loader; returns the mean multi-label soft-margin loss."""
    model.train()
    total = 0.0
    for images, tags in tqdm(loader, desc=desc, leave=False):
        images = images.to(dev, memory_format=torch.channels_last, non_blocking=True)
        loss = F.multilabel_soft_margin_loss(model(images), tags.to(dev))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        total += loss.item()
    return total / len(loader)
