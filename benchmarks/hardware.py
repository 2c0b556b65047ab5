"""What the GPU benchmarks share: timing with device syncs, the chip's measured matrix rate, peak memory."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_seconds(
    fn: Callable[[], object], repeats: int, device: str | torch.device, warmup: int = 1
) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs, the device drained around each."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_tflops(device: str, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    """The measured dense matrix-product rate (TFLOP/s) of an n x n x n product of random ``dtype``
    matrices: the yardstick of utilisation in the same run (data-sheet peaks are not reached)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_seconds(lambda: a @ b, repeats, device, warmup=3)
    return 2 * n**3 / seconds / 1e12


def peak_memory_gib(device: str) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def hardware_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU x{torch.get_num_threads()} threads"
