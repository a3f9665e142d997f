"""Helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`, so this folder is on
sys.path)."""

from __future__ import annotations

import time

import torch


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GEMM rate of n×n×n products (2n³ FLOPs each) on the current threads: the
    denominator of the model FLOPs utilization figures."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best
