"""kernels.neighborhood_aggregate (PSI CPP, Eq. 2-4): every backend, forward and backward, against the
float64 masked dense attention on fresh random inputs: non-square grids, levels coarser and finer than
the query, grids smaller than the radius (positions with few or no neighbours), B > 1."""
import pytest
import torch
from _cudasim import run_cudasim
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.bench.neighborhood_aggregate import dense_reference, random_inputs
from kernels.neighborhood_aggregate import neighborhood_aggregate

CPU_BACKENDS = ["torch", "numba"]


def outputs_and_grads(fn, query, keys, values, radii, strides, weights):
    """fn's outputs and the gradients of sum_l <weights_l, out_l> w.r.t. query, keys and values."""
    leaves = [t.detach().clone().requires_grad_() for t in (query, *keys, *values)]
    L = len(keys)
    outs = fn(leaves[0], leaves[1:1 + L], leaves[1 + L:], radii, strides)
    sum((w * o).sum() for w, o in zip(weights, outs)).backward()
    return [o.detach() for o in outs], [t.grad for t in leaves]


@st.composite
def geometries(draw):
    H, W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    levels = draw(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(1, 3),
                                     st.integers(-2, 2)), min_size=1, max_size=3))
    shapes = [(h, w) for h, w, _, _ in levels]
    return H, W, shapes, [r for *_, r, _ in levels], [s for *_, s in levels]


@settings(max_examples=20, deadline=None)
@given(geometry=geometries(), B=st.integers(1, 2), C=st.integers(1, 4), Cv=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_matches_the_float64_dense_reference(geometry, B, C, Cv, seed):
    H, W, shapes, radii, strides = geometry
    g = torch.Generator().manual_seed(seed)
    query, keys, values = random_inputs(B, C, H, W, shapes, g, dtype=torch.float64, scale=1.0, Cv=Cv)
    weights = [torch.randn(B, Cv, H, W, generator=g, dtype=torch.float64) for _ in shapes]
    want, want_grads = outputs_and_grads(dense_reference, query, keys, values, radii, strides, weights)
    for backend in CPU_BACKENDS:
        def fn(*args):
            return neighborhood_aggregate(*args, backend=backend)
        got, grads = outputs_and_grads(fn, query, keys, values, radii, strides, weights)
        for a, b in zip(got + grads, want + want_grads):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
        single = [t.float() for t in (query, *keys, *values)]
        got = fn(single[0], single[1:1 + len(keys)], single[1 + len(keys):], radii, strides)
        for a, b in zip(got, want):
            assert a.dtype == torch.float32
            torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradcheck_float64(backend):
    g = torch.Generator().manual_seed(0)
    shapes, radii, strides = [(3, 5), (1, 2)], (2, 1), (-1, 1)  # a finer and a coarser level
    query, keys, values = random_inputs(1, 1, 2, 3, shapes, g, dtype=torch.float64, scale=1.0)
    inputs = [t.requires_grad_() for t in (query, *keys, *values)]

    def fn(q, k0, k1, v0, v1):
        return tuple(neighborhood_aggregate(q, [k0, k1], [v0, v1], radii, strides, backend=backend))
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_psi_geometry_and_an_unused_level(backend):
    """PSI's radii (1, 1, 1, 4) with levels at strides 4, 8, 16, 16 over a stride-16 query; only the
    destination level's output is used, so the others' gradients arrive as None."""
    g = torch.Generator().manual_seed(1)
    H, W = 5, 4
    shapes, radii, strides = [(4 * H, 4 * W), (2 * H, 2 * W), (H, W), (H, W)], (1, 1, 1, 4), (-2, -1, 0, 0)
    query, keys, values = random_inputs(2, 3, H, W, shapes, g, dtype=torch.float64)
    weights = [torch.zeros(2, 3, H, W, dtype=torch.float64)] * 3 + [torch.randn(2, 3, H, W, generator=g,
                                                                               dtype=torch.float64)]
    want = outputs_and_grads(dense_reference, query, keys, values, radii, strides, weights)
    leaves = [t.clone().requires_grad_() for t in (query, *keys, *values)]
    outs = neighborhood_aggregate(leaves[0], leaves[1:5], leaves[5:], radii, strides, backend=backend)
    (weights[3] * outs[3]).sum().backward()
    for a, b in zip([o.detach() for o in outs] + [t.grad for t in leaves], want[0] + want[1]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_precision_runs_in_float32(backend, dtype):
    """Under autocast (PSI with `amp: true`) CPP gets bfloat16 (CPU) or float16 (GPU) features: computed in
    float32, float32 out, gradients back in the inputs' dtype (the numba kernels once refused bfloat16)."""
    g = torch.Generator().manual_seed(2)
    shapes, radii, strides = [(4, 5), (2, 3)], (2, 1), (0, 1)
    query, keys, values = random_inputs(1, 3, 4, 5, shapes, g)
    low = [t.to(dtype) for t in (query, *keys, *values)]
    weights = [torch.randn(1, 3, 4, 5, generator=g) for _ in shapes]
    want = outputs_and_grads(dense_reference, low[0].float(), [t.float() for t in low[1:3]],
                             [t.float() for t in low[3:]], radii, strides, weights)
    leaves = [t.clone().requires_grad_() for t in low]
    outs = neighborhood_aggregate(leaves[0], leaves[1:3], leaves[3:], radii, strides, backend=backend)
    assert all(o.dtype == torch.float32 for o in outs)
    sum((w * o).sum() for w, o in zip(weights, outs)).backward()
    for got, expected in zip(outs, want[0]):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for leaf, expected in zip(leaves, want[1]):
        assert leaf.grad.dtype == dtype
        torch.testing.assert_close(leaf.grad.float(), expected.to(dtype).float(), rtol=0.02, atol=0.02)


def test_rejects_bad_arguments():
    q, keys, values = random_inputs(1, 2, 3, 3, [(3, 3)], torch.Generator().manual_seed(0))
    with pytest.raises(ValueError):
        neighborhood_aggregate(q, keys, values, [1, 2], [0])
    with pytest.raises(ValueError):
        neighborhood_aggregate(q, keys, values, [0], [0])
    with pytest.raises(ValueError):
        neighborhood_aggregate(q, [keys[0][:, :1]], values, [1], [0])


def test_cuda_backend_under_the_simulator(tmp_path):
    g = torch.Generator().manual_seed(2)
    shapes, radii, strides = [(5, 3), (2, 1)], (2, 1), (-1, 1)
    query, keys, values = random_inputs(2, 2, 3, 2, shapes, g, dtype=torch.float64, scale=1.0)
    weights = [torch.randn(2, 2, 3, 2, generator=g, dtype=torch.float64) for _ in shapes]
    want = outputs_and_grads(dense_reference, query, keys, values, radii, strides, weights)
    torch.save(((query, keys, values, radii, strides, weights), want), tmp_path / "case.pt")
    run_cudasim(f"""
        import torch
        from kernels.neighborhood_aggregate import neighborhood_aggregate
        (query, keys, values, radii, strides, weights), (want, want_grads) = torch.load({str(tmp_path / "case.pt")!r})
        leaves = [t.clone().requires_grad_() for t in (query, *keys, *values)]
        outs = neighborhood_aggregate(leaves[0], leaves[1:3], leaves[3:], radii, strides, backend="cuda")
        sum((w * o).sum() for w, o in zip(weights, outs)).backward()
        for a, b in zip([o.detach() for o in outs] + [t.grad for t in leaves], want + want_grads):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)

        def fn(q, k0, k1, v0, v1):
            return tuple(neighborhood_aggregate(q, [k0, k1], [v0, v1], radii, strides, backend="cuda"))
        assert torch.autograd.gradcheck(fn, leaves, fast_mode=True)
    """)
