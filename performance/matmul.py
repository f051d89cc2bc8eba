"""The denominator (this machine's fp32 matmul rate) and the parameter counts that every
FLOP figure multiplies."""

from __future__ import annotations

import time
from pathlib import Path


def matmul_flops(n: int, repeats: int = 3) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def n_params_on_disk(model_dir: str) -> int:
    """Parameter count from the safetensors headers, without loading the model again."""
    import math

    from safetensors import safe_open

    total = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return total
