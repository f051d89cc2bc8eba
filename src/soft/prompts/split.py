"""Prompt pool splitting: disjoint per-round slices of one seeded shuffle."""

from __future__ import annotations

import random

from soft.config import round_sizes
from soft.errors import SoftError


def budget_prompts(pool: list[dict], prompt_budget: int, seed: int, where: str = "the pool") -> list[dict]:
    """The `prompt_budget` prompts an experiment consumes: the head of one seeded shuffle.

    The shuffle depends only on the pool and the seed, never on the experiment, so
    experiments with the same budget consume the same prompts: a single-round baseline,
    a T-round chain and a curriculum run see exactly the same total data.
    """
    if prompt_budget > len(pool):
        # A pool fetched by a job (prompts.source: hub) is only counted here, not at DAG build.
        raise SoftError(f"prompt_budget {prompt_budget} exceeds the {len(pool)} prompts of {where}: "
                        f"lower config key 'defaults.prompt_budget' (or the experiment's "
                        f"'experiments.<name>.prompt_budget'), or use a larger pool")
    order = sorted(pool, key=lambda r: r["id"])  # independent of the file's line order
    random.Random(seed).shuffle(order)
    return order[:prompt_budget]


def split_rounds(pool: list[dict], prompt_budget: int, rounds: int, seed: int,
                 difficulty: dict[str, float] | None = None, order: str = "none",
                 where: str = "the pool") -> list[list[dict]]:
    """Cut the experiment's budget prompts into `rounds` slices.

    With a curriculum across rounds (`difficulty`: id -> NLL, `order` easy_to_hard or
    hard_to_easy) the prompts are sorted before the cut, so round 1 gets the easiest
    (or hardest) share; otherwise the seeded shuffle is cut as it is.
    """
    from soft.curriculum.difficulty import sort_by_difficulty

    chosen = budget_prompts(pool, prompt_budget, seed, where)
    if difficulty is not None:
        chosen = sort_by_difficulty(chosen, difficulty, order, where="prompt difficulty scores")
    slices, start = [], 0
    for size in round_sizes(prompt_budget, rounds):
        slices.append(chosen[start:start + size])
        start += size
    return slices
