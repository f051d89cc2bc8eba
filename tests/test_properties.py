"""Property-based tests: whatever a config or a JSONL file holds, the loaders give either
a valid result or one SoftError with a message; never another exception (which would
reach the user as a traceback)."""

import copy
import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soft.config import evaluation_settings, extend_config, load_schema, resolve_experiments, validate_schema
from soft.preflight import check_evaluation
from soft.probe.diagnostics import read_validation
from soft.errors import SoftError
from soft.io import read_jsonl
from soft.records import read_generations, read_prompts, read_training_data

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema()
DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)

# Records that look like the real ones, with any field possibly wrong, missing or extra.
FIELD_NAMES = ["id", "prompt", "category", "round", "seed", "exemplar_ids", "continuation", "response",
               "thoughts", "chosen", "rejected"]
records = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), json_values, max_size=8)
lines = st.one_of(records.map(json.dumps), st.text(max_size=40), json_values.map(json.dumps), st.just(""))

READERS = [read_prompts, read_generations, read_training_data, read_validation,
           lambda p: read_jsonl(p, {"id": (str, True)})]


@FAST
@given(st.lists(lines, max_size=6), st.sampled_from(range(len(READERS))))
def test_jsonl_readers_validate_or_say_why(tmp_path_factory, content, which):
    path = tmp_path_factory.mktemp("jsonl") / "f.jsonl"
    path.write_text("\n".join(content) + "\n", encoding="utf-8")
    try:
        out = READERS[which](path)
    except SoftError as e:
        assert str(path) in str(e)  # the message names the file
        return
    assert isinstance(out, list) and out and all(isinstance(r, dict) for r in out)
    assert len({r["id"] for r in out}) == len(out)


@FAST
@given(st.binary(max_size=200))
def test_jsonl_readers_on_arbitrary_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "f.jsonl"
    path.write_bytes(data)
    try:
        read_prompts(path)
    except SoftError as e:
        assert str(path) in str(e)


def _paths(node, prefix=()):
    """Every key path of a nested config."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


KEY_PATHS = sorted(set(_paths(DEFAULT)))


def load(config: dict) -> None:
    """What the Snakefile does with a config before any job, minus file reads."""
    config = extend_config(config)
    validate_schema(config, SCHEMA)
    experiments = resolve_experiments(config, SCHEMA)
    evaluation = evaluation_settings(config, SCHEMA)
    check_evaluation(evaluation, experiments)


@FAST
@given(st.sampled_from(KEY_PATHS), json_values)
def test_config_with_any_value_anywhere_loads_or_names_the_key(key_path, value):
    config = copy.deepcopy(DEFAULT)
    node = config
    for part in key_path[:-1]:
        node = node[part]
    node[key_path[-1]] = value
    try:
        load(config)
    except SoftError as e:
        assert "config key" in str(e) or ".jsonl" in str(e) or ".yaml" in str(e), str(e)
        assert "\n" not in str(e) and len(str(e)) < 600, str(e)  # one line, never the value or schema dumped


@FAST
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=5))
def test_config_of_random_top_level_keys(config):
    try:
        load(config)
    except SoftError:
        pass


def test_the_default_config_loads(monkeypatch):
    monkeypatch.chdir(REPO)
    load(copy.deepcopy(DEFAULT))
