"""The hub prompt source (prompts: {source: hub}): row conversion, file reading, the
fetch job's checks, and the config/DAG wiring. Nothing here reaches the network: the
download is replaced by a local file through fetch_hub_pool's `download` seam."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml
from test_dag import Plan, assert_refused, dry_run, write_config

from soft.config import (
    HUB_POOL,
    HUB_POOL_STATS,
    load_schema,
    prompt_source,
    prompts_file,
    resolve_experiments,
    validate_schema,
)
from soft.preflight import check_pool_sizes
from soft.errors import SoftError
from soft.prompts.hub import convert_rows, fetch_hub_pool, hub_records, known_pool_size, read_rows
from soft.prompts.split import budget_prompts
from soft.records import read_prompts

REPO = Path(__file__).resolve().parents[1]
HUB = {"source": "hub", "dataset": "x/y", "file": "d.jsonl", "field": "instruction"}
ROWS = [
    {"instruction": "  What is a cat? ", "category": "open_qa"},
    {"instruction": "", "category": "open_qa"},
    {"instruction": "what   is a CAT?", "category": "open_qa"},       # duplicate of row 0
    {"instruction": None, "category": "brainstorming"},
    {"instruction": 42, "category": "brainstorming"},
    {"instruction": "Name three rivers.", "category": "brainstorming"},
    {"instruction": "Why is the sky blue?", "category": ""},
]


def settings(**over) -> dict:
    return prompt_source({"prompts": {**HUB, **over}})


# ---------------------------------------------------------------- rows -> records


def test_hub_records_ids_strip_skip_and_dedupe():
    records, counts = convert_rows(ROWS, "instruction", "category", None, "d.jsonl", id_prefix="y")
    assert records == [
        {"id": "y-000000", "prompt": "What is a cat?", "category": "open_qa"},
        {"id": "y-000005", "prompt": "Name three rivers.", "category": "brainstorming"},
        {"id": "y-000006", "prompt": "Why is the sky blue?"},  # an empty category is left out
    ]
    assert counts == {"rows": 7, "kept": 3, "skipped_empty": 3, "duplicates": 1, "beyond_max_prompts": 0,
                      "dropped_category": 0, "with_context": 0}
    assert hub_records(ROWS, "instruction", None, None, "d.jsonl", id_prefix="y") == [
        {k: v for k, v in r.items() if k != "category"} for r in records]


def test_ids_are_the_row_index_so_max_prompts_keeps_a_stable_prefix():
    full = hub_records(ROWS, "instruction", None, None, "d.jsonl")
    two, counts = convert_rows(ROWS, "instruction", None, 2, "d.jsonl")
    assert two == full[:2] and [r["id"] for r in two] == ["hub-000000", "hub-000005"]
    assert counts["kept"] == 2 and counts["beyond_max_prompts"] == 1  # row 6 never read
    assert hub_records(ROWS, "instruction", None, 10, "d.jsonl") == full


def test_a_row_without_the_field_names_where_the_row_the_field_and_its_fields():
    rows = [{"instruction": "ok?"}, {"instruction": "fine?"}, {"prompt": "no", "context": ""}]
    with pytest.raises(SoftError) as info:
        hub_records(rows, "instruction", None, None, "d.jsonl of hub dataset x/y@main")
    msg = str(info.value)
    assert msg.startswith("d.jsonl of hub dataset x/y@main: row 2 has no field 'instruction'")
    assert "config key 'prompts.field'" in msg and "its fields: prompt, context" in msg


def test_a_misspelt_category_field_is_an_error_too():
    with pytest.raises(SoftError, match=r"row 0 has no field 'categroy' \(config key 'prompts.category_field'\)"):
        hub_records(ROWS, "instruction", "categroy", None, "d.jsonl")


def test_no_usable_prompt_is_an_error():
    with pytest.raises(SoftError, match=r"d.jsonl: no usable prompts in field 'instruction' \(2 rows, 2 of them"):
        hub_records([{"instruction": " "}, {"instruction": None}], "instruction", None, None, "d.jsonl")
    with pytest.raises(SoftError, match="no usable prompts"):
        hub_records([], "instruction", None, None, "d.jsonl")


# ---------------------------------------------------------------- file formats


def test_read_rows_jsonl_and_json(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:2]) + "\n")  # a blank line is skipped
    assert read_rows(jsonl) == ROWS[:2]
    js = tmp_path / "d.json"
    js.write_text(json.dumps(ROWS))
    assert read_rows(js) == ROWS


@pytest.mark.parametrize("name, text, message", [
    ("bad.jsonl", '{"a": 1}\n{"a": \n', "bad.jsonl: line 2: not valid JSON"),
    ("list.jsonl", '["a"]\n', "list.jsonl: line 1: expected a JSON object, got list"),
    ("obj.json", '{"data": []}', "obj.json: expected a list of objects, got dict"),
    ("strs.json", '["a", "b"]', "strs.json: item 0: expected a JSON object, got str"),
    ("d.csv", "a,b\n", "cannot read .csv files (config key 'prompts.file'"),
])
def test_read_rows_errors(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(SoftError, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_rows(tmp_path / name)


def test_read_rows_parquet(tmp_path):
    if importlib.util.find_spec("pyarrow") is None:
        pytest.skip("pyarrow is not installed")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS[:2] + ROWS[5:]), tmp_path / "d.parquet")
    rows = read_rows(tmp_path / "d.parquet")
    assert [r["instruction"] for r in rows] == ["  What is a cat? ", "", "Name three rivers.", "Why is the sky blue?"]


# ---------------------------------------------------------------- the fetch job


def local_file(tmp_path: Path, rows: list[dict], name: str = "d.jsonl") -> Path:
    # laid out like the huggingface_hub cache, so the stats record the snapshot commit
    path = tmp_path / "cache" / "snapshots" / ("ab" * 20) / name
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_fetch_writes_the_pool_and_path_free_stats(tmp_path):
    src = local_file(tmp_path, ROWS)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    s = settings(category_field="category", sha256=digest)
    pool, stats_path = tmp_path / "results/prompt_pool/hub.jsonl", tmp_path / "results/prompt_pool/hub_stats.json"
    stats = fetch_hub_pool(s, pool, stats_path, download=lambda _: src)
    records = read_prompts(pool)
    assert [r["id"] for r in records] == ["y-000000", "y-000005", "y-000006"]
    assert json.loads(stats_path.read_text()) == stats == {
        "dataset": "x/y", "file": "d.jsonl", "revision": "main", "field": "instruction",
        "category_field": "category", "max_prompts": None, "context_field": None,
        "context_format": "{context}\n\n{prompt}", "drop_categories": [], "sha256": digest, "commit": "ab" * 20,
        "rows": 7, "kept": 3, "skipped_empty": 3, "duplicates": 1, "beyond_max_prompts": 0,
        "dropped_category": 0, "with_context": 0}
    assert str(tmp_path) not in stats_path.read_text()
    # the DAG counts a pool fetched with these settings, and no other
    assert known_pool_size(s, pool, stats_path) == 3
    assert known_pool_size(settings(category_field="category", sha256=digest, max_prompts=2), pool, stats_path) is None
    assert known_pool_size(s, tmp_path / "missing.jsonl", stats_path) is None


def test_fetch_refuses_a_sha256_mismatch(tmp_path):
    src = local_file(tmp_path, ROWS)
    pool = tmp_path / "hub.jsonl"
    with pytest.raises(SoftError) as info:
        fetch_hub_pool(settings(sha256="0" * 64), pool, tmp_path / "stats.json", download=lambda _: src)
    msg = str(info.value)
    assert msg.startswith("d.jsonl of hub dataset x/y@main: sha256 mismatch: expected " + "0" * 64)
    assert "config key 'prompts.sha256'" in msg and hashlib.sha256(src.read_bytes()).hexdigest() in msg
    assert not pool.exists()


def test_fetch_offline_says_so_and_points_at_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SoftError) as info:
        fetch_hub_pool(settings(), tmp_path / "hub.jsonl", tmp_path / "stats.json")
    msg = str(info.value)
    assert msg.startswith("d.jsonl of hub dataset x/y@main: cannot download it from the Hugging Face hub "
                          "(HF_HUB_OFFLINE=1 is set")
    assert "prompts: path/to/file.jsonl" in msg


def test_a_pool_smaller_than_the_budget_fails_the_split_naming_file_and_key():
    pool = hub_records(ROWS, "instruction", None, None, "d.jsonl")
    with pytest.raises(SoftError) as info:
        budget_prompts(pool, 4, seed=0, where=HUB_POOL)
    msg = str(info.value)
    assert f"prompt_budget 4 exceeds the 3 prompts of {HUB_POOL}" in msg and "'defaults.prompt_budget'" in msg


# ---------------------------------------------------------------- config and DAG


def test_hub_source_defaults_and_pool_file():
    s = settings()
    # null defaults are left out (read as None)
    assert s == {**HUB, "revision": "main", "context_format": "{context}\n\n{prompt}", "drop_categories": []}
    assert prompts_file(s) == HUB_POOL
    assert prompt_source({"prompts": {"source": "hub", "dataset": "x/y", "file": "d.parquet"}})["field"] == "prompt"


@pytest.mark.parametrize("over, message", [
    ({"feild": "instruction"}, "config key 'prompts.feild': unknown key (did you mean 'field'?); expected one of "
                               "source, dataset, file, field, category_field, revision, sha256, max_prompts, "
                               "context_field, context_format, drop_categories, local_file, got 'instruction'"),
    ({"file": "d.csv"}, r"config key 'prompts.file': expected a string matching \.(jsonl|json|parquet)$, got 'd.csv'"),
    ({"dataset": "dolly"}, "config key 'prompts.dataset': expected a string matching "
                           "^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$, got 'dolly'"),
    ({"max_prompts": 0}, "config key 'prompts.max_prompts': expected an integer >= 1 or null, got 0"),
    ({"sha256": "abc"}, "config key 'prompts.sha256': expected a string matching ^[0-9a-f]{64}$ or null, got 'abc'"),
])
def test_bad_hub_keys_name_the_key(over, message):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    cfg["prompts"] = {**HUB, **over}
    with pytest.raises(SoftError) as info:
        validate_schema(cfg, load_schema())
    assert str(info.value) == message


def test_an_unfetched_pool_skips_only_the_budget_check():
    exps = resolve_experiments({"defaults": {"prompt_budget": 10_000, "icl": {"shots": 2}},
                                "experiments": {"a": {}}})
    check_pool_sizes(exps, None, 24, HUB_POOL, "ex.jsonl")  # size unknown: no budget check
    with pytest.raises(SoftError, match="icl.shots': 2 exemplars per prompt but ex.jsonl holds only 1"):
        check_pool_sizes(exps, None, 1, HUB_POOL, "ex.jsonl")


def hub_config(tmp_path: Path, prompts: dict, budget: int = 6) -> Path:
    path = write_config(tmp_path, {"soft": {"rounds": 2}})
    cfg = yaml.safe_load(path.read_text())
    cfg["prompts"] = prompts
    cfg["defaults"]["prompt_budget"] = budget
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_hub_source_dry_run_plans_the_fetch(tmp_path):
    plan = Plan(dry_run(tmp_path, hub_config(tmp_path, HUB, budget=10_000)))  # unknown size: not checked
    job = plan.one("fetch_prompt_pool")
    assert sorted(job["output"]) == [HUB_POOL, HUB_POOL_STATS]
    assert plan.stats["fetch_prompt_pool"] == 1
    assert plan.one("split_prompts", exp="soft", k=1)["input"] == [HUB_POOL]


def test_a_fetched_pool_is_counted_at_dag_build(tmp_path):
    src = local_file(tmp_path, ROWS)
    fetch_hub_pool(settings(), tmp_path / HUB_POOL, tmp_path / HUB_POOL_STATS, download=lambda _: src)
    assert_refused(dry_run(tmp_path, hub_config(tmp_path, HUB, budget=4)),
                   f"invalid configuration: config key 'experiments.soft.prompt_budget': 4 prompts asked but "
                   f"{HUB_POOL} holds only 3")


def test_a_misspelt_hub_key_stops_the_dry_run(tmp_path):
    assert_refused(dry_run(tmp_path, hub_config(tmp_path, {**HUB, "feild": "instruction"})),
                   "invalid configuration: config key 'prompts.feild': unknown key (did you mean 'field'?); "
                   "expected one of source, dataset, file, field, category_field, revision, sha256, max_prompts, context_field, context_format, drop_categories, local_file, "
                   "got 'instruction'")


# ---------------------------------------------------------------- Dolly: passages and categories

DOLLY = [  # dolly-15k's shape: instruction, context, response, category
    {"instruction": "When did the bridge open?",
     "context": "The Harbour Bridge opened in 1932 after eight years of work.",
     "response": "In 1932.", "category": "closed_qa"},
    {"instruction": "Name three kinds of cheese.", "context": "", "response": "Brie, cheddar, gouda.",
     "category": "brainstorming"},
    {"instruction": "Summarise this text.", "context": "Otters hold hands while sleeping so they do not drift apart.",
     "response": "Otters hold hands asleep.", "category": "summarization"},
    {"instruction": "Classify each as fruit or vegetable: apple, leek.", "context": "", "response": "...",
     "category": "classification"},
    {"instruction": "Summarise this text.", "context": "Bees dance to tell the hive where flowers are.",
     "response": "Bees dance.", "category": "summarization"},  # same instruction, another passage
]


def test_dolly_passages_join_their_instruction_through_the_fetch_job(tmp_path):
    """The config's local_file path (a copy fetched by hand) through fetch_hub_pool: every
    instruction that points at a passage carries it; the same instruction with another
    passage is another prompt."""
    src = tmp_path / "dolly.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in DOLLY))
    s = settings(dataset="databricks/databricks-dolly-15k", file="databricks-dolly-15k.jsonl",
                 category_field="category", context_field="context", local_file=str(src))
    stats = fetch_hub_pool(s, tmp_path / "hub.jsonl", tmp_path / "stats.json")
    records = read_prompts(tmp_path / "hub.jsonl")
    assert [r["prompt"] for r in records] == [
        "The Harbour Bridge opened in 1932 after eight years of work.\n\nWhen did the bridge open?",
        "Name three kinds of cheese.",
        "Otters hold hands while sleeping so they do not drift apart.\n\nSummarise this text.",
        "Classify each as fruit or vegetable: apple, leek.",
        "Bees dance to tell the hive where flowers are.\n\nSummarise this text.",
    ]
    assert records[0]["id"] == "databricks-dolly-15k-000000" and records[0]["category"] == "closed_qa"
    assert (stats["kept"], stats["with_context"], stats["duplicates"], stats["context_field"]) == (5, 3, 0, "context")
    assert str(tmp_path) not in (tmp_path / "stats.json").read_text()


def test_dolly_categories_can_be_dropped_and_the_format_is_config():
    records, counts = convert_rows(DOLLY, "instruction", "category", where="dolly", context_field="context",
                                   context_format="{prompt}\nInput: {context}",
                                   drop_categories=["summarization", "classification"])
    assert [r["prompt"] for r in records] == [
        "When did the bridge open?\nInput: The Harbour Bridge opened in 1932 after eight years of work.",
        "Name three kinds of cheese."]
    assert (counts["dropped_category"], counts["kept"], counts["rows"]) == (3, 2, 5)
    # without the join, the two summarisation rows are one prompt pointing at no passage
    plain = hub_records(DOLLY, "instruction", "category", where="dolly")
    assert [r["prompt"] for r in plain].count("Summarise this text.") == 1


@pytest.mark.parametrize("over, message", [
    ({"context_format": "{prompt}"}, "must name exactly {prompt} and {context} (it names {prompt})"),
    ({"context_format": "{instruction}: {context}"}, "(it names {context}, {instruction})"),
    ({"context_format": "{prompt} {context"}, "is not a format string"),
    ({"drop_categories": ["closed_qa"]}, "prompts.drop_categories': needs prompts.category_field"),
])
def test_bad_context_settings_name_the_key(over, message):
    with pytest.raises(SoftError, match=re.escape(message)):
        settings(**over)


def test_a_missing_context_field_names_the_row_and_key():
    with pytest.raises(SoftError, match=r"row 0 has no field 'passage' \(config key 'prompts.context_field'\)"):
        convert_rows(DOLLY, "instruction", context_field="passage", where="dolly")


def test_a_local_copy_is_the_fetch_jobs_input(tmp_path):
    src = tmp_path / "dolly.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in DOLLY))
    plan = Plan(dry_run(tmp_path, hub_config(tmp_path, {**HUB, "local_file": str(src), "context_field": "context"})))
    assert plan.one("fetch_prompt_pool")["input"] == [str(src)]
