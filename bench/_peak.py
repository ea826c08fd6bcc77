"""This machine's matrix-product peak, measured in the benchmark's own run (shared by the benchmarks)."""

import time

import torch


def matmul_peak(device: torch.device, precision: torch.dtype, repeats: int = 8) -> float:
    """FLOP/s of torch.mm at 2048^3 on a CPU (8192^3 on a GPU), best of ``repeats``, with the
    process's current threads: the rate the benchmark's own matrix products are measured against."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=precision) for _ in range(2))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.mm(a, b)  # warm-up
    sync()
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best
