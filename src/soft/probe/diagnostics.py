"""Collapse diagnostics and the preference validation set.

SOFT explains late-round collapse by ever sharper output distributions (and the data
processing inequality: only the exemplars bring new information). These are the signals
that show it on a fixed set of held-out probe prompts, round after round: the model's
mean next-token entropy over its own answers, how varied the answers' words are
(distinct-1/2), how long they are and how much they repeat themselves. The validation
set behind early stop is read here too: prompts with a better and a worse answer, scored
by how much more likely the model finds the better one.

No torch at module level (soft.runtime's scripts import this before GPUs are claimed).
"""

from __future__ import annotations

import math
from pathlib import Path

from soft.io import FieldSpec, read_jsonl

VALIDATION_FIELDS: FieldSpec = {
    "id": (str, True),
    "prompt": (str, True),
    "chosen": (str, True),
    "rejected": (str, True),
    "category": (str, False),
}


def read_validation(path: str | Path) -> list[dict]:
    return read_jsonl(path, VALIDATION_FIELDS, non_empty=["id", "prompt", "chosen", "rejected"])


def _words(text: str) -> list[str]:
    return text.lower().split()


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Unique word n-grams / all word n-grams, over all answers together (0 when none)."""
    grams = [g for t in texts for g in _ngrams(_words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(texts: list[str], n: int = 4) -> float:
    """Mean over answers of the share of an answer's word n-grams that repeat an earlier
    n-gram of the same answer: the loops a collapsing model falls into (0 for answers
    shorter than n words)."""
    if not texts:
        return 0.0
    rates = []
    for t in texts:
        grams = _ngrams(_words(t), n)
        seen: set[tuple[str, ...]] = set()
        repeats = 0
        for g in grams:
            repeats += g in seen
            seen.add(g)
        rates.append(repeats / len(grams) if grams else 0.0)
    return sum(rates) / len(rates)


def mean_length(texts: list[str]) -> float:
    """Mean answer length in words."""
    return sum(len(_words(t)) for t in texts) / len(texts) if texts else 0.0


def preference_scores(nll_chosen: list[float], nll_rejected: list[float]) -> dict:
    """acc: share of items whose better answer has the lower mean NLL; margin: mean of
    NLL(rejected) - NLL(chosen), in nats per token (higher = prefers the better answer)."""
    n = len(nll_chosen)
    if n == 0 or n != len(nll_rejected):
        raise ValueError("preference_scores needs two equally long, non-empty lists")
    acc = sum(c < r for c, r in zip(nll_chosen, nll_rejected)) / n
    margin = sum(r - c for c, r in zip(nll_chosen, nll_rejected)) / n
    return {"acc": round(acc, 6), "margin": round(margin, 6), "n": n}


def summarize_answers(texts: list[str], entropies: list[float]) -> dict:
    """The diagnostics of one round's probe answers."""
    ent = [h for h in entropies if not math.isnan(h)]
    return {
        "entropy": round(sum(ent) / len(ent), 6) if ent else 0.0,
        "distinct_1": round(distinct_n(texts, 1), 6),
        "distinct_2": round(distinct_n(texts, 2), 6),
        "mean_length": round(mean_length(texts), 6),
        "repetition_rate": round(repetition_rate(texts), 6),
        "n": len(texts),
    }
