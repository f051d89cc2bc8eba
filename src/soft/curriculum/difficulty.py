"""SOFT+ curriculum: difficulty as perplexity, and the training orders built from it.

Difficulty of an example is the mean negative log-likelihood (log-perplexity) of its
scored span under a scorer model: the user prompt (target `prompt`, given the distilled
system prompt) or the answer (target `prompt_response`, given system prompt and user
turn), both laid out exactly as training sees them (soft.layouts: the chat template or the
plain layout).

Two scopes (the paper leaves open which one SOFT+ uses):
- across_rounds: the experiment's prompt budget is scored once by the base model, sorted,
  and then cut into rounds, so round 1 gets the easiest prompts;
- within_round: each round's filtered answers are scored (by the base model or by the
  previous round's model) and only the training order inside the round changes.
"""

from __future__ import annotations

import logging
import math

from soft.errors import SoftError
from soft.io import FieldSpec, read_jsonl
from soft.principles import Principles
from soft.scoring import encode_pair, load_scorer, scoring_texts, span_nll

log = logging.getLogger(__name__)

ORDERS = ("none", "easy_to_hard", "hard_to_easy")
SCOPES = ("across_rounds", "within_round")

SCORE_FIELDS: FieldSpec = {
    "id": (str, True),
    "nll": ((int, float), True),
    "ppl": ((int, float), True),
    "n_tokens": (int, True),
}


def is_ordered(curriculum: dict) -> bool:
    return curriculum.get("order", "none") != "none"


def check_curriculum(key: str, curriculum: dict) -> None:
    """Cross-field checks a schema cannot express; `key` is the config path of the section."""
    if not is_ordered(curriculum) or curriculum["scope"] != "across_rounds":
        return
    if curriculum["scorer"] != "base":
        raise SoftError(
            f"config key '{key}.scorer': scope across_rounds sorts the prompt pool before round 1, "
            f"when only the base model exists; set scorer: base, or scope: within_round")
    if curriculum["target"] != "prompt":
        raise SoftError(
            f"config key '{key}.target': scope across_rounds sorts prompts before any answer is "
            f"written; set target: prompt, or scope: within_round")


def score_records(records: list[dict], model_dir: str, principles: Principles, target: str,
                  batch_size: int, max_length: int, layout: dict | None = None) -> list[dict]:
    """One score record per input record, in input order: id, nll, ppl, n_tokens.

    target `prompt` scores the prompt; `prompt_response` the record's `response`.
    `layout`: soft.layouts.layout_settings of the config (None = auto)."""
    if not records:
        raise SoftError("nothing to score")
    if target == "prompt_response" and any("response" not in r for r in records):
        raise SoftError("target prompt_response needs records with a 'response' field")
    tokenizer, lay, model = load_scorer(model_dir, layout)
    pairs = []
    for r in records:
        context, span = scoring_texts(tokenizer, lay, principles, r["prompt"],
                                      r["response"] if target == "prompt_response" else None)
        pairs.append(encode_pair(tokenizer, context, span, max_length, lay.add_special_tokens))
    scores = span_nll(model, pairs, tokenizer.pad_token_id, batch_size)
    # Rounded so that the order does not hinge on the last bits of a float sum.
    return [{"id": r["id"], "nll": round(nll, 6), "ppl": round(math.exp(nll), 4), "n_tokens": n}
            for r, (nll, n) in zip(records, scores)]


def read_scores(path) -> dict[str, float]:
    """id -> nll from a scores file written by score_records."""
    recs = read_jsonl(path, SCORE_FIELDS, non_empty=["id"])
    return {r["id"]: float(r["nll"]) for r in recs}


def sort_by_difficulty(records: list[dict], nll: dict[str, float], order: str, where: str = "") -> list[dict]:
    """Records easy-to-hard (ascending NLL) or hard-to-easy; ties broken by id so the order
    is total. `order: none` returns the records unchanged."""
    if order == "none":
        return list(records)
    if order not in ORDERS:
        raise SoftError(f"unknown curriculum order '{order}' (one of {', '.join(ORDERS)})")
    missing = [r["id"] for r in records if r["id"] not in nll]
    if missing:
        raise SoftError(f"{where or 'scores'}: no difficulty score for id '{missing[0]}'"
                        f" ({len(missing)} records unscored)")
    sign = 1 if order == "easy_to_hard" else -1
    return sorted(records, key=lambda r: (sign * nll[r["id"]], r["id"]))


def training_order(groups: list[list[dict]], nll: dict[str, float], order: str) -> list[dict]:
    """Training sequence for one round: each data file's records (one group per round,
    rounds in chain order) sorted by difficulty, then concatenated. Across rounds the
    rounds were already cut easy-to-hard, so this is one global order; within a round it
    orders each round's share."""
    return [r for group in groups for r in sort_by_difficulty(group, nll, order)]
