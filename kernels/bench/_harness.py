"""Timing and peak-memory measurement shared by the kernel benchmarks.

Each benchmark module in kernels/bench/ defines `cases(device, quick) -> list[Case]`. A Case names the
op, the size, the implementation and the reference it is compared with; the table prints time and peak
memory of each, and the ratios against the reference measured in the same run, so the ratios do not
depend on the machine.
"""
import ctypes
import ctypes.util
import dataclasses
import gc
import os
import threading
import time
from typing import Callable

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE")
# glibc raises its mmap threshold as buffers are freed (up to 32 MB) and then recycles freed heap memory,
# so after the warm-up later allocations no longer show in the RSS. A fixed 1 MiB threshold gives every
# large buffer its own mapping, returned on free: RSS growth is then the peak of live large buffers.
_M_MMAP_THRESHOLD = -3
getattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallopt", lambda *a: 0)(_M_MMAP_THRESHOLD, 1 << 20)


@dataclasses.dataclass
class Case:
    op: str            # e.g. "random_walk"
    size: str          # e.g. "128x128 C=3"
    impl: str          # e.g. "numba" or "dense (IRNet)"
    fn: Callable[[], object]
    reference: str | None = None  # impl name of the row this one is compared with
    repeat: int = 3
    flops: float | None = None  # floating-point operations of one call (a fused multiply-add counts 2)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class _PeakRSS:
    """Samples resident memory in a thread: peak growth over the baseline while the block runs."""

    def __enter__(self):
        gc.collect()
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.bytes = self.peak - self.base


def matmul_flops(device: torch.device, size: int = 2048, repeat: int = 5) -> tuple[float, float]:
    """The machine's practical float32 peak: (FLOP per wall second, FLOP per CPU second) of the best of
    `repeat` size x size matrix products with torch's threads (a BLAS matmul runs at 80-90 % of the FMA
    units' peak), so that a kernel's fraction of it means the same on any machine. Per CPU second (all
    threads' time) the figure holds on a busy machine too, where wall time includes other processes' turns."""
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    seconds, _, cpu_seconds = measure(lambda: a @ b, device, repeat)
    return 2 * size ** 3 / seconds, 2 * size ** 3 / cpu_seconds


def measure(fn: Callable[[], object], device: torch.device, repeat: int) -> tuple[float, int, float]:
    """(best wall time in seconds over `repeat` runs after one warm-up, peak extra memory in bytes, best CPU
    time of this process's threads in seconds)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()  # warm-up: JIT compilation, caches
    sync()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    best = best_cpu = float("inf")
    with _PeakRSS() as mem:
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated() - base if device.type == "cuda" else mem.bytes
    return best, peak, best_cpu
