"""The bad-input matrix: each broken config value or input file stops `snakemake` when the
DAG is built, before any job runs, with a non-zero exit, one message naming the key, file
or line, and no Python traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_dag import TRACEBACK, dry_run, write_config

GOOD_PROMPT = {"id": "p1", "prompt": "How do I boil an egg?"}


def set_key(cfg: dict, dotted: str, value) -> None:
    node = cfg
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


def prompts_file(tmp: Path, text: str | bytes) -> str:
    path = tmp / "prompts.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def file_with(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def valid_lines(n: int = 10) -> str:
    return "".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}?"}) + "\n" for i in range(n))


# (case id, how to break it: (cfg, tmp) -> None, a substring the one message must hold)
CASES = [
    ("malformed_json_line", lambda c, t: c.update(prompts=prompts_file(t, valid_lines(3) + "{not json\n")),
     "prompts.jsonl: line 4: not valid JSON"),
    ("missing_field", lambda c, t: c.update(prompts=prompts_file(t, valid_lines(3) + '{"id": "x"}\n')),
     "line 4: missing field 'prompt'"),
    ("duplicate_id", lambda c, t: c.update(prompts=prompts_file(t, valid_lines(3) + json.dumps(GOOD_PROMPT | {"id": "p0"}) + "\n")),
     "line 4: duplicate id 'p0' (first on line 1)"),
    ("empty_pool", lambda c, t: c.update(prompts=prompts_file(t, "")), "no records (the file is empty)"),
    ("empty_prompt", lambda c, t: c.update(prompts=prompts_file(t, valid_lines(3) + '{"id": "x", "prompt": "  "}\n')),
     "line 4: field 'prompt' is empty"),
    ("wrong_field_type", lambda c, t: c.update(prompts=prompts_file(t, '{"id": 7, "prompt": "q"}\n')),
     "line 1: field 'id' must be str, got int"),
    ("not_an_object", lambda c, t: c.update(prompts=prompts_file(t, '["id", "prompt"]\n')),
     "line 1: expected a JSON object, got list"),
    ("non_utf8_bytes", lambda c, t: c.update(prompts=prompts_file(t, valid_lines(2).encode() + b'{"id": "x", "prompt": "caf\xe9"}\n')),
     "not valid UTF-8"),
    ("huge_line", lambda c, t: c.update(prompts=prompts_file(t, json.dumps({"id": "x", "prompt": "a" * 1_000_100}) + "\n")),
     "characters long (limit 1000000)"),
    ("missing_prompts_file", lambda c, t: c.update(prompts=str(t / "nope.jsonl")), "nope.jsonl"),
    ("missing_exemplars_file", lambda c, t: c.update(exemplars=str(t / "nope_ex.jsonl")), "nope_ex.jsonl"),
    ("missing_principles_file", lambda c, t: c.update(principles=str(t / "nope.yaml")), "nope.yaml: file not found"),
    ("malformed_principles_yaml", lambda c, t: c.update(principles=file_with(t, "p.yaml", "self_id: [unclosed\n")),
     "p.yaml"),
    ("exemplar_without_thoughts", lambda c, t: c.update(exemplars=file_with(
        t, "ex.jsonl", json.dumps({"id": "e1", "turns": [{"user": "u", "answer": "a"}]}) + "\n")),
     "ex.jsonl: line 1: turns[0] needs a non-empty string 'thoughts'"),
    ("unknown_top_level_key", lambda c, t: c.update(sed=1), "'sed' was unexpected"),
    ("unknown_nested_key", lambda c, t: set_key(c, "defaults.train.lr", 0.1), "'lr' was unexpected"),
    ("rounds_wrong_type", lambda c, t: set_key(c, "experiments.soft.rounds", "three"), "'three' is not of type 'integer'"),
    ("rounds_zero", lambda c, t: set_key(c, "experiments.soft.rounds", 0), "0 is less than the minimum of 1"),
    ("budget_negative", lambda c, t: set_key(c, "defaults.prompt_budget", -5), "-5 is less than the minimum of 1"),
    ("budget_above_pool", lambda c, t: set_key(c, "defaults.prompt_budget", 1000), "1000 prompts asked but"),
    ("rounds_above_budget", lambda c, t: set_key(c, "experiments.soft.rounds", 9),
     "experiments.soft.rounds': 9 rounds need at least that many prompts"),
    ("shots_above_pool", lambda c, t: set_key(c, "defaults.icl.shots", 99), "icl.shots': 99 exemplars per prompt"),
    ("unsafe_experiment_name", lambda c, t: c["experiments"].update({"../etc": {}}), "../etc"),
    ("reserved_experiment_name", lambda c, t: c["experiments"].update({"base_model": {}}), "base_model"),
    ("learning_rate_zero", lambda c, t: set_key(c, "defaults.train.learning_rate", 0), "learning_rate"),
    ("unknown_icl_mode", lambda c, t: set_key(c, "defaults.icl.mode", "shuffled"), "'shuffled' is not one of"),
    ("overlap_above_one", lambda c, t: set_key(c, "defaults.filter.max_prompt_overlap", 1.5), "max_prompt_overlap"),
    ("negative_gpu", lambda c, t: set_key(c, "resources.train_model.gpu", -1), "-1 is less than the minimum of 0"),
    ("eval_limit_zero", lambda c, t: set_key(c, "evaluation.limit", 0), "limit"),
    ("bad_sha256", lambda c, t: set_key(c, "benchmarks.sha256", "abc"), "sha256"),
    ("moved_key", lambda c, t: set_key(c, "defaults.generation.shots", 1),
     "'defaults.generation.shots' has moved: set 'defaults.icl.shots' instead"),
    ("impossible_curriculum", lambda c, t: set_key(c, "experiments.soft.curriculum", {"order": "easy_to_hard", "scorer": "previous"}),
     "experiments.soft.curriculum.scorer"),
    ("qlora_without_gpu", lambda c, t: set_key(c, "defaults.train.method", "qlora"), "qlora needs a GPU"),
    ("missing_extends_file", lambda c, t: c.update(extends=str(t / "base.yaml")), "config key 'extends'"),
    ("bad_run_name", lambda c, t: c.update(run_name="a/b"), "run_name"),
    ("missing_question_types", lambda c, t: c.update(prompts={"source": "self_instruct", "question_types": str(t / "qt.yaml")}),
     "qt.yaml: file not found"),
    ("unknown_prompt_source", lambda c, t: c.update(prompts={"source": "web"}), "prompts"),
    ("missing_validation_file", lambda c, t: set_key(c, "defaults.early_stop", {"validation": str(t / "val.jsonl")}),
     "experiments.soft.early_stop.validation': " ),
    ("validation_metric_for_jsonl", lambda c, t: set_key(c, "defaults.early_stop", {
        "validation": file_with(t, "val.jsonl", "{}\n"), "metric": "acc_norm"}), "a preference JSONL gives margin or acc"),
    ("missing_probe_prompts", lambda c, t: set_key(c, "evaluation.probe", {"prompts": str(t / "probe.jsonl")}),
     "probe.jsonl: file not found"),
    ("judge_without_probe", lambda c, t: set_key(c, "evaluation.judge", {"kind": "local"}),
     "evaluation.probe.prompts, which is null"),
    ("judge_key_variable_unset", lambda c, t: c["evaluation"].update(
        probe={"prompts": file_with(t, "probe.jsonl", valid_lines(2))},
        judge={"kind": "endpoint", "url": "http://127.0.0.1:9/v1/chat/completions", "model": "m",
               "api_key_env": "SOFT_TEST_UNSET_KEY_VARIABLE"}),
     "environment variable SOFT_TEST_UNSET_KEY_VARIABLE is not set"),
    ("judge_unknown_reference", lambda c, t: c["evaluation"].update(
        probe={"prompts": file_with(t, "probe.jsonl", valid_lines(2))}, judge={"kind": "local", "reference": "nope"}),
     "no experiment named 'nope'"),
    ("missing_vllm_python", lambda c, t: c.update(vllm_python=str(t / "venv/bin/python")),
     "config key 'vllm_python': "),
]


@pytest.mark.parametrize("name,breaks,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_stops_before_any_job(tmp_path, name, breaks, message):
    cfg_path = write_config(tmp_path, {"soft": {"rounds": 2}})
    cfg = yaml.safe_load(cfg_path.read_text())
    breaks(cfg, tmp_path)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = dry_run(tmp_path, cfg_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{name}: accepted\n{out[-2000:]}"
    assert message in out, f"{name}: message lacks {message!r}\n{out[-2000:]}"
    assert TRACEBACK not in out, out[-3000:]
    assert "rule split_prompts" not in out and "localrule all" not in out  # no job was planned


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


def test_the_unbroken_config_passes(tmp_path):
    proc = dry_run(tmp_path, write_config(tmp_path, {"soft": {"rounds": 2}}))
    assert proc.returncode == 0, proc.stderr[-2000:]


