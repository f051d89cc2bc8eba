"""Unit tests for soft.prompts.split (round splits), soft.principles (prompt building) and the
model-free parts of soft.generate.responses (request planning, length batching)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from soft.config import round_sizes
from soft.errors import SoftError
from soft.generate.responses import length_batches, plan_requests
from soft.generate.icl import IclSettings
from soft.principles import (
    Principles,
    build_prompt,
    load_exemplars,
    load_principles,
    sample_exemplars,
    training_messages,
)
from soft.prompts.split import split_rounds
from soft.records import read_prompts

REPO = Path(__file__).resolve().parents[1]
PRINCIPLES = REPO / "config" / "principles.yaml"
EXEMPLARS = REPO / "config" / "exemplars.jsonl"
PROMPTS = REPO / "config" / "prompts.jsonl"
SELF_ID = "I am a helpful, honest and harmless AI assistant."


@pytest.fixture(scope="module")
def pool() -> list[dict]:
    return [{"id": f"q{i:03d}", "prompt": f"Question number {i}?"} for i in range(60)]


@pytest.fixture(scope="module")
def principles() -> Principles:
    return load_principles(PRINCIPLES)


@pytest.fixture(scope="module")
def exemplars() -> list[dict]:
    return load_exemplars(EXEMPLARS)


def _ids(slices: list[list[dict]]) -> list[list[str]]:
    return [[r["id"] for r in s] for s in slices]


# ---------------------------------------------------------------- split_rounds


@pytest.mark.parametrize("budget, rounds", [(48, 3), (10, 3), (13, 5), (60, 1), (7, 7)])
def test_split_sizes_and_disjoint(pool, budget, rounds):
    slices = split_rounds(pool, budget, rounds, seed=0)
    assert [len(s) for s in slices] == round_sizes(budget, rounds)
    flat = [i for s in _ids(slices) for i in s]
    assert len(flat) == budget
    assert len(set(flat)) == budget  # disjoint: no prompt in two rounds
    assert set(flat) <= {r["id"] for r in pool}
    # records are passed through unchanged
    by_id = {r["id"]: r for r in pool}
    assert all(r == by_id[r["id"]] for s in slices for r in s)


def test_split_deterministic_for_seed(pool):
    a = split_rounds(pool, 30, 3, seed=7)
    b = split_rounds(list(pool), 30, 3, seed=7)
    assert _ids(a) == _ids(b)


def test_split_differs_for_other_seed(pool):
    a = split_rounds(pool, 30, 3, seed=0)
    b = split_rounds(pool, 30, 3, seed=1)
    assert _ids(a) != _ids(b)
    assert set(_ids(a)[0]) != set(_ids(b)[0])


def test_split_independent_of_pool_line_order(pool):
    shuffled = list(pool)
    random.Random(123).shuffle(shuffled)
    assert shuffled != pool
    assert _ids(split_rounds(shuffled, 30, 3, seed=4)) == _ids(split_rounds(pool, 30, 3, seed=4))
    assert _ids(split_rounds(list(reversed(pool)), 30, 3, seed=4)) == _ids(split_rounds(pool, 30, 3, seed=4))


def test_split_is_a_seeded_shuffle_not_the_file_order(pool):
    first = _ids(split_rounds(pool, 20, 1, seed=0))[0]
    assert first != [r["id"] for r in pool[:20]]


def test_multi_round_union_equals_single_round(pool):
    """Same budget -> same total prompts, however many rounds the chain has."""
    single = _ids(split_rounds(pool, 48, 1, seed=3))[0]
    three = _ids(split_rounds(pool, 48, 3, seed=3))
    assert [i for s in three for i in s] == single  # consecutive slices of one order
    for rounds in (2, 4, 5):
        multi = _ids(split_rounds(pool, 48, rounds, seed=3))
        assert sorted(i for s in multi for i in s) == sorted(single)


def test_split_on_repo_prompt_pool():
    prompts = read_prompts(PROMPTS)
    assert len(prompts) >= 48
    slices = split_rounds(prompts, 48, 3, seed=0)
    assert [len(s) for s in slices] == [16, 16, 16]
    assert len({r["id"] for s in slices for r in s}) == 48


def test_split_budget_above_pool(pool):
    with pytest.raises(SoftError, match="prompt_budget 61 exceeds the 60 prompts of the pool"):
        split_rounds(pool, 61, 1, seed=0)
    assert len(split_rounds(pool, 60, 2, seed=0)[1]) == 30  # exactly the pool is fine


# ---------------------------------------------------------------- principles and exemplars files


def test_load_repo_principles(principles):
    assert principles.self_id == SELF_ID
    assert len(principles.rules) == 16
    assert [num for num, _, _ in principles.rules] == list(range(1, 17))
    assert principles.rules[1][:2] == (2, "informative")
    assert principles.system_prompt.startswith("You are a helpful, honest and harmless AI assistant.")
    text = principles.text()
    assert text.startswith(principles.intro.strip())
    assert "\n2 (informative). The assistant should give accurate" in text
    assert text.rstrip().endswith("instructions exactly.")


def test_load_repo_exemplars(exemplars):
    assert len(exemplars) >= 8
    assert len({e["id"] for e in exemplars}) == len(exemplars)
    for e in exemplars:
        for turn in e["turns"]:
            assert turn["thoughts"].startswith(SELF_ID)
            assert turn["user"].strip() and turn["answer"].strip()


def _principles_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "principles.yaml"
    p.write_text(text, encoding="utf-8")
    return p


GOOD = """\
self_id: "I am X."
intro: "Intro."
system_prompt: "Be good."
principles:
  - {id: 1, name: a, text: "Rule A."}
"""


def test_minimal_principles_file(tmp_path):
    pr = load_principles(_principles_file(tmp_path, GOOD))
    assert pr == Principles("I am X.", "Intro.", ((1, "a", "Rule A."),), "Be good.")
    assert pr.text() == "Intro.\n\n1 (a). Rule A."


@pytest.mark.parametrize(
    "text, expect",
    [
        (GOOD.replace('self_id: "I am X."\n', ""), "key 'self_id' must be a non-empty string"),
        (GOOD.replace('system_prompt: "Be good."', 'system_prompt: "  "'),
         "key 'system_prompt' must be a non-empty string"),
        (GOOD.split("principles:")[0], "key 'principles' must be a non-empty list"),
        (GOOD.split("principles:")[0] + "principles: []\n", "key 'principles' must be a non-empty list"),
        (GOOD.replace("{id: 1, name: a", "{id: one, name: a"), "principles[0] needs id (integer)"),
        (GOOD + '  - {id: 2, name: b}\n', "principles[1] needs id (integer), name and text"),
        (GOOD + "  - just a string\n", "principles[1] needs id"),
        ("self_id: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_malformed_principles(tmp_path, text, expect):
    p = _principles_file(tmp_path, text)
    with pytest.raises(SoftError) as info:
        load_principles(p)
    assert str(p) in str(info.value)
    assert expect in str(info.value)


def test_missing_principles_file(tmp_path):
    with pytest.raises(SoftError, match="file not found"):
        load_principles(tmp_path / "nope.yaml")


def test_exemplar_turn_missing_answer(tmp_path):
    p = tmp_path / "ex.jsonl"
    good = {"id": "e1", "turns": [{"user": "u", "thoughts": "t", "answer": "a"}]}
    bad = {"id": "e2", "turns": [{"user": "u", "thoughts": "t", "answer": "a"}, {"user": "u", "thoughts": "t"}]}
    p.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(SoftError) as info:
        load_exemplars(p)
    msg = str(info.value)
    assert str(p) in msg and "line 2" in msg
    assert "turns[1] needs a non-empty string 'answer'" in msg


def test_exemplar_empty_turns(tmp_path):
    p = tmp_path / "ex.jsonl"
    p.write_text('{"id": "e1", "turns": []}\n', encoding="utf-8")
    with pytest.raises(SoftError, match=r"line 1: field 'turns' is empty"):
        load_exemplars(p)


# ---------------------------------------------------------------- sampling and prompt text


def test_sample_exemplars_deterministic_per_seed_and_prompt(exemplars):
    a = [e["id"] for e in sample_exemplars(exemplars, 3, 0, "p0001")]
    assert a == [e["id"] for e in sample_exemplars(list(reversed(exemplars)), 3, 0, "p0001")]
    assert len(a) == 3 and len(set(a)) == 3
    draws = {tuple(e["id"] for e in sample_exemplars(exemplars, 3, s, p))
             for s in (0, 1) for p in ("p0001", "p0002", "p0003", "p0004")}
    assert len(draws) > 4  # seed and prompt id both change the draw


def test_sample_exemplars_all_and_zero(exemplars):
    ids = [e["id"] for e in sample_exemplars(exemplars, len(exemplars), 5, "x")]
    assert sorted(ids) == sorted(e["id"] for e in exemplars)
    assert sample_exemplars(exemplars, 0, 5, "x") == []


def test_sample_exemplars_too_many(exemplars):
    n = len(exemplars)
    with pytest.raises(SoftError, match=f"{n + 1} exemplars asked per prompt but the pool holds {n}"):
        sample_exemplars(exemplars, n + 1, 0, "p0001")


def test_build_prompt_layout(principles, exemplars):
    shown = [e for e in exemplars if e["id"] in ("ex12", "ex01")]
    prompt = "How do I keep basil fresh?"
    text = build_prompt(principles, shown, prompt)
    assert text.startswith(principles.text())
    assert text.endswith("---\nUser: How do I keep basil fresh?\n\nAssistant (internal thoughts):")
    last = len(principles.text())
    for ex in shown:
        for turn in ex["turns"]:
            block = (f"User: {turn['user'].strip()}\n\nAssistant (internal thoughts): "
                     f"{turn['thoughts'].strip()}\n\nAssistant: {turn['answer'].strip()}")
            pos = text.find(block)
            assert pos > last  # present, after the principles and the previous turn
            last = pos
    assert text.count("\n---\n") == len(shown) + 1
    not_shown = next(e for e in exemplars if e["id"] == "ex02")
    assert not_shown["turns"][0]["user"] not in text


def test_build_prompt_zero_shot(principles):
    text = build_prompt(principles, [], "  Hi?  ")
    assert text == principles.text() + "\n\n---\nUser: Hi?\n\nAssistant (internal thoughts):"


def test_training_messages(principles):
    msgs = training_messages(principles, "What is 2+2?")
    assert msgs == {"prompt": [{"role": "system", "content": principles.system_prompt},
                               {"role": "user", "content": "What is 2+2?"}]}
    system = msgs["prompt"][0]["content"]
    assert principles.intro.strip() not in system
    assert all(text not in system for _, _, text in principles.rules)
    with_answer = training_messages(principles, "What is 2+2?", "Four.")
    assert with_answer["prompt"] == msgs["prompt"]
    assert with_answer["completion"] == [{"role": "assistant", "content": "Four."}]


# ---------------------------------------------------------------- generate: planning without a model


def test_plan_requests(principles, exemplars):
    prompts = [{"id": "p1", "prompt": "First?", "category": "c"}, {"id": "p2", "prompt": "Second?"}]
    reqs = plan_requests(prompts, principles, exemplars, IclSettings(shots=2), seed=0)
    assert [r["id"] for r in reqs] == ["p1", "p2"]
    assert reqs[0]["category"] == "c"
    by_id = {e["id"]: e for e in exemplars}
    for req, rec in zip(reqs, prompts):
        expected = [e["id"] for e in sample_exemplars(exemplars, 2, 0, rec["id"])]
        assert req["exemplar_ids"] == expected
        assert req["text"] == build_prompt(principles, [by_id[i] for i in expected], rec["prompt"])
    # a prompt's draw does not depend on its neighbours
    alone = plan_requests(prompts[1:], principles, exemplars, IclSettings(shots=2), seed=0)
    assert alone[0]["exemplar_ids"] == reqs[1]["exemplar_ids"]
    assert "text" not in prompts[0]  # input records untouched


def test_length_batches_longest_first():
    lengths = [5, 9, 1, 9, 3, 7, 5]
    batches = length_batches(lengths, 3)
    assert batches == [[1, 3, 5], [0, 6, 4], [2]]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


@pytest.mark.parametrize("n, size", [(0, 4), (1, 4), (10, 1), (10, 3), (17, 8), (8, 8)])
def test_length_batches_cover_all_once(n, size):
    lengths = [(i * 7) % 5 for i in range(n)]
    batches = length_batches(lengths, size)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n))
    assert all(1 <= len(b) <= size for b in batches)
    assert all(len(b) == size for b in batches[:-1])
    assert length_batches(lengths, size) == batches  # deterministic


def test_length_batches_ties_keep_input_order():
    assert length_batches([4, 4, 4, 4, 4], 2) == [[0, 1], [2, 3], [4]]
