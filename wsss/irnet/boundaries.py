"""Ground-truth class boundaries, for scoring IRNet's boundary map (eval_boundary) and for the random walk
with ground-truth boundaries (make_sem_seg_labels `boundaries: ground_truth`, a diagnostic upper bound)."""
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from wsss.datasets import voc


def gt_boundary(mask: np.ndarray) -> np.ndarray:
    """bool [H, W], a 1 px line: pixels whose right or lower neighbour has another label, after every void
    (255) pixel took the label of its nearest non-void pixel (so VOC's void band along object borders
    becomes the border through its middle). All False for an all-void mask."""
    void = mask == voc.IGNORE
    if void.all():
        return np.zeros(mask.shape, bool)
    nearest = ndimage.distance_transform_edt(void, return_distances=False, return_indices=True)
    filled = mask[tuple(nearest)]
    edge = np.zeros(mask.shape, bool)
    edge[:-1] |= filled[1:] != filled[:-1]
    edge[:, :-1] |= filled[:, 1:] != filled[:, :-1]
    return edge


def gt_boundary_grid(mask: np.ndarray, input_size, grid_shape) -> torch.Tensor:
    """float [h, w] in {0, 1}: `gt_boundary` of `mask` on IRNet's stride-4 grid of an input of `input_size`
    (cell (i, j) covers input pixels 4i..4i+3, 4j..4j+3; a cell is boundary if any of its pixels is)."""
    edge = torch.from_numpy(gt_boundary(mask)).float()[None, None]
    edge = F.interpolate(edge, size=tuple(input_size), mode="nearest")
    h, w = grid_shape
    edge = F.pad(edge, (0, 4 * w - edge.shape[-1], 0, 4 * h - edge.shape[-2]))
    return F.max_pool2d(edge, 4)[0, 0]
