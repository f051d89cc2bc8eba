"""Prompt pool splitting: disjoint per-round slices of one seeded shuffle."""

from __future__ import annotations

import random

from soft.config import round_sizes
from soft.errors import SoftError


def split_rounds(pool: list[dict], prompt_budget: int, rounds: int, seed: int) -> list[list[dict]]:
    """Shuffle the pool with `seed`, take `prompt_budget` prompts, cut them into `rounds` slices.

    The shuffle depends only on the pool and the seed, never on the experiment, so
    experiments with the same budget consume the same prompts: a single-round baseline
    and a T-round chain see exactly the same total data.
    """
    if prompt_budget > len(pool):
        raise SoftError(f"prompt_budget {prompt_budget} exceeds the pool's {len(pool)} prompts")
    order = sorted(pool, key=lambda r: r["id"])  # independent of the file's line order
    random.Random(seed).shuffle(order)
    chosen = order[:prompt_budget]
    slices, start = [], 0
    for size in round_sizes(prompt_budget, rounds):
        slices.append(chosen[start:start + size])
        start += size
    return slices
