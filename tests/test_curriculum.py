"""SOFT+ curriculum: difficulty scores, the orders built from them, config checks, and
that training really sees the examples in the curriculum's order."""

from __future__ import annotations

import math

import pytest

from soft.config import resolve_experiments
from soft.curriculum.difficulty import (
    check_curriculum,
    read_scores,
    sort_by_difficulty,
    training_order,
)
from soft.errors import SoftError
from soft.scoring import encode_pair, scoring_texts, span_nll
from soft.io import write_jsonl
from soft.layouts import Layout
from soft.principles import load_principles
from soft.prompts.split import budget_prompts, split_rounds
from tiny import REPO, make_tiny_model

PRINCIPLES = REPO / "config/principles.yaml"


def recs(*ids):
    return [{"id": i, "prompt": f"prompt {i}", "response": f"answer {i}"} for i in ids]


NLL = {"a": 2.0, "b": 0.5, "c": 1.0, "d": 1.0}


def test_easy_to_hard_is_ascending_with_ties_by_id():
    out = sort_by_difficulty(recs("a", "d", "b", "c"), NLL, "easy_to_hard")
    assert [r["id"] for r in out] == ["b", "c", "d", "a"]


def test_hard_to_easy_is_descending_with_ties_by_id():
    out = sort_by_difficulty(recs("a", "d", "b", "c"), NLL, "hard_to_easy")
    assert [r["id"] for r in out] == ["a", "c", "d", "b"]


def test_order_none_keeps_input_order():
    assert [r["id"] for r in sort_by_difficulty(recs("d", "a"), {}, "none")] == ["d", "a"]


def test_missing_score_names_the_id():
    with pytest.raises(SoftError, match="no difficulty score for id 'z'"):
        sort_by_difficulty(recs("a", "z"), NLL, "easy_to_hard")


def test_training_order_sorts_each_round_and_keeps_round_order():
    groups = [recs("a", "b"), recs("c", "d")]
    nll = {"a": 3.0, "b": 2.0, "c": 0.1, "d": 0.0}
    assert [r["id"] for r in training_order(groups, nll, "easy_to_hard")] == ["b", "a", "d", "c"]


def test_split_across_rounds_gives_round1_the_easiest_budget_prompts():
    pool = [{"id": f"p{i:03d}", "prompt": f"q{i}"} for i in range(30)]
    chosen = budget_prompts(pool, 9, seed=3)
    nll = {r["id"]: float(int(r["id"][1:])) for r in chosen}
    slices = split_rounds(pool, 9, 3, seed=3, difficulty=nll, order="easy_to_hard")
    # the same prompts as the unsorted split: a curriculum changes the order, not the data
    assert {r["id"] for s in slices for r in s} == {r["id"] for r in chosen}
    flat = [nll[r["id"]] for s in slices for r in s]
    assert flat == sorted(flat)
    hard = split_rounds(pool, 9, 3, seed=3, difficulty=nll, order="hard_to_easy")
    assert [r["id"] for r in hard[0]] == [r["id"] for r in reversed(slices[2])]


@pytest.mark.parametrize("field,value,match", [
    ("scorer", "previous", "scorer.*only the base model exists"),
    ("target", "prompt_response", "target.*before any answer is written"),
])
def test_across_rounds_refuses_what_cannot_exist_before_round_1(field, value, match):
    cur = {"order": "easy_to_hard", "scope": "across_rounds", "scorer": "base", "target": "prompt", field: value}
    with pytest.raises(SoftError, match=f"experiments.x.curriculum.{match}"):
        check_curriculum("experiments.x.curriculum", cur)
    check_curriculum("k", {**cur, "scope": "within_round"})  # fine within a round
    check_curriculum("k", {**cur, "order": "none"})  # and irrelevant without an order


def test_config_resolution_runs_the_curriculum_check():
    cfg = {"defaults": {}, "experiments": {"plus": {"rounds": 3, "curriculum": {
        "order": "easy_to_hard", "scorer": "previous"}}}}
    with pytest.raises(SoftError, match="experiments.plus.curriculum.scorer"):
        resolve_experiments(cfg)
    ok = resolve_experiments({"defaults": {}, "experiments": {"plus": {"curriculum": {"order": "easy_to_hard"}}}})
    assert ok["plus"]["curriculum"] == {"order": "easy_to_hard", "scope": "across_rounds", "scorer": "base",
                                        "target": "prompt", "batch_size": 8}


def test_read_scores_validates(tmp_path):
    path = tmp_path / "s.jsonl"
    write_jsonl(path, [{"id": "a", "nll": 1.5, "ppl": 4.48, "n_tokens": 3}])
    assert read_scores(path) == {"a": 1.5}
    path.write_text('{"id": "a", "nll": "high", "ppl": 1, "n_tokens": 3}\n')
    with pytest.raises(SoftError, match="line 1: field 'nll' must be int or float"):
        read_scores(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from soft.models import load_causal_lm, load_tokenizer

    d = make_tiny_model(tmp_path_factory.mktemp("m") / "tiny")
    return d, load_tokenizer(d, padding_side="right"), load_causal_lm(d, device="cpu").eval()


def test_scoring_texts_follow_the_training_layout(tiny):
    _, tok, _ = tiny
    p = load_principles(PRINCIPLES)
    chat = Layout.for_tokenizer(tok)
    ctx, span = scoring_texts(tok, chat, p, "How do tides work?", None)
    assert span == "How do tides work?" and ctx.endswith("<|im_start|>user\n") and p.system_prompt in ctx
    ctx, span = scoring_texts(tok, chat, p, "How do tides work?", "The moon pulls.")
    assert span == "The moon pulls." and ctx.endswith("<|im_start|>assistant\n")


def test_batched_span_nll_equals_one_at_a_time(tiny):
    """Batching and padding must not change a score: each batched NLL equals the same
    example scored alone, computed directly from the model's log-probabilities."""
    import torch

    _, tok, model = tiny
    p = load_principles(PRINCIPLES)
    pairs = [encode_pair(tok, *scoring_texts(tok, Layout.for_tokenizer(tok), p, q, a), max_length=128) for q, a in [
        ("Why is the sky blue?", "Scattering of sunlight by air."),
        ("Write a haiku about rain please, a long one with many words in it", "Rain falls."),
        ("Hi", "Hello! How can I help you today?")]]
    batched = span_nll(model, pairs, tok.pad_token_id, batch_size=3)
    for (ctx, tgt), (nll, n) in zip(pairs, batched):
        ids = torch.tensor([ctx + tgt])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        direct = -sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(tgt)) / len(tgt)
        assert n == len(tgt)
        assert math.isclose(nll, direct, rel_tol=1e-4)


def test_encode_pair_keeps_span_start_and_context_end(tiny):
    _, tok, _ = tiny
    ctx, tgt = encode_pair(tok, "word " * 100, "answer " * 100, max_length=50)
    assert len(ctx) + len(tgt) <= 50 and tgt == tok("answer " * 100, add_special_tokens=False).input_ids[:49]
