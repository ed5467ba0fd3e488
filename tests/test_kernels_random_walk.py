"""kernels.random_walk (IRNet Eq. 12-13) on every backend against IRNet's dense walk x0 @ T^(2^exp_times)
computed in float64 (kernels.bench.random_walk.dense_walk: n x n matrix, exp_times squarings)."""
import pytest
import torch
from _cudasim import run_cudasim
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.bench.random_walk import dense_walk
from kernels.random_walk import random_walk

CPU_BACKENDS = ["numba", "torch"]


def random_case(seed, b, c, h, w):
    """float32-representable scores in [0, 1) and boundaries skewed to low values, as float64."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(b, c, h, w, generator=g)
    boundary = torch.rand(b, h, w, generator=g) ** 3
    return scores.double(), boundary.double()


def assert_close_to_max(got, want, tol):
    """|got - want| <= tol * max|want| (the issue's tolerance for the walk)."""
    err = (got.double() - want).abs().max()
    assert err <= tol * max(want.abs().max(), 1e-30), f"error {err:.3g} vs max {want.abs().max():.3g}"


cases = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 8), st.integers(1, 8),
                  st.sampled_from([2, 3, 5]), st.sampled_from([1.0, 2.5, 10.0]), st.integers(0, 8),
                  st.integers(0, 2 ** 31))


@settings(max_examples=25, deadline=None)
@given(case=cases, backend=st.sampled_from(CPU_BACKENDS))
def test_walk_equals_irnets_dense_walk(case, backend):
    b, c, h, w, radius, beta, exp_times, seed = case
    scores, boundary = random_case(seed, b, c, h, w)
    want = dense_walk(scores, boundary, radius, beta, exp_times)
    steps = 2 ** exp_times
    got = random_walk(scores, boundary, radius, beta, steps, backend=backend)
    assert got.dtype == torch.float64 and got.shape == scores.shape
    assert_close_to_max(got, want, 1e-10)
    got32 = random_walk(scores.float(), boundary.float(), radius, beta, steps, backend=backend)
    assert got32.dtype == torch.float32
    assert_close_to_max(got32, want, 1e-4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float32_after_256_steps_on_a_larger_image(backend):
    # 256 steps multiply any per-column rounding bias: the direct form of the step in float32 is off by 1.2e-4
    # of the max here (IRNet's own float32 dense walk: 7.7e-5); the difference form: 1.1e-6
    scores, boundary = random_case(3, 1, 2, 24, 24)
    want = dense_walk(scores, boundary, 5, 10, 8)
    assert_close_to_max(random_walk(scores.float(), boundary.float(), backend=backend), want, 1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_zero_steps_is_the_masked_input(backend):
    scores, boundary = random_case(0, 2, 3, 4, 6)
    got = random_walk(scores, boundary, steps=0, backend=backend)
    torch.testing.assert_close(got, scores * (1 - boundary[:, None]), rtol=0, atol=0)


def test_radius_10_and_a_strong_boundary_wall():
    scores, boundary = random_case(1, 1, 2, 9, 12)
    boundary[:, :, 6] = 1.0  # a full wall: nothing crosses column 6 (affinity 0 through it)
    want = dense_walk(scores, boundary, 10, 10, 3)
    for backend in CPU_BACKENDS:
        got = random_walk(scores, boundary, 10, 10, 8, backend=backend)
        assert_close_to_max(got, want, 1e-10)
    left = random_walk(scores[..., :6], boundary[..., :6], 10, 10, 8, backend="numba")
    torch.testing.assert_close(got[..., :6], left)


def test_rejects_bad_input():
    scores, boundary = random_case(0, 1, 2, 4, 4)
    for kwargs in [dict(beta=0), dict(steps=-1), dict(steps=2.0), dict(radius=1)]:
        with pytest.raises(ValueError):
            random_walk(scores, boundary, **kwargs)
    with pytest.raises(ValueError):
        random_walk(scores, boundary[:, :3])


@settings(max_examples=1, deadline=None)
@given(st.lists(cases, min_size=2, max_size=2))
def test_cuda_backend_under_the_simulator(tmp_path_factory, draws):
    checks = []
    for b, c, h, w, radius, beta, exp_times, seed in draws:
        exp_times, h, w = min(exp_times, 2), min(h, 4), min(w, 4)  # the simulator runs threads in Python
        scores, boundary = random_case(seed, b, c, h, w)
        checks.append((scores.float(), boundary.float(), radius, beta, 2 ** exp_times,
                       dense_walk(scores, boundary, radius, beta, exp_times)))
    path = tmp_path_factory.mktemp("cudasim") / "walks.pt"
    torch.save(checks, path)
    run_cudasim(f"""
        import torch
        from kernels.random_walk import random_walk
        for scores, boundary, radius, beta, steps, want in torch.load({str(path)!r}):
            got = random_walk(scores, boundary, radius, beta, steps, backend="cuda")
            err = (got.double() - want).abs().max()
            assert err <= 1e-4 * want.abs().max(), (err, want.abs().max())
    """)


@pytest.mark.parametrize("classes", [1, 2, 3, 5])
def test_result_independent_of_split_and_threads(monkeypatch, classes):
    # the numba walk runs class groups (G <= 4 classes share the weight loads) over pixel chunks or whole
    # groups per thread: every class must come out bit for bit the same whichever way the work is cut
    import numba
    scores, boundary = random_case(classes, 1, classes, 19, 23)
    scores, boundary = scores.float(), boundary.float()
    results = []
    for split in ("pixels", "groups"):
        for threads in (1, 2):
            monkeypatch.setenv("WSSS_WALK_SPLIT", split)
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            try:
                results.append(random_walk(scores, boundary, steps=16, backend="numba"))
            finally:
                numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert all(torch.equal(results[0], r) for r in results[1:])
    alone = random_walk(scores[:, -1:], boundary, steps=16, backend="numba")  # a group of one class
    assert torch.equal(results[0][:, -1:], alone)
    monkeypatch.setenv("WSSS_WALK_SPLIT", "rows")
    with pytest.raises(ValueError, match="WSSS_WALK_SPLIT"):
        random_walk(scores, boundary, steps=1, backend="numba")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_weights_below_float_resolution_are_dropped_exactly_enough(backend):
    # a boundary of 0.999 gives affinity 1e-3 and s = a^10 = 1e-30: a subnormal-prone weight that the walk
    # drops (below eps^2 it cannot change a float32 result); the float64 dense walk keeps it
    scores, boundary = random_case(5, 1, 2, 16, 16)
    boundary[:, :, 5:8] = 0.999
    want = dense_walk(scores, boundary, 5, 10, 8)
    assert_close_to_max(random_walk(scores.float(), boundary.float(), backend=backend), want, 1e-5)
