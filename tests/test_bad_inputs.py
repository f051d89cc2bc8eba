"""The bad-input matrix: each broken config value or input file stops `snakemake` when the
DAG is built, before any job runs, with a non-zero exit and exactly one line: the message
naming the key (what was expected, the value found) or the file and line. Each case
asserts that whole line, and that nothing else is printed: no `File "..."` frames, no error
class name (Snakemake 9 prints neither a traceback header nor a schema dump for these)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from test_dag import EXEMPLARS, PROMPTS, assert_refused, dry_run, write_config

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


# (case id, how to break it: (cfg, tmp) -> None, the one line printed; <tmp> stands for the
# test's folder). Every line starts with "invalid configuration: ".
CASES = [
    ("malformed_json_line", lambda c, t: c.update(prompts=prompts_file(t, valid_lines(3) + "{not json\n")),
     "<tmp>/prompts.jsonl: line 4: not valid JSON (Expecting property name enclosed in double quotes)"),
    ("missing_field", lambda c, t: c.update(prompts=prompts_file(t, valid_lines(3) + '{"id": "x"}\n')),
     "<tmp>/prompts.jsonl: line 4: missing field 'prompt'"),
    ("duplicate_id", lambda c, t: c.update(prompts=prompts_file(t, valid_lines(3) + json.dumps(GOOD_PROMPT | {"id": "p0"}) + "\n")),
     "<tmp>/prompts.jsonl: line 4: duplicate id 'p0' (first on line 1)"),
    ("empty_pool", lambda c, t: c.update(prompts=prompts_file(t, "")), "<tmp>/prompts.jsonl: no records (the file is empty)"),
    ("empty_prompt", lambda c, t: c.update(prompts=prompts_file(t, valid_lines(3) + '{"id": "x", "prompt": "  "}\n')),
     "<tmp>/prompts.jsonl: line 4: field 'prompt' is empty"),
    ("wrong_field_type", lambda c, t: c.update(prompts=prompts_file(t, '{"id": 7, "prompt": "q"}\n')),
     "<tmp>/prompts.jsonl: line 1: field 'id' must be str, got int"),
    ("not_an_object", lambda c, t: c.update(prompts=prompts_file(t, '["id", "prompt"]\n')),
     "<tmp>/prompts.jsonl: line 1: expected a JSON object, got list"),
    ("non_utf8_bytes", lambda c, t: c.update(prompts=prompts_file(t, valid_lines(2).encode() + b'{"id": "x", "prompt": "caf\xe9"}\n')),
     "<tmp>/prompts.jsonl: line 3: not valid UTF-8"),
    ("huge_line", lambda c, t: c.update(prompts=prompts_file(t, json.dumps({"id": "x", "prompt": "a" * 1_000_100}) + "\n")),
     "<tmp>/prompts.jsonl: line 1: line is 1000125 characters long (limit 1000000)"),
    ("missing_prompts_file", lambda c, t: c.update(prompts=str(t / "nope.jsonl")), "<tmp>/nope.jsonl: file not found"),
    ("missing_exemplars_file", lambda c, t: c.update(exemplars=str(t / "nope_ex.jsonl")), "<tmp>/nope_ex.jsonl: file not found"),
    ("missing_principles_file", lambda c, t: c.update(principles=str(t / "nope.yaml")), "<tmp>/nope.yaml: file not found"),
    ("malformed_principles_yaml", lambda c, t: c.update(principles=file_with(t, "p.yaml", "self_id: [unclosed\n")),
     "<tmp>/p.yaml: line 2, column 1: not valid YAML (expected ',' or ']', but got '<stream end>')"),
    ("exemplar_without_thoughts", lambda c, t: c.update(exemplars=file_with(
        t, "ex.jsonl", json.dumps({"id": "e1", "turns": [{"user": "u", "answer": "a"}]}) + "\n")),
     "<tmp>/ex.jsonl: line 1: turns[0] needs a non-empty string 'thoughts'"),
    ("unknown_top_level_key", lambda c, t: c.update(sed=1),
     "config key 'sed': unknown key (did you mean 'seed'?); expected one of extends, run_name, seed, seeds, "
     "comparisons, paper, storage, base_model, benchmarks, prompts, principles, exemplars, evaluation, defaults, "
     "experiments, vllm_python, resources, got 1"),
    ("unknown_nested_key", lambda c, t: set_key(c, "defaults.train.lr", 0.1),
     re.compile(r"config key 'defaults\.train\.lr': unknown key; expected one of init, data, method, lora, "
                r"learning_rate, [a-z_, ]+, got 0\.1")),
    ("rounds_wrong_type", lambda c, t: set_key(c, "experiments.soft.rounds", "three"),
     "config key 'experiments.soft.rounds': expected an integer >= 1, got 'three'"),
    ("rounds_zero", lambda c, t: set_key(c, "experiments.soft.rounds", 0),
     "config key 'experiments.soft.rounds': expected an integer >= 1, got 0"),
    ("budget_negative", lambda c, t: set_key(c, "defaults.prompt_budget", -5),
     "config key 'defaults.prompt_budget': expected an integer >= 1, got -5"),
    ("budget_above_pool", lambda c, t: set_key(c, "defaults.prompt_budget", 1000),
     f"config key 'experiments.soft.prompt_budget': 1000 prompts asked but {PROMPTS} holds only 225"),
    ("rounds_above_budget", lambda c, t: set_key(c, "experiments.soft.rounds", 9),
     "config key 'experiments.soft.rounds': 9 rounds need at least that many prompts, but prompt_budget is 6"),
    ("shots_above_pool", lambda c, t: set_key(c, "defaults.icl.shots", 99),
     f"config key 'experiments.soft.icl.shots': 99 exemplars per prompt but {EXEMPLARS} holds only 24"),
    ("unsafe_experiment_name", lambda c, t: c["experiments"].update({"../etc": {}}),
     "config key 'experiments.../etc': expected a name matching ^[A-Za-z][A-Za-z0-9_-]*$, got '../etc'"),
    ("reserved_experiment_name", lambda c, t: c["experiments"].update({"base_model": {}}),
     "config key 'experiments.base_model': expected a name other than base_model, prompt_pool, tables, "
     "figures, paper, bench (reserved), got 'base_model'"),
    ("learning_rate_zero", lambda c, t: set_key(c, "defaults.train.learning_rate", 0),
     "config key 'defaults.train.learning_rate': expected a number > 0, got 0"),
    ("unknown_icl_mode", lambda c, t: set_key(c, "defaults.icl.mode", "shuffled"),
     "config key 'defaults.icl.mode': expected one of 'fixed', 'random', 'growing', got 'shuffled'"),
    ("overlap_above_one", lambda c, t: set_key(c, "defaults.filter.max_prompt_overlap", 1.5),
     "config key 'defaults.filter.max_prompt_overlap': expected a number >= 0 and <= 1, got 1.5"),
    ("negative_gpu", lambda c, t: set_key(c, "resources.train_model.gpu", -1),
     "config key 'resources.train_model.gpu': expected an integer >= 0, got -1"),
    ("eval_limit_zero", lambda c, t: set_key(c, "evaluation.limit", 0),
     "config key 'evaluation.limit': expected an integer >= 1 or null, got 0"),
    ("bad_sha256", lambda c, t: set_key(c, "benchmarks.sha256", "abc"),
     "config key 'benchmarks.sha256': expected a string matching ^[0-9a-f]{64}$, got 'abc'"),
    ("long_value_shortened", lambda c, t: set_key(c, "defaults.train", "x" * 500),
     "config key 'defaults.train': expected a mapping, got '" + "x" * 56 + "..."),
    ("moved_key", lambda c, t: set_key(c, "defaults.generation.shots", 1),
     "config key 'defaults.generation.shots' has moved: set 'defaults.icl.shots' instead"),
    ("moved_resources_key", lambda c, t: set_key(c, "resources.score_difficulty", {"threads": 1}),
     "config key 'resources.score_difficulty' has moved: set 'resources.score_pool_difficulty' and "
     "'resources.score_round_difficulty' instead"),
    ("impossible_curriculum", lambda c, t: set_key(c, "experiments.soft.curriculum", {"order": "easy_to_hard", "scorer": "previous"}),
     "config key 'experiments.soft.curriculum.scorer': scope across_rounds sorts the prompt pool before round 1, "
     "when only the base model exists; set scorer: base, or scope: within_round"),
    ("missing_extends_file", lambda c, t: c.update(extends=str(t / "base.yaml")),
     "config key 'extends': <tmp>/base.yaml not found"),
    ("bad_run_name", lambda c, t: c.update(run_name="a/b"),
     "config key 'run_name': expected a string matching ^[A-Za-z][A-Za-z0-9_-]*$ or null, got 'a/b'"),
    ("missing_question_types", lambda c, t: c.update(prompts={"source": "self_instruct", "question_types": str(t / "qt.yaml")}),
     "<tmp>/qt.yaml: file not found"),
    ("unknown_prompt_source", lambda c, t: c.update(prompts={"source": "web"}),
     "config key 'prompts.source': expected one of 'file', 'self_instruct', 'hub', got 'web'"),
    ("prompts_wrong_type", lambda c, t: c.update(prompts=5),
     "config key 'prompts': expected a string or a mapping, got 5"),
    ("missing_required_key", lambda c, t: c["base_model"]["source"].pop("path"),
     "config key 'base_model.source.path': expected a string (required), got nothing"),
    ("missing_validation_file", lambda c, t: set_key(c, "defaults.early_stop", {"validation": str(t / "val.jsonl")}),
     "config key 'experiments.soft.early_stop.validation': <tmp>/val.jsonl: file not found"),
    ("validation_metric_for_jsonl", lambda c, t: set_key(c, "defaults.early_stop", {
        "validation": file_with(t, "val.jsonl", "{}\n"), "metric": "acc_norm"}),
     "config key 'experiments.soft.early_stop.metric': a preference JSONL gives margin or acc, not 'acc_norm'"),
    ("missing_probe_prompts", lambda c, t: set_key(c, "evaluation.probe", {"prompts": str(t / "probe.jsonl")}),
     "<tmp>/probe.jsonl: file not found"),
    ("judge_without_probe", lambda c, t: set_key(c, "evaluation.judge", {"kind": "local"}),
     "config key 'evaluation.judge.kind': the judge compares answers to evaluation.probe.prompts, which is null"),
    ("judge_key_variable_unset", lambda c, t: c["evaluation"].update(
        probe={"prompts": file_with(t, "probe.jsonl", valid_lines(2))},
        judge={"kind": "endpoint", "url": "http://127.0.0.1:9/v1/chat/completions", "model": "m",
               "api_key_env": "SOFT_TEST_UNSET_KEY_VARIABLE"}),
     "config key 'evaluation.judge.api_key_env': environment variable SOFT_TEST_UNSET_KEY_VARIABLE is not set"),
    # inputs that exist before the run, checked when the DAG is built as their jobs would
    ("local_model_without_weights", lambda c, t: (t / "model_src" / "model.safetensors").unlink(),
     "config key 'base_model.source.path': <tmp>/model_src: no *.safetensors weights (only safetensors are loaded)"),
    ("local_model_not_a_folder", lambda c, t: set_key(c, "base_model.source.path", str(t / "nowhere")),
     "config key 'base_model.source.path': <tmp>/nowhere is not a folder"),
    ("benchmark_sdist_missing", lambda c, t: set_key(c, "benchmarks.local_file", str(t / "bb.tar.gz")),
     "config key 'benchmarks.local_file': <tmp>/bb.tar.gz: file not found"),
    ("benchmark_sdist_wrong_sha256", lambda c, t: set_key(c, "benchmarks.local_file", file_with(t, "bb.tar.gz", "x")),
     re.compile(r"config key 'benchmarks\.local_file': .*/bb\.tar\.gz: sha256 mismatch: expected [0-9a-f]{64}, "
                r"got 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")),
    ("hub_local_copy_missing", lambda c, t: c.update(prompts={
        "source": "hub", "dataset": "x/y", "file": "d.jsonl", "field": "instruction",
        "local_file": str(t / "d.jsonl")}), "config key 'prompts.local_file': <tmp>/d.jsonl: file not found"),
    ("hub_local_copy_malformed", lambda c, t: c.update(prompts={
        "source": "hub", "dataset": "x/y", "file": "d.jsonl", "field": "instruction",
        "local_file": file_with(t, "d.jsonl", "{not json\n")}), "<tmp>/d.jsonl: line 1: not valid JSON (line 1: Expecting property name enclosed in double quotes)"),
    ("malformed_validation_file", lambda c, t: set_key(c, "defaults.early_stop", {
        "validation": file_with(t, "val.jsonl", '{"id": "v1", "prompt": "Hi?"}\n')}), "<tmp>/val.jsonl: line 1: missing field 'chosen'"),
    ("judge_url_malformed", lambda c, t: c["evaluation"].update(
        probe={"prompts": file_with(t, "probe.jsonl", valid_lines(2))},
        judge={"kind": "endpoint", "url": "localhost:8000/v1/chat/completions", "model": "m"}),
     "config key 'evaluation.judge.url': 'localhost:8000/v1/chat/completions' is not an http(s) URL with a "
     "host (e.g. http://localhost:8000/v1/chat/completions)"),
    ("judge_model_without_tokenizer", lambda c, t: (
        (t / "judge_model").mkdir(), (t / "judge_model" / "config.json").write_text("{}"),
        (t / "judge_model" / "model.safetensors").write_text(""),
        c["evaluation"].update(probe={"prompts": file_with(t, "probe.jsonl", valid_lines(2))},
                               judge={"kind": "local", "model": str(t / "judge_model")})),
     "config key 'evaluation.judge.model': <tmp>/judge_model: no tokenizer files (tokenizer.json, tokenizer.model, vocab.json)"),
    ("judge_unknown_reference", lambda c, t: c["evaluation"].update(
        probe={"prompts": file_with(t, "probe.jsonl", valid_lines(2))}, judge={"kind": "local", "reference": "nope"}),
     "config key 'evaluation.judge.reference': no experiment named 'nope' (experiments: soft)"),
    ("missing_vllm_python", lambda c, t: c.update(vllm_python=str(t / "venv/bin/python")),
     re.compile(r"config key 'vllm_python': .*")),
]


def expected_line(message: str | re.Pattern, tmp: Path) -> str | re.Pattern:
    if isinstance(message, re.Pattern):
        return re.compile("invalid configuration: " + message.pattern)
    return "invalid configuration: " + message.replace("<tmp>", str(tmp))


@pytest.mark.parametrize("name,breaks,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_stops_before_any_job(tmp_path, name, breaks, message):
    cfg_path = write_config(tmp_path, {"soft": {"rounds": 2}})
    cfg = yaml.safe_load(cfg_path.read_text())
    breaks(cfg, tmp_path)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert_refused(dry_run(tmp_path, cfg_path), expected_line(message, tmp_path))


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


def test_the_unbroken_config_passes(tmp_path):
    proc = dry_run(tmp_path, write_config(tmp_path, {"soft": {"rounds": 2}}))
    assert proc.returncode == 0, proc.stderr[-2000:]
