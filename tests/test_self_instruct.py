"""Self-instruct prompt source: parsing, filters, near-duplicate removal, config, and a
tiny-model run whose pool a SOFT chain consumes."""

from __future__ import annotations

import json

import pytest
import yaml

from soft.config import SELF_INSTRUCT_POOL, prompt_source, prompts_file
from soft.errors import SoftError
from soft.prompts.self_instruct import (
    NearDuplicateFilter,
    SelfInstructSettings,
    clean_line,
    load_question_types,
    parse_topic,
    question_problem,
)
from tiny import REPO, tiny_config



def test_repo_question_types_load():
    types = load_question_types(REPO / "config/question_types.yaml")
    assert len(types) >= 10 and len({t.name for t in types}) == len(types)
    assert {"dangerous_request", "realtime_information", "false_premise"} <= {t.name for t in types}


@pytest.mark.parametrize("text,match", [
    ("types: []\n", "non-empty list under 'types'"),
    ("types:\n  - {name: a, description: d}\n", r"types\[0\]: 'seed'"),
    ("types:\n  - {name: a, description: d, seed: s}\n  - {name: a, description: e, seed: t}\n", "duplicate name 'a'"),
    ("types: [unclosed\n", "not valid YAML"),
])
def test_question_type_errors_name_the_entry(tmp_path, text, match):
    path = tmp_path / "qt.yaml"
    path.write_text(text)
    with pytest.raises(SoftError, match=match):
        load_question_types(path)


@pytest.mark.parametrize("raw,clean", [
    (" 2. Baking bread\n3. Knitting", "Baking bread"),
    ('- "How do tides work?"\nmore', "How do tides work?"),
    ("\n\n", ""),
    ("  Why is the sky blue?  ", "Why is the sky blue?"),
])
def test_clean_line_takes_the_first_item(raw, clean):
    assert clean_line(raw) == clean


def test_parse_topic_rejects_empty_and_long():
    assert parse_topic(" Garden pests.\n") == "Garden pests"
    assert parse_topic("") is None
    assert parse_topic("a topic that goes on and on and on for far too many words") is None


@pytest.mark.parametrize("question,problem", [
    ("Why?", "too_short"),
    ("word " * 61, "too_long"),
    ("What is in this picture of my cat?", "banned_word"),
    ("Can you open the attached file, please?", "banned_word"),
    ("How do I repot a large cactus safely?", None),
])
def test_question_filters(question, problem):
    assert question_problem(question.strip(), SelfInstructSettings()) == problem


def test_near_duplicates_are_dropped_at_the_rouge_threshold():
    dedup = NearDuplicateFilter(0.7, ["How do I boil an egg?"])
    assert not dedup.add("How do I boil an egg quickly?")  # ROUGE-L F1 0.91
    assert dedup.add("What causes the seasons on Earth?")
    assert not dedup.add("What causes the seasons on the Earth?")
    assert dedup.add("Write a limerick about a cat.")
    assert len(dedup.kept) == 3
    assert dedup.max_similarity("totally unrelated words here") < 0.3


def test_prompt_source_forms(monkeypatch):
    assert prompt_source({"prompts": "p.jsonl"}) == {"source": "file", "path": "p.jsonl"}
    si = prompt_source({"prompts": {"source": "self_instruct", "topics_per_type": 5}})
    assert si["topics_per_type"] == 5 and si["questions_per_topic"] == 2 and si["max_rouge_l"] == 0.7
    assert prompts_file(si) == SELF_INSTRUCT_POOL
    assert SelfInstructSettings.from_config(si).max_pool == 10


@pytest.mark.e2e
def test_self_instruct_pool_feeds_a_soft_chain(tmp_path, run_snakemake):
    """The tiny model writes a pool (short, loose filters: a random model writes noise) and
    a 2-round chain splits and trains on it."""
    source = {"source": "self_instruct", "question_types": str(REPO / "config/question_types.yaml"),
              "topics_per_type": 2, "questions_per_topic": 2, "max_new_tokens": 6, "min_words": 1,
              "banned_words": [], "max_rouge_l": 0.95}
    cfg = tiny_config(tmp_path, experiments={"soft": {"rounds": 2, "prompt_budget": 4}}, prompts=source)
    run_snakemake(tmp_path, cfg, "results/soft/models/round2")
    pool = [json.loads(line) for line in (tmp_path / SELF_INSTRUCT_POOL).read_text().splitlines()]
    stats = json.loads((tmp_path / "results/prompt_pool/self_instruct_stats.json").read_text())
    assert stats["kept"] == len(pool) >= 4 and stats["questions_written"] <= 12 * 2 * 2
    assert all(r["id"].startswith("si-") and r["prompt"] for r in pool)
    split = [json.loads(line) for k in (1, 2) for line in (tmp_path / f"results/soft/prompts/round{k}.jsonl").read_text().splitlines()]
    assert len(split) == 4 and {r["id"] for r in split} <= {r["id"] for r in pool}
    cfg_text = yaml.safe_load(cfg.read_text())
    assert cfg_text["prompts"]["source"] == "self_instruct"


def test_budget_above_the_self_instruct_maximum_fails_at_dag_build(tmp_path, run_snakemake):
    source = {"source": "self_instruct", "topics_per_type": 1, "questions_per_topic": 1,
              "question_types": str(REPO / "config/question_types.yaml")}
    cfg = tiny_config(tmp_path, experiments={"soft": {"rounds": 2, "prompt_budget": 40}}, prompts=source)
    proc = run_snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0
    assert "prompt_budget': 40 prompts asked but the self-instruct pool (12 types x 1 topics" in proc.stdout + proc.stderr
