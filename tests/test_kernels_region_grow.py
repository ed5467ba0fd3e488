"""kernels.region_grow: the DSRG authors' rules one by one, the literal paper reading, and every backend
against plain-Python references on fresh random inputs (probabilities on a 0.05 grid, so argmax ties
and probabilities equal to a threshold occur)."""
import importlib

import numpy as np
import pytest
import torch
from _cudasim import run_cudasim
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.bench.region_grow import union_find_reference
from kernels.region_grow import region_grow

CPU_BACKENDS = ["torch", "numba"]
THRESHOLDS = [(0.85, 0.99), (0.5, 0.6), (0.6, 0.5), (0.85, 0.85)]


def bfs_reference(probs, seeds, present, th_fg, th_bg):
    """The paper's Sec. 3.3 read literally, on one image (numpy [C,H,W]): for each present class in
    ascending order, visit S_c row-first, label every unlabeled 8-neighbour u with argmax_c' H_u = c and
    H_u,c >= theta_c (Eq. 3); repeat with the newly labeled pixels until none is added."""
    C, H, W = probs.shape
    seeds = seeds.copy()
    classes = [c for c in range(C) if present[c]]
    argmax = {}
    for y in range(H):
        for x in range(W):
            values = [float(probs[c, y, x]) for c in classes]
            if values:
                argmax[y, x] = classes[values.index(max(values))]
    for c in classes:
        threshold = th_bg if c == 0 else th_fg
        visit = [(y, x) for y in range(H) for x in range(W) if seeds[c, y, x]]
        while visit:
            added = []
            for y, x in visit:
                for v in range(max(y - 1, 0), min(y + 2, H)):
                    for u in range(max(x - 1, 0), min(x + 2, W)):
                        if (not seeds[:, v, u].any() and argmax.get((v, u)) == c
                                and float(probs[c, v, u]) >= threshold):
                            seeds[c, v, u] = True
                            added.append((v, u))
            visit = added
    return seeds


def random_case(seed, B, C, H, W, dtype=torch.float32):
    """Probabilities on a 0.05 grid (ties, values equal to thresholds), a few seeds, random present sets."""
    rng = np.random.default_rng(seed)
    probs = torch.from_numpy(rng.integers(0, 21, (B, C, H, W)) / 20).to(dtype)
    seeds = torch.from_numpy(rng.random((B, C, H, W)) < rng.uniform(0, 0.25))
    present = torch.from_numpy(rng.random((B, C)) < 0.7)
    present[:, 0] |= torch.from_numpy(rng.random(B) < 0.8)
    return probs, seeds, present


def expected(reference, probs, seeds, present, th_fg, th_bg):
    p, s, k = probs.double().numpy(), seeds.numpy(), present.numpy()
    return torch.from_numpy(np.stack([reference(p[b], s[b], k[b], th_fg, th_bg) for b in range(len(p))]))


def grid(H, W, C, present):
    """A float64 image of zeros (nothing confident), no seeds, the given classes present."""
    return torch.zeros(1, C, H, W, dtype=torch.float64), torch.zeros(1, C, H, W, dtype=torch.bool), \
        torch.tensor([[c in present for c in range(C)]])


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    return request.param


# --- hand-built: each rule of (a), (b), (c) ------------------------------------------------------------------

def test_several_seeds_take_the_highest_class(backend):
    # P (0,1) seeded for 1 and 2: its label is 2, so it connects to Q (confident 2) and not to R (confident 1)
    probs, seeds, present = grid(1, 3, 3, {0, 1, 2})
    seeds[0, 1, 0, 1] = seeds[0, 2, 0, 1] = True
    probs[0, 1, 0, 0] = 0.9
    probs[0, 2, 0, 2] = 0.9
    out = region_grow(probs, seeds, present, backend=backend)
    assert out[0, 2, 0, 2] and not out[0, 1, 0, 0]


def test_confident_foreground_overrides_a_seed_label(backend):
    # A seeded 1 | B seeded 1 but confident 2 | C confident 1: B's label 2 cuts A from C
    probs, seeds, present = grid(1, 3, 3, {0, 1, 2})
    seeds[0, 1, 0, :2] = True
    probs[0, 2, 0, 1] = 0.9
    probs[0, 1, 0, 2] = 0.9
    assert not region_grow(probs, seeds, present, backend=backend)[0, 1, 0, 2]
    probs[0, 2, 0, 1] = 0.5  # B no longer confident: its seed label 1 joins A and C
    assert region_grow(probs, seeds, present, backend=backend)[0, 1, 0, 2]


def test_foreground_threshold_is_strict(backend):
    probs, seeds, present = grid(1, 2, 2, {0, 1})
    seeds[0, 1, 0, 0] = True
    probs[0, 1, 0, 1] = 0.5
    assert not region_grow(probs, seeds, present, th_fg=0.5, backend=backend)[0, 1, 0, 1]
    probs[0, 1, 0, 1] = np.nextafter(0.5, 1)
    assert region_grow(probs, seeds, present, th_fg=0.5, backend=backend)[0, 1, 0, 1]


@pytest.mark.parametrize("value, th_fg, th_bg, grows", [
    (0.99, 0.85, 0.99, False),  # background needs > th_bg, strictly
    (0.995, 0.85, 0.99, True),
    (0.7, 0.85, 0.6, False),    # and > th_fg as well (the authors' nested test)
    (0.9, 0.85, 0.6, True),
])
def test_background_rule(backend, value, th_fg, th_bg, grows):
    probs, seeds, present = grid(1, 2, 2, {0, 1})
    seeds[0, 0, 0, 0] = True
    probs[0, 0, 0, 1] = value
    assert region_grow(probs, seeds, present, th_fg, th_bg, backend=backend)[0, 0, 0, 1] == grows


def test_argmax_over_present_classes_first_on_ties(backend):
    probs, seeds, present = grid(1, 2, 4, {0, 2, 3})
    seeds[0, 2, 0, 0] = seeds[0, 3, 0, 0] = True  # label 3 at (0,0)
    probs[0, 1, 0, 1] = 1.0                        # absent class 1 is ignored
    probs[0, 2:, 0, 1] = 0.9                       # tie 2 / 3: class 2 wins, not 3
    out = region_grow(probs, seeds, present, backend=backend)
    assert not out[0, 1, 0, 1] and not out[0, 2, 0, 1] and not out[0, 3, 0, 1]
    seeds[0, 3, 0, 0] = False                      # label 2 at (0,0) now: (0,1) joins it
    assert region_grow(probs, seeds, present, backend=backend)[0, 2, 0, 1]


def test_only_components_holding_a_seed_grow_over_8_neighbours(backend):
    probs, seeds, present = grid(4, 4, 2, {0, 1})
    seeds[0, 1, 0, 0] = True
    probs[0, 1, 1, 1] = probs[0, 1, 2, 2] = 0.9  # diagonal chain from the seed
    probs[0, 1, 0, 3] = 0.9                      # confident but not connected
    out = region_grow(probs, seeds, present, backend=backend)
    assert out[0, 1, 1, 1] and out[0, 1, 2, 2] and not out[0, 1, 0, 3]
    assert out[0, 1].sum() == 3


def test_pixels_seeded_for_exactly_one_other_class_connect_but_keep_their_class(backend):
    # A seeded 1 | B seeded 2, confident 1 | C confident 1 | D seeded 2 and 3, confident 1
    probs, seeds, present = grid(1, 4, 4, {0, 1, 2, 3})
    seeds[0, 1, 0, 0] = True
    seeds[0, 2, 0, 1] = seeds[0, 2, 0, 3] = seeds[0, 3, 0, 3] = True
    probs[0, 1, 0, 1:] = 0.9
    out = region_grow(probs, seeds, present, backend=backend)
    assert out[0, 1, 0, 2] and not out[0, 1, 0, 1] and out[0, 1, 0, 3]
    assert out[0, 2, 0, 1] and out[0, 2, 0, 3] and out[0, 3, 0, 3]  # seeds are never removed


def test_absent_classes_and_seeds_outside_their_label_do_not_grow(backend):
    # (0,0) seeded for absent 2 (label 2 blocks), (0,2) seeded 1 but confident 0; (0,1), (0,3) confident 1
    probs, seeds, present = grid(1, 4, 3, {0, 1})
    seeds[0, 2, 0, 0] = seeds[0, 1, 0, 2] = True
    probs[0, 1, 0, 1] = probs[0, 1, 0, 3] = 0.9
    probs[0, 0, 0, 2] = 0.999
    out = region_grow(probs, seeds, present, backend=backend)
    assert torch.equal(out, seeds)


def test_components_and_bfs_differ(backend):
    # A seeded 1 | B seeded 2 only, confident 1 | C confident 1 | D class-1 probability exactly th_fg
    probs, seeds, present = grid(1, 4, 3, {0, 1, 2})
    seeds[0, 1, 0, 0] = seeds[0, 2, 0, 1] = True
    probs[0, 1, 0, 1:3] = 0.9
    probs[0, 1, 0, 3] = 0.5
    components = region_grow(probs, seeds, present, th_fg=0.5, backend=backend)
    bfs = region_grow(probs, seeds, present, th_fg=0.5, mode="bfs", backend=backend)
    assert components[0, 1, 0, 2] and not components[0, 1, 0, 3]  # B connects; > th_fg is strict
    assert not bfs[0, 1, 0, 2]                                     # B is labeled: BFS stops at A
    seeds[0, 2, 0, 1] = False
    bfs = region_grow(probs, seeds, present, th_fg=0.5, mode="bfs", backend=backend)
    assert bfs[0, 1, 0, 1:].all()                                  # >= th_fg in Eq. 3


def test_rejects_bad_arguments():
    probs, seeds, present = grid(2, 2, 2, {0, 1})
    with pytest.raises(ValueError):
        region_grow(probs, seeds, present, mode="watershed")
    with pytest.raises(ValueError):
        region_grow(probs, seeds.float(), present)


# --- random inputs against the references -------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9))


# "components" follows the authors' released union-find; "bfs" the literal reading of the paper
@pytest.mark.parametrize("mode, reference", [("components", union_find_reference), ("bfs", bfs_reference)])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes, thresholds=st.sampled_from(THRESHOLDS),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_modes_match_their_references(mode, reference, seed, shape, thresholds, dtype):
    probs, seeds, present = random_case(seed, *shape, dtype=dtype)
    want = expected(reference, probs, seeds, present, *thresholds)
    for backend in CPU_BACKENDS:
        assert torch.equal(region_grow(probs, seeds, present, *thresholds, mode=mode, backend=backend),
                           want), backend


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["components", "bfs"]))
def test_numba_parallel_over_the_batch(seed, mode):
    """Batches big enough for the thread pool take the prange kernel: force it on a small batch."""
    module = importlib.import_module("kernels.region_grow")
    probs, seeds, present = random_case(seed, 3, 4, 6, 5)
    reference = union_find_reference if mode == "components" else bfs_reference
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_PARALLEL_PIXELS", 0)
        got = region_grow(probs, seeds, present, mode=mode, backend="numba")
    assert torch.equal(got, expected(reference, probs, seeds, present, 0.85, 0.99))


def test_blob_images_match_the_reference_and_leave_inputs_alone():
    """Larger, object-like inputs (long components, many merges)."""
    from kernels.bench.region_grow import random_inputs
    probs, seeds, present = random_inputs(2, 6, 37, 45, 3, torch.Generator().manual_seed(7))
    seeds |= torch.rand(seeds.shape, generator=torch.Generator().manual_seed(8)) < 0.01
    before = seeds.clone()
    want = expected(union_find_reference, probs, seeds, present, 0.85, 0.99)
    assert (want & ~seeds).any()
    for backend in CPU_BACKENDS:
        assert torch.equal(region_grow(probs, seeds, present, backend=backend), want)
    assert torch.equal(seeds, before)


def test_cuda_backend_under_the_simulator(tmp_path):
    cases = []
    for seed, shape, th in [(1, (2, 4, 5, 7), (0.85, 0.99)), (2, (1, 3, 6, 4), (0.5, 0.6))]:
        probs, seeds, present = random_case(seed, *shape)
        for mode, reference in [("components", union_find_reference), ("bfs", bfs_reference)]:
            cases.append((probs, seeds, present, th, mode, expected(reference, probs, seeds, present, *th)))
    torch.save(cases, tmp_path / "cases.pt")
    run_cudasim(f"""
        import torch
        from kernels.region_grow import region_grow
        for probs, seeds, present, th, mode, want in torch.load({str(tmp_path / "cases.pt")!r}):
            assert torch.equal(region_grow(probs, seeds, present, *th, mode=mode, backend="cuda"), want), mode
    """)
