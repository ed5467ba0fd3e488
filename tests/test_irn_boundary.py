"""eval_boundary's ground-truth boundaries and tolerance matching, against brute force on random inputs."""
import numpy as np
import pytest

from wsss.irnet import boundaries, eval_boundary


def test_gt_boundary_is_the_line_through_the_void_band():
    mask = np.zeros((8, 10), np.uint8)
    mask[:, 5:] = 2
    mask[:, 4:6] = 255  # a 2 px void band between background and class 2
    edge = boundaries.gt_boundary(mask)
    assert edge[:, 4].all() and edge.sum() == 8  # one column: the last pixel before the label changes
    assert not boundaries.gt_boundary(np.full((4, 4), 255, np.uint8)).any()
    assert not boundaries.gt_boundary(np.ones((4, 4), np.uint8)).any()


@pytest.mark.parametrize("seed", range(4))
def test_match_counts_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    boundary = rng.random((13, 11))
    truth = rng.random((13, 11)) < 0.1
    thresholds, tolerance = [0.2, 0.6, 0.95, 1.0], 1.5
    ys, xs = np.mgrid[:13, :11]

    def near(pixels):  # float64 distance to every True pixel, by enumeration
        points = np.argwhere(pixels)
        if len(points) == 0:
            return np.zeros(pixels.shape, bool)
        d = np.hypot(ys[..., None] - points[:, 0], xs[..., None] - points[:, 1]).min(-1)
        return d <= tolerance

    expected = [[(boundary > t)[near(truth)].sum(), (boundary > t).sum(), truth[near(boundary > t)].sum(), truth.sum()]
                for t in thresholds]
    assert (eval_boundary.match_counts(boundary, truth, thresholds, tolerance) == expected).all()


def test_sweep_table_precision_recall_f1():
    table = eval_boundary.sweep_table([0.1, 0.5], np.array([[3, 4, 1, 2], [0, 0, 0, 2]]))
    assert table.precision.tolist() == [0.75, 0.0] and table.recall.tolist() == [0.5, 0.0]
    assert table.f1[0] == pytest.approx(0.6) and table.f1[1] == 0


def test_gt_boundary_grid_marks_the_cells_the_line_crosses():
    mask = np.zeros((10, 10), np.uint8)
    mask[:, 6:] = 1  # border between columns 5 and 6 -> the line is column 5
    grid = boundaries.gt_boundary_grid(mask, (10, 10), (3, 3))
    assert grid.tolist() == [[0, 1, 0]] * 3  # cells cover columns 0-3, 4-7, 8-11
    doubled = boundaries.gt_boundary_grid(mask, (20, 20), (5, 5))  # IRNet saw the image at scale 2
    assert doubled[:, 2].tolist() == [1] * 5 and doubled.sum() == 5
