"""Unit tests for soft.generate.icl: exemplar pools and per-prompt choice in the fixed, random and
growing modes, and the file-level pool both generate_responses and filter_responses build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soft.errors import SoftError
from soft.generate.responses import plan_requests
from soft.generate.icl import (
    IclSettings,
    build_pool,
    choose_exemplars,
    earlier_rounds,
    grown_exemplars,
    load_pool,
    restrict_pool,
)
from soft.principles import build_prompt, load_exemplars, load_principles, sample_exemplars

REPO = Path(__file__).resolve().parents[1]
EXEMPLARS = REPO / "config" / "exemplars.jsonl"
SELF_ID = "I am a helpful, honest and harmless AI assistant."
PROMPT_IDS = [f"p{i:04d}" for i in range(1, 41)]


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return load_exemplars(EXEMPLARS)


@pytest.fixture(scope="module")
def principles():
    return load_principles(REPO / "config" / "principles.yaml")


def _ids(exemplars: list[dict]) -> list[str]:
    return [e["id"] for e in exemplars]


def _accepted(round_j: int, n: int, thoughts: bool = True) -> list[dict]:
    recs = []
    for i in range(n):
        rec = {"id": f"q{round_j}{i:02d}", "prompt": f"Round {round_j} question {i}?",
               "response": f"Round {round_j} answer {i}, long enough to keep.", "round": round_j,
               "seed": 0, "exemplar_ids": ["ex01"]}
        if thoughts:
            rec["thoughts"] = f"{SELF_ID} Round {round_j} thoughts {i}. I should follow rules 2 (informative)."
        recs.append(rec)
    return recs


# ---------------------------------------------------------------- settings


def test_settings_defaults_and_from_config():
    assert IclSettings() == IclSettings(mode="random", shots=2, pool_size=None)
    assert IclSettings.from_config({"mode": "fixed", "shots": 3}) == IclSettings("fixed", 3, None)
    assert IclSettings.from_config({"mode": "growing", "shots": 1, "pool_size": None}).pool_size is None
    with pytest.raises(SoftError, match="config key 'icl.mode'"):
        IclSettings(mode="grow")


def test_earlier_rounds():
    assert earlier_rounds("growing", 1) == []
    assert earlier_rounds("growing", 4) == [1, 2, 3]
    assert earlier_rounds("random", 4) == []
    assert earlier_rounds("fixed", 4) == []


# ---------------------------------------------------------------- pool_size


def test_restrict_pool_whole_and_subset(base):
    assert _ids(restrict_pool(base, None, 0)) == sorted(_ids(base))
    sub = restrict_pool(base, 5, 0)
    assert len(sub) == 5 and set(_ids(sub)) <= set(_ids(base))
    assert _ids(sub) == sorted(_ids(sub))
    # seeded: same subset for the same seed whatever the file order; another seed differs
    assert _ids(restrict_pool(list(reversed(base)), 5, 0)) == _ids(sub)
    assert any(_ids(restrict_pool(base, 5, s)) != _ids(sub) for s in (1, 2, 3))
    assert _ids(restrict_pool(base, len(base), 0)) == sorted(_ids(base))


def test_restrict_pool_too_large(base):
    with pytest.raises(SoftError, match=f"'icl.pool_size': 99 exemplars asked but x.jsonl holds only {len(base)}"):
        restrict_pool(base, 99, 0, source="x.jsonl")


@pytest.mark.parametrize("mode", ["fixed", "random", "growing"])
def test_draws_come_from_the_restricted_pool(base, mode):
    settings = IclSettings(mode=mode, shots=2, pool_size=4)
    pool = build_pool(base, settings, 0, [(1, _accepted(1, 3))] if mode == "growing" else [], SELF_ID)
    allowed = set(_ids(restrict_pool(base, 4, 0))) | {i for i in _ids(pool) if i.startswith("r1:")}
    for pid in PROMPT_IDS:
        assert set(_ids(choose_exemplars(pool, settings, 0, pid))) <= allowed


# ---------------------------------------------------------------- fixed


def test_fixed_same_exemplars_for_every_prompt(base):
    settings = IclSettings(mode="fixed", shots=3)
    pool = build_pool(base, settings, 7)
    draws = {tuple(_ids(choose_exemplars(pool, settings, 7, pid))) for pid in PROMPT_IDS}
    assert len(draws) == 1
    (ids,) = draws
    assert len(ids) == 3 and len(set(ids)) == 3
    # the same set in every round (the draw ignores the prompt) and for any file order
    assert _ids(choose_exemplars(build_pool(list(reversed(base)), settings, 7), settings, 7, "zzz")) == list(ids)
    # a seeded draw: another seed gives another set
    assert any(_ids(choose_exemplars(pool, settings, s, "p0001")) != list(ids) for s in (1, 2, 3))


def test_fixed_plan_requests_identical_ids(base, principles):
    prompts = [{"id": pid, "prompt": f"Question {pid}?"} for pid in PROMPT_IDS[:6]]
    settings = IclSettings(mode="fixed", shots=2)
    reqs = plan_requests(prompts, principles, build_pool(base, settings, 0), settings, seed=0)
    assert len({tuple(r["exemplar_ids"]) for r in reqs}) == 1
    by_id = {e["id"]: e for e in base}
    for req in reqs:
        assert req["text"] == build_prompt(principles, [by_id[i] for i in req["exemplar_ids"]], req["prompt"])


# ---------------------------------------------------------------- random


def test_random_is_the_per_prompt_seeded_draw(base):
    settings = IclSettings(mode="random", shots=2)
    pool = build_pool(base, settings, 0)
    for pid in PROMPT_IDS:
        ids = _ids(choose_exemplars(pool, settings, 0, pid))
        # the behaviour before the icl section existed: sample_exemplars on the whole file
        assert ids == _ids(sample_exemplars(base, 2, 0, pid))
        assert ids == _ids(choose_exemplars(build_pool(list(reversed(base)), settings, 0), settings, 0, pid))
    assert len({tuple(_ids(choose_exemplars(pool, settings, 0, pid))) for pid in PROMPT_IDS}) > 10


def test_random_deterministic_and_seed_dependent(base):
    settings = IclSettings(mode="random", shots=3, pool_size=10)
    pool = build_pool(base, settings, 3)
    first = [_ids(choose_exemplars(pool, settings, 3, pid)) for pid in PROMPT_IDS]
    again = [_ids(choose_exemplars(build_pool(base, settings, 3), settings, 3, pid)) for pid in PROMPT_IDS]
    assert first == again
    other = [_ids(choose_exemplars(build_pool(base, settings, 4), settings, 4, pid)) for pid in PROMPT_IDS]
    assert first != other


def test_zero_shots(base):
    for mode in ("fixed", "random", "growing"):
        settings = IclSettings(mode=mode, shots=0)
        assert choose_exemplars(build_pool(base, settings, 0), settings, 0, "p0001") == []


# ---------------------------------------------------------------- growing


def test_grown_exemplars_provenance():
    recs = _accepted(2, 2)
    grown = grown_exemplars(2, recs, SELF_ID)
    assert grown[0] == {
        "id": "r2:q200", "round": 2, "source_id": "q200",
        "turns": [{"user": recs[0]["prompt"], "thoughts": recs[0]["thoughts"], "answer": recs[0]["response"]}],
    }
    assert _ids(grown) == ["r2:q200", "r2:q201"]


def test_grown_exemplar_without_thoughts_opens_with_self_id():
    (grown,) = grown_exemplars(1, _accepted(1, 1, thoughts=False), SELF_ID)
    assert grown["turns"][0]["thoughts"] == SELF_ID


def test_growing_pool_holds_base_and_earlier_rounds(base):
    settings = IclSettings(mode="growing", shots=2)
    pool = build_pool(base, settings, 0, [(2, _accepted(2, 3)), (1, _accepted(1, 2))], SELF_ID)
    ids = _ids(pool)
    assert ids[:len(base)] == sorted(_ids(base))
    assert ids[len(base):] == ["r1:q100", "r1:q101", "r2:q200", "r2:q201", "r2:q202"]  # by round
    grown = [e for e in pool if e["id"].startswith("r")]
    assert all(e["id"] == f"r{e['round']}:{e['source_id']}" for e in grown)
    # round 1 (no earlier rounds) is just the base pool, like random mode
    assert _ids(build_pool(base, settings, 0, [], SELF_ID)) == _ids(build_pool(base, IclSettings(), 0))


def test_growing_draws_include_grown_exemplars(base):
    settings = IclSettings(mode="growing", shots=2, pool_size=2)
    pool = build_pool(base, settings, 0, [(1, _accepted(1, 6))], SELF_ID)
    assert len(pool) == 8
    draws = [_ids(choose_exemplars(pool, settings, 0, pid)) for pid in PROMPT_IDS]
    assert any(i.startswith("r1:") for d in draws for i in d)
    assert draws == [_ids(sample_exemplars(pool, 2, 0, pid)) for pid in PROMPT_IDS]  # per-prompt seeded


def test_growing_plan_requests_show_grown_text(base, principles):
    settings = IclSettings(mode="growing", shots=2, pool_size=1)
    pool = build_pool(base, settings, 0, [(1, _accepted(1, 1))], SELF_ID)
    reqs = plan_requests([{"id": "p0001", "prompt": "New?"}], principles, pool, settings, seed=0)
    assert sorted(reqs[0]["exemplar_ids"]) == sorted(_ids(pool))  # 2 shots from a pool of 2
    grown = pool[-1]["turns"][0]
    assert f"User: {grown['user']}\n\nAssistant (internal thoughts): {grown['thoughts']}\n\nAssistant: " \
           f"{grown['answer']}" in reqs[0]["text"]


def test_earlier_rounds_only_in_growing_mode(base):
    with pytest.raises(ValueError):
        build_pool(base, IclSettings(mode="random"), 0, [(1, _accepted(1, 1))], SELF_ID)


def test_duplicate_id_between_base_and_grown(base):
    clash = base + [{"id": "r1:q100", "turns": base[0]["turns"]}]
    with pytest.raises(SoftError, match="'r1:q100' occurs twice"):
        build_pool(clash, IclSettings(mode="growing"), 0, [(1, _accepted(1, 1))], SELF_ID)


# ---------------------------------------------------------------- from files (what both scripts call)


def test_load_pool_from_files(tmp_path, base):
    paths = []
    for j in (1, 2):
        p = tmp_path / f"round{j}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in _accepted(j, 2)), encoding="utf-8")
        paths.append((j, p))
    settings = IclSettings(mode="growing", shots=2, pool_size=3)
    pool = load_pool(EXEMPLARS, settings, 0, paths, SELF_ID)
    assert _ids(pool) == _ids(build_pool(base, settings, 0, [(1, _accepted(1, 2)), (2, _accepted(2, 2))], SELF_ID))
    assert len(pool) == 7
    assert _ids(load_pool(EXEMPLARS, IclSettings(), 0)) == sorted(_ids(base))


def test_load_pool_bad_round_file_names_it(tmp_path):
    bad = tmp_path / "round1.jsonl"
    bad.write_text('{"id": "q1", "prompt": "x"}\n', encoding="utf-8")
    with pytest.raises(SoftError, match=r"round1.jsonl: line 1: missing field 'response'"):
        load_pool(EXEMPLARS, IclSettings(mode="growing"), 0, [(1, bad)], SELF_ID)
