"""Kernel dispatch when numba cannot compile for the GPU: the torch backend, with one warning."""
import warnings

import pytest
import torch

from kernels import _backend


@pytest.fixture
def fresh_probe():
    _backend.numba_cuda_usable.cache_clear()
    yield
    _backend.numba_cuda_usable.cache_clear()


def test_gpu_without_cuda_toolchain_warns_once_and_uses_torch(fresh_probe, monkeypatch):
    monkeypatch.setattr(_backend, "numba_cuda_problem", lambda: "NVVM, the CUDA compiler library, not found")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fake_gpu_tensor = type("T", (), {"is_cuda": True})()
    with pytest.warns(RuntimeWarning, match="NVVM.*torch backend") as caught:
        choices = [_backend.pick(fake_gpu_tensor) for _ in range(3)]
    assert choices == ["torch"] * 3 and len(caught) == 1
    with pytest.raises(ValueError, match="backend 'cuda' needs"):
        _backend.pick(fake_gpu_tensor, "cuda")


def test_cpu_machine_is_not_warned(fresh_probe, monkeypatch):
    monkeypatch.setattr(_backend, "numba_cuda_problem", lambda: "numba sees no CUDA driver or GPU")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _backend.pick(torch.zeros(2)) == "numba"
        assert not _backend.numba_cuda_usable()

