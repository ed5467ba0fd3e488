"""Instance map from a displacement field (IRNet Sec. 5.1, Eq. 10, 14, 15) and detections (Sec. 5.2)."""
import numpy as np
import torch

from wsss.io import save_npz
from wsss.irnet.make_ins_seg_labels import (
    connected_components,
    detections,
    instance_map,
    load_instances,
    refine_centroids,
)


def _bfs_components(mask: np.ndarray) -> np.ndarray:
    """Reference 4-connected labelling, components numbered in raster order of their first pixel."""
    out = np.zeros(mask.shape, np.int64)
    n = 0
    for start in zip(*np.nonzero(mask)):
        if out[start]:
            continue
        n += 1
        out[start] = n
        todo = [start]
        while todo:
            y, x = todo.pop()
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not out[ny, nx]:
                    out[ny, nx] = n
                    todo.append((ny, nx))
    return out


def test_connected_components_match_breadth_first_search():
    gen = torch.Generator().manual_seed(0)
    for density in (0.3, 0.55, 0.8):
        mask = torch.rand(23, 31, generator=gen) < density
        assert np.array_equal(connected_components(mask).numpy(), _bfs_components(mask.numpy()))
    spiral = np.zeros((9, 9), bool)  # a long winding component
    spiral[0, :] = spiral[:, 8] = spiral[8, :] = spiral[2:, 0] = spiral[2, :7] = spiral[2:7, 6] = True
    assert np.array_equal(connected_components(torch.from_numpy(spiral)).numpy(), _bfs_components(spiral))
    assert connected_components(torch.zeros(4, 5, dtype=torch.bool)).eq(0).all()


def _two_instance_field(scale: float):
    """Two touching 10x12 instances of a 24x30 map whose D points `scale` of the way to their centroids;
    background D points far off the map (its centroids land in the corner, where |D| is large)."""
    h, w = 24, 30
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    regions = torch.zeros(2, h, w, dtype=torch.bool)
    regions[0, 6:16, 3:15] = True
    regions[1, 6:16, 15:27] = True
    disp = torch.full((2, h, w), -100.0)
    for region in regions:
        cy, cx = ys[region].mean(), xs[region].mean()
        disp[0][region] = scale * (cy - ys[region])
        disp[1][region] = scale * (cx - xs[region])
    return disp, regions


def test_centroid_detection_recovers_the_instances_of_a_synthetic_field():
    disp, regions = _two_instance_field(scale=1.0)
    masks = instance_map(disp, iterations=100, centroid_thres=2.5).bool()
    # group 0: pixels whose centroid lies in no candidate component (the background); then one per instance
    assert len(masks) == 3
    assert {tuple(m.nonzero().flatten().tolist()) for m in masks[1:]} == \
           {tuple(r.nonzero().flatten().tolist()) for r in regions}
    assert torch.equal(masks[0], ~regions.any(0))


def test_refinement_eq_10_follows_a_field_that_points_only_part_of_the_way():
    disp, regions = _two_instance_field(scale=0.6)
    centroid = refine_centroids(disp, iterations=100)
    for region in regions:  # every pixel ends at its instance's centroid
        target = torch.stack(torch.meshgrid(torch.arange(24.), torch.arange(30.), indexing="ij"))[:, region].mean(1)
        assert (centroid[:, region] - target[:, None]).abs().max() < 0.05
    assert len(instance_map(disp, iterations=100, centroid_thres=2.5)) == 3
    # without refinement the far pixels never reach a candidate component
    unrefined = instance_map(disp, iterations=0, centroid_thres=2.5).bool()
    assert not torch.equal(unrefined[1] | unrefined[2], regions.any(0))


def test_detections_split_channels_into_pieces_scored_by_their_maximum(tmp_path):
    scores = torch.zeros(2, 20, 20)
    scores[0, 2:8, 2:8] = 0.9  # class channel 0: two separate pieces
    scores[0, 5, 5] = 1.0
    scores[0, 12:18, 12:18] = 0.5
    scores[1, 2:8, 12:18] = 0.7  # channel 1: one piece
    scores[1, 0, 19] = 0.6  # and a one-pixel piece, under 1 % of the image: kept with score 0
    found = detections(scores, np.array([3, 1]), bg_thres=0.25)
    # channel by channel, pieces in raster order of their first pixel
    assert found["classes"].tolist() == [3, 3, 1, 1]
    assert np.allclose(found["scores"], [1.0, 0.5, 0.0, 0.7])
    assert found["instance_map"].dtype == np.uint16
    save_npz(tmp_path / "x.npz", **found)
    loaded = load_instances(tmp_path / "x.npz")
    assert loaded["masks"].shape == (4, 20, 20)
    assert np.array_equal(loaded["masks"][1], (scores[0] == 0.5).numpy())
    assert loaded["masks"].sum() == 36 + 36 + 36 + 1
