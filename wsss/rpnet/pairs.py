"""RPNet's training groups (release voc12/dataloader.py VOC12ClassificationDataset): each image with
`references` images sharing one of its classes, each augmented on its own."""
import random

import numpy as np
import torch
from torch.utils.data import Dataset


class PairedImages(Dataset):
    """The items of `images` (wsss.cam.train_cam.TaggedImages: "image", "tags"; keyed as
    wsss.training.BatchPlan) plus "refs" [R, 3, crop, crop] and "ref_tags" [R, K], R = `references` images
    drawn among the same images by `draw_reference`."""

    def __init__(self, images, references: int):
        self.images, self.references = images, references
        self.members = class_members(images.images.tags[images.indices])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, key):
        index, aug_seed = key
        rng = random.Random(aug_seed)
        indices = self.images.indices
        item = self.images.load(indices[index], rng)
        refs = [self.images.load(indices[draw_reference(item["tags"].numpy(), self.members, rng)], rng)
                for _ in range(self.references)]
        return {**item, "refs": torch.stack([r["image"] for r in refs]),
                "ref_tags": torch.stack([r["tags"] for r in refs])}


def class_members(tags: np.ndarray) -> list[np.ndarray]:
    """For each class (column of tags [N, K]), the indices of the images tagged with it."""
    return [np.flatnonzero(tags[:, c]) for c in range(tags.shape[1])]


def draw_reference(tags: np.ndarray, members: list[np.ndarray], rng) -> int:
    """RPNet's pairing (as released): one of the image's classes uniformly, then uniformly one of the images
    having that class (the image itself among them). tags [K]; rng: a random.Random."""
    c = rng.choice(np.flatnonzero(tags).tolist())
    return int(members[c][rng.randrange(len(members[c]))])
