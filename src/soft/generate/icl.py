"""In-context exemplar pools and per-prompt exemplar choice (config section `icl`).

SOFT's point is that the ICL exemplars are the only fresh information entering the
bootstrapping loop, so how they are chosen is an experiment setting:

- `fixed`:   one seeded draw of `shots` exemplars, shown to every prompt of every round.
- `random`:  a per-prompt seeded draw from the pool (soft.principles.sample_exemplars).
- `growing`: like `random`, but the pool also holds the answers this experiment accepted
             in earlier rounds (results/{exp}/data/round{j}.jsonl, j < k), each as a
             single-turn exemplar with provenance.

`pool_size` restricts the base pool (the exemplars file) to a seeded subset first.

generate_responses and filter_responses both build the pool here, from the same files,
so the filter's exemplar-leak check sees exactly the exemplars that were shown,
including grown ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from soft.errors import SoftError
from soft.principles import load_exemplars, sample_exemplars

MODES = ("fixed", "random", "growing")


@dataclass(frozen=True)
class IclSettings:
    mode: str = "random"
    shots: int = 2
    pool_size: int | None = None  # None = the whole exemplars file

    def __post_init__(self):
        if self.mode not in MODES:
            raise SoftError(f"config key 'icl.mode': {self.mode!r} is not one of {list(MODES)}")

    @classmethod
    def from_config(cls, cfg: dict) -> "IclSettings":
        return cls(**cfg)


def grown_id(round_j: int, record_id: str) -> str:
    return f"r{round_j}:{record_id}"


def restrict_pool(pool: list[dict], pool_size: int | None, seed: int, source: str = "exemplars") -> list[dict]:
    """A seeded subset of `pool_size` exemplars (the whole pool when None), in id order.

    The draw depends only on the pool's ids and the seed, so every experiment of a config
    with the same pool_size sees the same subset.
    """
    ordered = sorted(pool, key=lambda e: e["id"])
    if pool_size is None:
        return ordered
    if pool_size > len(ordered):
        raise SoftError(f"config key 'icl.pool_size': {pool_size} exemplars asked but {source} "
                        f"holds only {len(ordered)}")
    chosen = random.Random(f"{seed}:pool").sample(ordered, pool_size)
    return sorted(chosen, key=lambda e: e["id"])


def grown_exemplars(round_j: int, records: Iterable[dict], self_id: str) -> list[dict]:
    """Accepted answers of round j as single-turn exemplars.

    The thoughts are the model's own internal thoughts when the filter kept them; when it
    did not (a continuation taken whole, without the answer marker), the bare
    self-identification sentence stands in, so the exemplar keeps the prompt format.
    """
    out = []
    for rec in records:
        thoughts = (rec.get("thoughts") or "").strip() or self_id
        out.append({
            "id": grown_id(round_j, rec["id"]),
            "turns": [{"user": rec["prompt"], "thoughts": thoughts, "answer": rec["response"]}],
            "round": round_j,
            "source_id": rec["id"],
        })
    return out


def build_pool(base: list[dict], settings: IclSettings, seed: int,
               earlier: Sequence[tuple[int, list[dict]]] = (), self_id: str = "",
               source: str = "exemplars") -> list[dict]:
    """The exemplar pool of one round: the (restricted) base pool, plus, in growing mode,
    the accepted answers of the earlier rounds given as (round, training records)."""
    pool = restrict_pool(base, settings.pool_size, seed, source)
    if settings.mode == "growing":
        for round_j, records in sorted(earlier, key=lambda x: x[0]):
            pool += grown_exemplars(round_j, records, self_id)
    elif earlier:
        # Only the growing mode reads earlier rounds; anything else is a wiring bug.
        raise ValueError(f"icl mode {settings.mode!r} takes no earlier rounds")
    seen: set[str] = set()
    for ex in pool:
        if ex["id"] in seen:
            raise SoftError(f"{source}: exemplar id {ex['id']!r} occurs twice in the pool (grown "
                            f"exemplars are named 'r<round>:<record id>'; rename the exemplar)")
        seen.add(ex["id"])
    return pool


def choose_exemplars(pool: list[dict], settings: IclSettings, seed: int, prompt_id: str) -> list[dict]:
    """The exemplars shown to one prompt."""
    if settings.mode == "fixed":
        # Seeded by the master seed alone: the same set for every prompt and round.
        return sample_exemplars(pool, settings.shots, seed, "fixed")
    return sample_exemplars(pool, settings.shots, seed, prompt_id)


def load_pool(exemplars_path: str | Path, settings: IclSettings, seed: int,
              earlier_paths: Sequence[tuple[int, str | Path]] = (), self_id: str = "") -> list[dict]:
    """build_pool from files: the exemplars file and the earlier rounds' filtered data."""
    from soft.records import read_training_data

    earlier = [(int(j), read_training_data(p)) for j, p in earlier_paths]
    return build_pool(load_exemplars(exemplars_path), settings, seed, earlier, self_id,
                      source=str(exemplars_path))


def earlier_rounds(mode: str, round_k: int) -> list[int]:
    """Rounds whose accepted answers join round k's pool (growing mode only)."""
    return list(range(1, round_k)) if mode == "growing" else []
