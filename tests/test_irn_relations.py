"""IRNet relation mining (Sec. 4.2, Eq. 2-4): pair sets of IR label maps."""
import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from kernels import neighbor_offsets
from wsss.irnet import relations

F, B, N = "fg_pos", "bg_pos", "neg"


def _pairs(sets, name):
    """{(d, y, x)} of one pair set of a single image."""
    return {tuple(i) for i in sets[name][0].nonzero().tolist()}


def test_hand_made_label_map():
    # radius 2: offsets (0, 1), (1, -1), (1, 0), (1, 1)
    label = torch.tensor([[[1, 1, 0],
                           [2, 255, 0]]])
    assert neighbor_offsets(2).tolist() == [[0, 1], [1, -1], [1, 0], [1, 1]]
    sets = relations.pair_sets(label, radius=2, window="all")
    assert _pairs(sets, F) == {(0, 0, 0)}  # (0,0)-(0,1): class 1 twice
    assert _pairs(sets, B) == {(2, 0, 2)}  # (0,2)-(1,2): background twice
    # (0,1)-(0,2), (0,1)-(1,0), (0,0)-(1,0), (0,1)-(1,2); pairs touching 255 or leaving the map are in no set
    assert _pairs(sets, N) == {(0, 0, 1), (1, 0, 1), (2, 0, 0), (3, 0, 1)}


@pytest.mark.parametrize("window", ["all", "release"])
def test_matches_brute_force_enumeration_of_eq_2_to_4(window):
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 4, (2, 7, 9), generator=gen)
    label[torch.rand(label.shape, generator=gen) < 0.2] = 255
    radius = 4
    sets = relations.pair_sets(label, radius, window)
    offsets = [tuple(o) for o in neighbor_offsets(radius).tolist()]
    floor = radius - 1  # the release's radius_floor: sources in rows [0, h - floor), columns [floor, w - floor)
    expected = {F: set(), B: set(), N: set()}
    h, w = label.shape[1:]
    pixels = list(itertools.product(range(h), range(w)))
    for b in range(2):
        for (yi, xi), (yj, xj) in itertools.combinations(pixels, 2):  # i before j in raster order
            if not 0 < (yi - yj) ** 2 + (xi - xj) ** 2 < radius ** 2:  # Eq. 2
                continue
            if window == "release" and not (yi < h - floor and floor <= xi < w - floor):
                continue
            li, lj = label[b, yi, xi].item(), label[b, yj, xj].item()
            if 255 in (li, lj):
                continue
            name = N if li != lj else (F if li > 0 else B)  # Eq. 3-4 and the fg / bg split
            expected[name].add((b, offsets.index((yj - yi, xj - xi)), yi, xi))
    for name in (F, B, N):
        assert {tuple(i) for i in sets[name].nonzero().tolist()} == expected[name]


def test_pair_differences_and_offsets():
    field = torch.randn(1, 2, 5, 6)
    delta = relations.pair_differences(field, radius=3)
    for d, (dy, dx) in enumerate(neighbor_offsets(3).tolist()):
        y, x = 1, 2
        assert torch.allclose(delta[0, :, d, y, x], field[0, :, y, x] - field[0, :, y + dy, x + dx])
    target = relations.pair_offsets(3)
    assert target.shape == (1, 2, len(neighbor_offsets(3)), 1, 1)
    assert target[0, :, -1, 0, 0].tolist() == neighbor_offsets(3)[-1].float().tolist()


def test_release_window_keeps_fewer_sources_and_every_partner_inside():
    label = torch.zeros(1, 32, 32, dtype=torch.long)
    radius = 10
    every, release = (relations.pair_sets(label, radius, w)["bg_pos"] for w in ("all", "release"))
    assert (release <= every).all() and release.sum() < every.sum()
    sources = release.any(1)[0].nonzero()
    assert sources[:, 0].max() == 32 - radius and sources[:, 1].min() == radius - 1
    assert sources[:, 1].max() == 32 - radius
    # inside the window every offset's partner is on the map, so each source has all its pairs
    assert (release.sum(1)[release.any(1)] == len(neighbor_offsets(radius))).all()


def test_downsample_label_samples_the_cell_centres_as_pil_nearest():
    gen = torch.Generator().manual_seed(1)
    for h, w in ((8, 8), (32, 20), (12, 28)):
        label = torch.randint(0, 256, (h, w), generator=gen, dtype=torch.uint8)
        expected = np.asarray(Image.fromarray(label.numpy()).resize((w // 4, h // 4), Image.NEAREST))
        assert relations.downsample_label(label).numpy().tolist() == expected.tolist()
    assert relations.downsample_label(torch.arange(64).view(8, 8)).tolist() == [[18, 22], [50, 54]]
    assert relations.downsample_label(torch.arange(10).view(1, 10)).tolist() == [[2, 6, 9]]  # ceil(10 / 4) cells
