"""Backend dispatch shared by every op in kernels/.

Each op has up to three implementations: "cuda" (numba.cuda kernel on torch CUDA tensors through
__cuda_array_interface__), "numba" (njit(parallel=True) on CPU) and "torch" (vectorised, any device).
`pick(tensor, backend, available)` chooses one: an explicit `backend=` wins, then the environment
variable WSSS_KERNEL_BACKEND, then the best one for the tensor's device.
"""
import functools
import os
import warnings

import torch

BACKENDS = ("cuda", "numba", "torch")


@functools.cache
def numba_cuda_usable() -> bool:
    """True when numba can compile and launch CUDA kernels: a GPU and the CUDA toolchain (NVVM, from the
    cuda-nvcc / numba-cuda packages), or the simulator NUMBA_ENABLE_CUDASIM=1. Where torch sees a GPU but
    numba cannot compile for it, the ops run their torch backend on the GPU and this warns once."""
    problem = numba_cuda_problem()
    if problem is not None and torch.cuda.is_available():
        warnings.warn(f"numba cannot compile CUDA kernels ({problem}); the kernels use their torch backend on the "
                      "GPU. For the numba kernels install the CUDA toolchain (environment.yml: cuda-nvcc, "
                      "cuda-nvrtc, numba-cuda).", RuntimeWarning, stacklevel=3)
    return problem is None


def numba_cuda_problem() -> str | None:
    """Why numba cannot run CUDA kernels here, or None when it can."""
    try:
        from numba import cuda
        if not cuda.is_available():
            return "numba sees no CUDA driver or GPU"
        if cuda_simulator():
            return None
        from numba.cuda.cudadrv import nvvm
        if not nvvm.is_available():  # is_available() alone passes without the compiler; kernels then fail
            return "NVVM, the CUDA compiler library, not found"
    except Exception as e:  # numba without a CUDA driver raises various errors on import or probe
        return f"{type(e).__name__}: {e}"
    return None


def cuda_simulator() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def pick(tensor: torch.Tensor, backend: str | None = None, available=BACKENDS) -> str:
    """Name of the backend to run `tensor` on; raises ValueError for an unknown or impossible choice."""
    choice = backend or os.environ.get("WSSS_KERNEL_BACKEND") or None
    if choice is not None:
        if choice not in available:
            raise ValueError(f"backend {choice!r} not available for this op; choose from {available}")
        if choice == "cuda" and not (numba_cuda_usable() and (tensor.is_cuda or cuda_simulator())):
            raise ValueError("backend 'cuda' needs a CUDA tensor and numba.cuda (or NUMBA_ENABLE_CUDASIM=1)")
        if choice == "numba" and tensor.is_cuda:
            raise ValueError("backend 'numba' runs on CPU tensors only")
        return choice
    if tensor.is_cuda:
        return "cuda" if "cuda" in available and numba_cuda_usable() else "torch"
    return "numba" if "numba" in available else "torch"


def as_cuda_array(t: torch.Tensor):
    """A numba device array viewing a torch tensor (no copy on a real GPU).

    Under the CUDA simulator the tensor is on the CPU: the simulator works on host numpy arrays, so a
    numpy view is returned, which the simulated kernels read and write in place."""
    from numba import cuda
    t = t.contiguous() if not t.is_contiguous() else t
    if cuda_simulator():
        return t.detach().numpy()
    return cuda.as_cuda_array(t.detach())


def cuda_stream():
    """The numba stream matching torch's current stream, so kernels queue behind torch's work."""
    from numba import cuda
    if cuda_simulator():
        return 0
    return cuda.external_stream(torch.cuda.current_stream().cuda_stream)


THREADS_PER_BLOCK = 128


def launch(n: int):
    """Launch configuration [blocks, threads, stream] for a kernel with one thread per item, n items.

    Small grids get fewer threads: no idle ones (the CUDA simulator runs each thread in Python)."""
    n = max(n, 1)
    threads = min(THREADS_PER_BLOCK, n)
    return (n + threads - 1) // threads, threads, cuda_stream()
