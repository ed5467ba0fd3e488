"""IRNet's losses (Eq. 5, 6, 8, 9): zero where they should be, positive where they should not."""
import torch

from kernels import line_max_affinity
from wsss.irnet import relations
from wsss.irnet.losses import boundary_losses, displacement_losses, losses, total_loss

RADIUS = 5


def _two_regions():
    """Class 1 left, background right, a void column between them (where the boundary lies)."""
    label = torch.zeros(1, 12, 16, dtype=torch.long)
    label[:, :, :7] = 1
    label[:, :, 7] = 255
    return label


def test_boundary_loss_is_minimal_for_the_perfect_boundary():
    pairs = relations.pair_sets(_two_regions(), RADIUS)
    assert all(p.any() for p in pairs.values())
    perfect = torch.zeros(1, 12, 16)
    perfect[:, :, 7] = 1  # every different-class pair crosses the column, no same-class pair does
    ideal = boundary_losses(line_max_affinity(perfect, RADIUS), pairs)
    assert all(v < 1e-4 for v in ideal.values()), ideal
    blind = boundary_losses(line_max_affinity(torch.zeros(1, 12, 16), RADIUS), pairs)
    assert blind["aff_neg"] > 10  # every negative pair sees affinity 1
    assert blind["aff_fg"] < 1e-4 and blind["aff_bg"] < 1e-4


def _centroid_field(shape, instances):
    """D(x) = c - x on each instance mask, given as [(mask, (cy, cx))], 0 elsewhere; channel 0 = y, 1 = x."""
    ys, xs = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    field = torch.zeros(1, 2, *shape)
    for mask, (cy, cx) in instances:
        field[0, 0][mask] = cy - ys[mask].float()
        field[0, 1][mask] = cx - xs[mask].float()
    return field


def test_displacement_loss_is_zero_for_a_field_pointing_at_true_centroids():
    label = torch.zeros(1, 20, 30, dtype=torch.long)
    first, second = torch.zeros(2, 20, 30, dtype=torch.bool)
    first[2:9, 3:10] = second[10:18, 18:28] = True  # two instances of one class, farther apart than the radius
    label[0][first | second] = 1
    label[:, 0, :] = 255
    field = _centroid_field((20, 30), [(first, (5.0, 6.0)), (second, (13.5, 22.5))])
    field[0, :, label[0] == 0] = 3.0  # any constant on the background
    pairs = relations.pair_sets(label, RADIUS)
    exact = displacement_losses(field, pairs, RADIUS)
    assert exact["dp_fg"] < 1e-6 and exact["dp_bg"] < 1e-6
    noisy = displacement_losses(field + 0.5 * torch.randn_like(field), pairs, RADIUS)
    assert noisy["dp_fg"] > 0.1 and noisy["dp_bg"] > 0.1


def test_displacement_loss_value_is_the_mean_l1_per_component():
    label = torch.ones(1, 1, 2, dtype=torch.long)  # one pair, offset (0, 1)
    field = torch.zeros(1, 2, 1, 2)  # delta = 0, target (0, 1): |0 - 0| and |0 - 1| -> mean 0.5
    assert torch.isclose(displacement_losses(field, relations.pair_sets(label, 2, "all"), 2)["dp_fg"],
                         torch.tensor(0.5), atol=1e-4)


def test_losses_backpropagate_into_both_branches():
    edge = torch.zeros(1, 1, 12, 16)
    edge[..., 7] = 0.1  # a faint boundary on the void column
    edge.requires_grad_(True)
    disp = torch.zeros(1, 2, 12, 16, requires_grad=True)
    parts = losses(edge, disp, _two_regions(), RADIUS)
    assert set(parts) == {"aff_fg", "aff_bg", "aff_neg", "dp_fg", "dp_bg"}
    total_loss(parts).backward()
    assert disp.grad.abs().sum() > 0
    # different-class pairs raise the boundary where it peaks between them; same-class pairs lower it
    assert (edge.grad[0, 0, :, 7] < 0).all()
    assert (edge.grad[0, 0, :, :7] >= 0).all() and edge.grad[0, 0, :, :7].sum() > 0
