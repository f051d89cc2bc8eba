"""Collapse diagnostics (soft.probe.diagnostics) on hand-written answers, the shipped validation
and probe sets, and token entropy on the tiny model."""

import json
import math

import pytest
from tiny import REPO, make_tiny_model

from soft.probe.diagnostics import (distinct_n, mean_length, preference_scores, read_validation, repetition_rate,
                              summarize_answers)
from soft.errors import SoftError
from soft.scoring import token_entropy
from soft.records import read_prompts


def test_distinct_n():
    assert distinct_n(["a a b"], 1) == pytest.approx(2 / 3)
    assert distinct_n(["a a b", "A B c"], 1) == pytest.approx(3 / 6)  # lowercased, across answers
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # (a b), (b a), (a b)
    assert distinct_n(["one"], 2) == 0.0 and distinct_n([], 1) == 0.0


def test_repetition_rate():
    assert repetition_rate(["the cat sat on the mat"]) == 0.0
    # 8 words -> 5 four-grams; "a b c d" comes back twice after its first time
    assert repetition_rate(["a b c d a b c d"]) == pytest.approx(1 / 5)
    assert repetition_rate(["x x x x x x"]) == pytest.approx(2 / 3)  # 3 four-grams, 2 repeats
    assert repetition_rate(["short one", "a b c d a b c d"]) == pytest.approx(0.1)
    assert repetition_rate([]) == 0.0


def test_mean_length_and_summary():
    assert mean_length(["a b", "c d e f"]) == 3.0 and mean_length([]) == 0.0
    s = summarize_answers(["a b", "a c"], [1.0, 2.0])
    assert s == {"entropy": 1.5, "distinct_1": 0.75, "distinct_2": 1.0, "mean_length": 2.0,
                 "repetition_rate": 0.0, "n": 2}


def test_preference_scores():
    assert preference_scores([1.0, 2.0, 3.0], [2.0, 1.0, 3.5]) == {"acc": pytest.approx(2 / 3, abs=1e-6),
                                                                  "margin": pytest.approx(0.5 / 3, abs=1e-6),
                                                                  "n": 3}
    with pytest.raises(ValueError):
        preference_scores([], [])


def test_shipped_validation_and_probe_sets():
    val = read_validation(REPO / "config/validation.jsonl")
    assert len(val) == 32 and len({v["id"] for v in val}) == 32
    assert {v["category"] for v in val} == {"harmless", "helpful", "honest"}
    probes = read_prompts(REPO / "config/probe_prompts.jsonl")
    pool = {p["prompt"].strip().lower() for p in read_prompts(REPO / "config/prompts.jsonl")}
    held_out = {p["prompt"].strip().lower() for p in probes} | {v["prompt"].strip().lower() for v in val}
    assert len(probes) >= 80 and not held_out & pool
    assert not {p["prompt"].strip().lower() for p in probes} & {v["prompt"].strip().lower() for v in val}
    assert len({p["category"] for p in probes}) >= 6
    # length alone must not separate the answers: neither side is the longer one almost always
    longer = sum(len(v["chosen"].split()) > len(v["rejected"].split()) for v in val)
    assert 8 <= longer <= 24


def test_probe_prompts_repeat_no_exemplar_training_or_validation_prompt():
    """The probes are held out: no near-copy (difflib ratio > 0.75) of an exemplar's user
    turn, a training-pool prompt or a validation prompt (an earlier probe repeated the
    lighthouse poem exemplar)."""
    import difflib

    from soft.principles import load_exemplars

    probes = [p["prompt"].lower() for p in read_prompts(REPO / "config/probe_prompts.jsonl")]
    others = [t["user"].lower() for ex in load_exemplars(REPO / "config/exemplars.jsonl") for t in ex["turns"]]
    others += [p["prompt"].lower() for p in read_prompts(REPO / "config/prompts.jsonl")]
    others += [v["prompt"].lower() for v in read_validation(REPO / "config/validation.jsonl")]
    close = [(p, o) for p in probes for o in others if difflib.SequenceMatcher(None, p, o).ratio() > 0.75]
    assert close == []
    assert len(set(probes)) == len(probes)


def test_bad_validation_file_names_file_and_line(tmp_path):
    bad = tmp_path / "val.jsonl"
    bad.write_text(json.dumps({"id": "v1", "prompt": "p", "chosen": "c", "rejected": "r"}) + "\n"
                   + json.dumps({"id": "v2", "prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(SoftError, match=r"val.jsonl: line 2: missing field 'rejected'"):
        read_validation(bad)


def test_token_entropy_falls_when_the_model_sharpens(tmp_path):
    import torch

    from soft.models import load_causal_lm, load_tokenizer

    model_dir = make_tiny_model(tmp_path / "m")
    tok = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir)
    model.eval()
    pairs = [(tok("What is a budget?").input_ids, tok("A plan for money.").input_ids),
             (tok("Hi").input_ids, tok("Hello there, how can I help you today?").input_ids),
             (tok("Empty").input_ids, []),
             ([], tok("Hello there").input_ids), ([], tok("Hi").input_ids[:1])]
    flat = token_entropy(model, pairs, tok.pad_token_id, batch_size=2)
    assert all(0 < h <= math.log(model.config.vocab_size) + 1e-6 for h in flat[:2]) and flat[2] == 0.0
    assert 0 < flat[3] <= math.log(model.config.vocab_size) + 1e-6 and flat[4] == 0.0  # no context
    # batching and padding do not change a pair's value
    assert token_entropy(model, pairs[1:2], tok.pad_token_id, batch_size=1)[0] == pytest.approx(flat[1], abs=1e-4)
    with torch.no_grad():
        model.lm_head.weight.mul_(50)  # tied to the embeddings: logits scale up, softmax sharpens
    sharp = token_entropy(model, pairs, tok.pad_token_id, batch_size=2)
    assert sharp[0] < flat[0] and sharp[1] < flat[1]
