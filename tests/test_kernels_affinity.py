"""kernels.neighbor_offsets / neighbor_paths against a transcription of IRNet's released PathIndex, and
line_max_affinity (IRNet Eq. 7) on every backend against IRNet's gather-then-max in float64, gradients
(including ties, where IRNet's max_pool2d sends the gradient to the first max in path order) included."""
import pytest
import torch
from _cudasim import run_cudasim
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.bench.line_max_affinity import gather_max_affinity, path_index
from kernels.line_max_affinity import line_max_affinity
from kernels.offsets import neighbor_offsets, neighbor_paths

CPU_BACKENDS = ["numba", "torch"]


def irnet_dir_paths(max_radius):
    """IRNet misc/indexing.py PathIndex.get_all_dir_paths, before its regrouping by path length."""
    search_dirs = [(0, x) for x in range(1, max_radius)]
    for y in range(1, max_radius):
        for x in range(-max_radius + 1, max_radius):
            if x * x + y * y < max_radius ** 2:
                search_dirs.append((y, x))
    paths = []
    for dy, dx in search_dirs:
        length_sq = dy ** 2 + dx ** 2
        min_y, max_y = sorted((0, dy))
        min_x, max_x = sorted((0, dx))
        coords = [[y, x] for y in range(min_y, max_y + 1) for x in range(min_x, max_x + 1)
                  if (dy * x - dx * y) ** 2 / length_sq < 1]
        coords.sort(key=lambda c: -abs(c[0]) - abs(c[1]))
        paths.append(coords)
    return search_dirs, paths


@pytest.mark.parametrize("radius", [2, 3, 5, 8, 10])
def test_offsets_and_paths_are_irnets(radius):
    dirs, paths = irnet_dir_paths(radius)
    assert neighbor_offsets(radius).tolist() == [list(d) for d in dirs]
    points, starts = neighbor_paths(radius)
    assert [points[starts[d]:starts[d + 1]].tolist() for d in range(len(dirs))] == paths


def test_offset_counts_and_the_diagonal_path():
    assert neighbor_offsets(5).shape == (34, 2) and neighbor_offsets(10).shape == (152, 2)
    assert neighbor_offsets(5).dtype == torch.int64
    points, starts = neighbor_paths(5)
    d = neighbor_offsets(5).tolist().index([1, 1])
    assert sorted(points[starts[d]:starts[d + 1]].tolist()) == [[0, 0], [0, 1], [1, 0], [1, 1]]  # the 2x2 box


def random_boundary(seed, shape, levels, dtype=torch.float64):
    """Uniform in [0, 1], or on a grid of `levels` values so that maxima tie."""
    g = torch.Generator().manual_seed(seed)
    if levels:
        return (torch.randint(0, levels, shape, generator=g) / (levels - 1)).to(dtype)
    return torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)


def reference(boundary, radius, weights):
    """Affinity and d(sum(weights * affinity))/d boundary, both float64, the IRNet way."""
    b = boundary.detach().double().requires_grad_()
    out = gather_max_affinity(b, radius, path_index(radius, *b.shape[1:]))
    (grad,) = torch.autograd.grad(out, b, weights)
    return out.detach(), grad


cases = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.sampled_from([2, 3, 5]),
                  st.sampled_from([0, 2, 3, 5]), st.integers(0, 2 ** 31))


@settings(max_examples=20, deadline=None)
@given(case=cases, backend=st.sampled_from(CPU_BACKENDS), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_affinity_and_gradient_match_irnet(case, backend, dtype):
    b, h, w, radius, levels, seed = case
    boundary = random_boundary(seed, (b, h, w), levels, dtype).requires_grad_()
    weights = torch.randn(b, len(neighbor_offsets(radius)), h, w, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(seed + 1))
    want, want_grad = reference(boundary, radius, weights)
    got = line_max_affinity(boundary, radius, backend=backend)
    assert got.dtype == dtype and got.shape == want.shape
    (grad,) = torch.autograd.grad(got, boundary, weights.to(dtype))
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got.double(), want, rtol=0, atol=atol)
    torch.testing.assert_close(grad.double(), want_grad, rtol=0, atol=atol * 10)


@settings(max_examples=4, deadline=None)
@given(h=st.integers(1, 11), w=st.integers(1, 11), seed=st.integers(0, 2 ** 31),
       backend=st.sampled_from(CPU_BACKENDS))
def test_radius_10(h, w, seed, backend):
    boundary = random_boundary(seed, (2, h, w), 0)
    want, _ = reference(boundary, 10, torch.zeros(2, 152, h, w, dtype=torch.float64))
    torch.testing.assert_close(line_max_affinity(boundary, 10, backend=backend), want, rtol=0, atol=1e-12)


def test_partner_outside_the_image_gets_zero():
    boundary = torch.zeros(1, 1, 3, dtype=torch.float64)
    out = line_max_affinity(boundary, 5, backend="numba")
    horizontal = [d for d, (dy, _) in enumerate(neighbor_offsets(5).tolist()) if dy == 0]
    assert out[0, horizontal, 0].tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert out[0, len(horizontal):].abs().sum() == 0  # every other partner is in a row below


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradcheck(backend):
    boundary = torch.rand(1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: line_max_affinity(x, 3, backend=backend), (boundary,))


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        line_max_affinity(torch.rand(1, 1, 4, 4), 5)
    with pytest.raises(ValueError):
        line_max_affinity(torch.rand(1, 4, 4), 1)
    with pytest.raises(ValueError):
        line_max_affinity(torch.rand(1, 4, 4), 5, backend="numba-cuda")


@settings(max_examples=1, deadline=None)
@given(st.lists(cases, min_size=2, max_size=2))
def test_cuda_backend_under_the_simulator(tmp_path_factory, draws):
    checks = []
    for b, h, w, radius, levels, seed in draws:
        b, h, w = min(b, 2), min(h, 4), min(w, 5)  # the simulator runs every GPU thread as a Python thread
        boundary = random_boundary(seed, (b, h, w), levels, torch.float32)
        weights = torch.randn(b, len(neighbor_offsets(radius)), h, w, dtype=torch.float64,
                              generator=torch.Generator().manual_seed(seed + 1))
        checks.append((boundary, radius, weights, *reference(boundary, radius, weights)))
    path = tmp_path_factory.mktemp("cudasim") / "cases.pt"
    torch.save(checks, path)
    run_cudasim(f"""
        import torch
        from kernels.line_max_affinity import line_max_affinity
        for boundary, radius, weights, want, want_grad in torch.load({str(path)!r}):
            boundary.requires_grad_()
            got = line_max_affinity(boundary, radius, backend="cuda")
            (grad,) = torch.autograd.grad(got, boundary, weights.float())
            assert (got.double() - want).abs().max() <= 1e-5, (got, want)
            assert (grad.double() - want_grad).abs().max() <= 1e-4, (grad, want_grad)
    """)
