"""Unit tests for soft.resources.eval_tasks and soft.evaluate.harness.normalise_results (no downloads, no model)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from soft.resources import eval_tasks as bm
from soft.resources.base_model import verify_sha256
from soft.errors import SoftError
from soft.evaluate.harness import normalise_results
from soft.io import sha256_file

PRIMER = "Q: What is 1+1?\nA: 2.\n\nQ: Capital of France?\nA: Paris.\n"


def _task(n: int = 12, k: int = 4) -> dict:
    return {
        "examples": [
            {"input": f"question {i}?", "target_scores": {f"right {i}": 1, **{f"wrong {i}.{j}": 0 for j in range(k - 1)}}}
            for i in range(n)
        ]
    }


def _records(n: int, k: int = 2, name: str = "soft_hhh_harmless") -> list[dict]:
    return bm.convert_task(_task(n, k), name, seed=0)


def _make_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# ----------------------------------------------------------------- convert_task


def test_convert_keeps_choices_and_label_points_at_correct():
    task = _task()
    recs = bm.convert_task(task, "t", seed=3)
    assert [r["id"] for r in recs] == [f"t-{i:04d}" for i in range(12)]
    for ex, r in zip(task["examples"], recs):
        assert r["question"] == ex["input"]
        assert sorted(r["choices"]) == sorted(ex["target_scores"])
        assert ex["target_scores"][r["choices"][r["label"]]] == 1


def test_convert_is_deterministic_and_seed_dependent():
    a = bm.convert_task(_task(), "t", seed=0)
    assert a == bm.convert_task(_task(), "t", seed=0)
    b = bm.convert_task(_task(), "t", seed=1)
    assert [r["choices"] for r in a] != [r["choices"] for r in b]
    # the task name also feeds the RNG, so two tasks with equal content differ
    c = bm.convert_task(_task(), "u", seed=0)
    assert [r["choices"] for r in a] != [r["choices"] for r in c]


def test_convert_removes_first_position_bias():
    recs = bm.convert_task(_task(n=200, k=2), "t", seed=0)
    first = sum(r["label"] == 0 for r in recs)
    assert 70 < first < 130  # source lists the correct answer first every time


@pytest.mark.parametrize(
    "scores, msg",
    [
        ({"a": 1, "b": 1}, "exactly one correct"),
        ({"a": 0, "b": 0}, "exactly one correct"),
        ({"a": 1}, "at least two"),
        ({"a": 1, "b": 0.5}, "0 or 1"),
        ({"a": 1, "": 0}, "empty choice"),
    ],
)
def test_convert_rejects_bad_examples(scores, msg):
    with pytest.raises(SoftError, match=msg):
        bm.convert_task({"examples": [{"input": "q", "target_scores": scores}]}, "t", seed=0)


def test_convert_rejects_missing_examples():
    with pytest.raises(SoftError, match="'t'.*examples"):
        bm.convert_task({}, "t", seed=0)
    with pytest.raises(SoftError, match="example 0.*input"):
        bm.convert_task({"examples": [{"input": " ", "target_scores": {"a": 1, "b": 0}}]}, "t", seed=0)


# ----------------------------------------------------------------- extract_members


def test_extract_members_with_and_without_top_folder(tmp_path):
    sdist = _make_tar(tmp_path / "x-1.0.tar.gz", {
        "x-1.0/a/task.json": json.dumps({"examples": [1]}).encode(),
        "x-1.0/b/task.json": b'{"examples": [2]}',
        "x-1.0/c/other.txt": b"ignored",
    })
    got = bm.extract_members(sdist, {"A": "x-1.0/a/task.json", "B": "b/task.json"})
    assert got == {"A": {"examples": [1]}, "B": {"examples": [2]}}


def test_extract_members_missing_and_bad(tmp_path):
    sdist = _make_tar(tmp_path / "x.tar.gz", {"x/a.json": b"not json"})
    with pytest.raises(SoftError, match="not found: nope.json"):
        bm.extract_members(sdist, {"N": "nope.json"})
    with pytest.raises(SoftError, match="not valid JSON"):
        bm.extract_members(sdist, {"A": "a.json"})
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"plain text")
    with pytest.raises(SoftError, match="bad.tar.gz"):
        bm.extract_members(bad, {"A": "a.json"})


# ----------------------------------------------------------------- sha256


def test_sha_mismatch_raises(tmp_path):
    f = tmp_path / "file.bin"
    f.write_bytes(b"hello")
    good = sha256_file(f)
    assert verify_sha256(f, good.upper()) == good
    with pytest.raises(SoftError) as e:
        verify_sha256(f, "0" * 64)
    assert "file.bin" in str(e.value) and "0" * 64 in str(e.value) and good in str(e.value)
    with pytest.raises(SoftError, match="not found"):
        verify_sha256(tmp_path / "missing", good)


# ----------------------------------------------------------------- YAMLs


def _lm_eval_load(path: Path) -> dict:
    """Load a task YAML the way lm-eval does, without importing the `!function`."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=False)


def _questions(n: int = 3) -> dict:
    return {"examples": [{"Question": f"q{i}?", "Best answer": f"true {i}", "True answers": [f"yes {i}", f"true {i}"],
                          "False answers": [f"no {i}", f"false {i}", f"never {i}"]} for i in range(n)]}


@pytest.fixture
def task_dir(tmp_path):
    tasks = {name: _records(5, name=name) for name in bm.HHH_TASKS}
    for raw, ab in zip(bm.HHH_TASKS, bm.HHH_AB_TASKS):
        tasks[ab] = bm.hhh_ab_records(tasks[raw], ab)
    tasks[bm.BIGBENCH_TRUTHFULQA_TASK] = _records(4, k=5, name=bm.BIGBENCH_TRUTHFULQA_TASK)
    tasks[bm.TRUTHFULQA_TASK] = bm.convert_truthfulqa_mc1(_questions(), bm.TRUTHFULQA_TASK, seed=0)
    tasks[bm.TRUTHFULQA_MC2_TASK] = bm.convert_mc2(_questions(), bm.TRUTHFULQA_MC2_TASK)
    bm.write_lm_eval_tasks(tmp_path, tasks, {bm.BIGBENCH_TRUTHFULQA_TASK: PRIMER})
    return tmp_path


def test_yaml_files_name_the_right_tasks(task_dir):
    names = sorted(p.stem for p in task_dir.glob("*.yaml"))
    assert names == sorted([*bm.ALL_TASKS, *bm.GROUPS])
    for task in bm.ALL_TASKS:
        cfg = _lm_eval_load(task_dir / f"{task}.yaml")
        assert cfg["task"] == task
        assert cfg["output_type"] == "multiple_choice"
        assert cfg["doc_to_choice"] == "choices" and cfg["doc_to_target"] == "label"
        assert cfg["dataset_kwargs"]["data_file"] == f"{task}.jsonl"
        assert cfg["custom_dataset"].endswith("soft.resources.eval_tasks.lm_eval_dataset")
        mc2 = task == bm.TRUTHFULQA_MC2_TASK
        assert {m["metric"] for m in cfg["metric_list"]} == ({"acc"} if mc2 else {"acc", "acc_norm"})
        assert ("process_results" in cfg) == mc2
        assert all(m["aggregation"] == "mean" and m["higher_is_better"] for m in cfg["metric_list"])
        assert (task_dir / f"{task}.jsonl").is_file()
    group = yaml.safe_load((task_dir / "soft_hhh.yaml").read_text())
    assert group["group"] == "soft_hhh" and group["task"] == bm.HHH_TASKS
    group_ab = yaml.safe_load((task_dir / "soft_hhh_ab.yaml").read_text())
    assert group_ab["group"] == "soft_hhh_ab" and group_ab["task"] == bm.HHH_AB_TASKS
    assert {m["metric"] for m in group["aggregate_metric_list"]} == {"acc", "acc_norm"}
    assert all(m["weight_by_size"] for m in group["aggregate_metric_list"])


def test_yaml_prompts_round_trip(task_dir):
    hhh = _lm_eval_load(task_dir / "soft_hhh_other.yaml")
    assert hhh["doc_to_text"] == "Human: {{question}}\n\nAssistant:"
    tqa = _lm_eval_load(task_dir / f"{bm.BIGBENCH_TRUTHFULQA_TASK}.yaml")
    assert tqa["doc_to_text"] == PRIMER + "\nQ: {{question}}\nA:"
    assert tqa["target_delimiter"] == " "
    # the layout view's tasks: the record's question is the whole user turn, no primer
    for task in (*bm.HHH_AB_TASKS, bm.TRUTHFULQA_TASK, bm.TRUTHFULQA_MC2_TASK):
        assert _lm_eval_load(task_dir / f"{task}.yaml")["doc_to_text"] == "{{question}}"


def test_primer_with_jinja_syntax_is_escaped(tmp_path):
    tasks = {bm.BIGBENCH_TRUTHFULQA_TASK: _records(2, name=bm.BIGBENCH_TRUTHFULQA_TASK)}
    bm.write_lm_eval_tasks(tmp_path, tasks, {bm.BIGBENCH_TRUTHFULQA_TASK: "Q: {{x}}?\nA: y\n"})
    text = _lm_eval_load(tmp_path / f"{bm.BIGBENCH_TRUTHFULQA_TASK}.yaml")["doc_to_text"]
    from lm_eval.utils import apply_template

    assert apply_template(text, {"question": "Why?"}) == "Q: {{x}}?\nA: y\n\nQ: Why?\nA:"


def test_write_rejects_unknown_task_and_missing_primer(tmp_path):
    with pytest.raises(SoftError, match="unknown benchmark task"):
        bm.write_lm_eval_tasks(tmp_path, {"nope": _records(2)})
    with pytest.raises(SoftError, match="primer"):
        bm.write_lm_eval_tasks(tmp_path, {bm.BIGBENCH_TRUTHFULQA_TASK: _records(2)})


def test_lm_eval_dataset_resolves_relative_to_yaml(task_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # any cwd
    ds = bm.lm_eval_dataset(data_file="soft_hhh_helpful.jsonl",
                            config_source=str(task_dir / "soft_hhh_helpful.yaml"), version=1.0)
    test = ds["test"]
    assert len(test) == 5 and test[0]["id"] == "soft_hhh_helpful-0000"
    with pytest.raises(SoftError, match="missing.jsonl"):
        bm.lm_eval_dataset(data_file="missing.jsonl", config_source=str(task_dir / "x.yaml"))


def test_lm_eval_task_manager_finds_tasks(task_dir):
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(task_dir), include_defaults=False)
    assert set(bm.ALL_TASKS) | set(bm.GROUPS) <= set(tm.all_tasks)


# ----------------------------------------------------------------- prepare_benchmarks


def test_prepare_benchmarks_from_local_sdist(tmp_path):
    files = {}
    for name, member in bm.MEMBERS.items():
        task = _task(n=3, k=4 if name == bm.BIGBENCH_TRUTHFULQA_TASK else 2)
        if name == bm.BIGBENCH_TRUTHFULQA_TASK:
            task["task_prefix"] = PRIMER
        if name in (bm.TRUTHFULQA_TASK, bm.TRUTHFULQA_MC2_TASK):
            task = _questions()
        files[f"bigbench-1.0.0/{member}"] = json.dumps(task).encode()
    sdist = _make_tar(tmp_path / "bigbench-1.0.0.tar.gz", files)
    digest = sha256_file(sdist)
    out = tmp_path / "bench"
    manifest = bm.prepare_benchmarks("bigbench==1.0.0", digest, out, tmp_path / "work", seed=7, sdist=sdist)
    assert manifest["seed"] == 7 and manifest["sdist"]["sha256"] == digest
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert all(v["records"] == (6 if name in bm.HHH_AB_TASKS else 3) for name, v in manifest["tasks"].items())
    assert str(tmp_path) not in (out / "manifest.json").read_text()
    assert len(bm.read_task_jsonl(out / "soft_truthfulqa_mc1.jsonl")) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bench.")]  # no temp left
    with pytest.raises(SoftError, match="sha256 mismatch"):
        bm.prepare_benchmarks("bigbench==1.0.0", "f" * 64, tmp_path / "b2", tmp_path, seed=0, sdist=sdist)
    assert not (tmp_path / "b2").exists()


# ----------------------------------------------------------------- normalise_results


RAW = {
    "results": {
        "soft_hhh_harmless": {"alias": "soft_hhh_harmless", "acc,none": 0.5, "acc_stderr,none": 0.1,
                              "acc_norm,none": 0.75, "acc_norm_stderr,none": 0.09, "sample_len": 4},
        "soft_hhh_helpful": {"alias": "soft_hhh_helpful", "acc,none": 0.25, "acc_stderr,none": 0.2,
                             "acc_norm,none": 0.5, "acc_norm_stderr,none": "N/A"},
        "soft_hhh": {"alias": "soft_hhh", "acc,none": 0.375, "acc_stderr,none": 0.11,
                     "acc_norm,none": 0.625, "acc_norm_stderr,none": 0.12,
                     "sample_count": {"acc,none": 8}},
        "soft_truthfulqa_mc1": {"acc,none": 0.2, "acc_stderr,none": 0.04, "acc_norm,none": 0.3,
                                "acc_norm_stderr,none": 0.05, "f1,none": 0.9},
    },
    "group_subtasks": {"soft_hhh": ["soft_hhh_helpful", "soft_hhh_harmless"], "soft_truthfulqa_mc1": []},
    "n-samples": {"soft_hhh_harmless": {"original": 58, "effective": 4},
                  "soft_hhh_helpful": {"original": 59, "effective": 4},
                  "soft_truthfulqa_mc1": {"original": 299, "effective": 100}},
    "versions": {"soft_hhh": "1.0", "soft_hhh_harmless": 1.0, "soft_hhh_helpful": 1.0, "soft_truthfulqa_mc1": 1.0},
    "config": {"model_args": {"pretrained": "/abs/path/model"}},
    "date": 1700000000.0,
}


def test_hhh_ab_shows_each_item_in_both_orders():
    recs = _records(3)
    ab = bm.hhh_ab_records(recs, "soft_hhh_ab_harmless")
    assert [r["id"] for r in ab[:2]] == ["soft_hhh_ab_harmless-0000-ab", "soft_hhh_ab_harmless-0000-ba"]
    for i, rec in enumerate(recs):
        first, second = ab[2 * i], ab[2 * i + 1]
        assert first["choices"] == second["choices"] == ["A", "B"]
        assert rec["question"] in first["question"] and first["question"] != second["question"]
        # the preferred answer sits after its letter in both orders
        for doc in (first, second):
            letter = doc["choices"][doc["label"]]
            assert f"{letter}) {rec['choices'][rec['label']]}\n" in doc["question"] + "\n"
        assert {first["label"], second["label"]} == {0, 1}
        assert bm._check_record(first) is None


def test_truthfulqa_mc1_is_the_best_answer_among_the_false_ones():
    recs = bm.convert_truthfulqa_mc1(_questions(4), "t", seed=0)
    assert recs == bm.convert_truthfulqa_mc1(_questions(4), "t", seed=0)
    for i, r in enumerate(recs):
        assert sorted(r["choices"]) == sorted([f"true {i}", f"no {i}", f"false {i}", f"never {i}"])
        assert r["choices"][r["label"]] == f"true {i}"
    assert len({r["label"] for r in bm.convert_truthfulqa_mc1(_questions(12), "t", seed=0)}) > 1  # shuffled
    with pytest.raises(SoftError, match="example 0: 'Best answer'"):
        bm.convert_truthfulqa_mc1({"examples": [{"Question": "q", "False answers": ["b"]}]}, "t", seed=0)


def test_mc2_records_keep_true_answers_first():
    recs = bm.convert_mc2(_questions(2), "m")
    assert recs[1] == {"id": "m-0001", "question": "q1?", "choices": ["yes 1", "true 1", "no 1", "false 1", "never 1"],
                       "label": 0, "n_true": 2}
    assert bm._check_record(recs[0]) is None
    assert "n_true" in bm._check_record({**recs[0], "n_true": 5})


@pytest.mark.parametrize("bad,match", [
    ({"examples": []}, "'examples' is empty"),
    ({"examples": [{"Question": "", "True answers": ["a"], "False answers": ["b"]}]}, "'Question'"),
    ({"examples": [{"Question": "q", "True answers": [], "False answers": ["b"]}]}, "'True answers'"),
    ({"examples": [{"Question": "q", "True answers": ["a"], "False answers": "b"}]}, "'False answers'"),
])
def test_mc2_conversion_errors_name_the_example(bad, match):
    with pytest.raises(SoftError, match=match):
        bm.convert_mc2(bad, "m")


def test_mc2_score_is_normalised_true_mass():
    import math

    doc = {"n_true": 2}
    lls = [math.log(0.2), math.log(0.1), math.log(0.3), math.log(0.4)]
    assert bm.process_results_mc2(doc, [(ll, False) for ll in lls])["acc"] == pytest.approx(0.3)
    # very negative log-likelihoods (long answers) must not underflow to 0/0
    far = bm.process_results_mc2(doc, [(-2000.0, False), (-2001.0, False), (-2000.0, False)])["acc"]
    assert far == pytest.approx((1 + math.exp(-1)) / (2 + math.exp(-1)))


def test_normalise_results():
    norm = normalise_results(RAW, limit=4, batch_size=8, lm_eval_version="0.4.13")
    assert set(norm) == {"tasks", "n_samples", "groups", "task_versions", "lm_eval_version", "limit", "batch_size"}
    assert norm["tasks"]["soft_hhh"] == {"acc": {"value": 0.375, "stderr": 0.11},
                                         "acc_norm": {"value": 0.625, "stderr": 0.12}}
    assert norm["tasks"]["soft_hhh_helpful"]["acc_norm"] == {"value": 0.5, "stderr": None}
    assert set(norm["tasks"]["soft_truthfulqa_mc1"]) == {"acc", "acc_norm"}  # f1 dropped
    assert norm["n_samples"] == {"soft_hhh_harmless": 4, "soft_hhh_helpful": 4,
                                 "soft_truthfulqa_mc1": 100, "soft_hhh": 8}
    assert norm["groups"] == {"soft_hhh": ["soft_hhh_harmless", "soft_hhh_helpful"]}
    assert norm["task_versions"]["soft_hhh"] == norm["task_versions"]["soft_hhh_harmless"] == "1.0"
    assert (norm["limit"], norm["batch_size"], norm["lm_eval_version"]) == (4, 8, "0.4.13")
    text = json.dumps(norm)
    assert "/abs/path" not in text and "1700000000" not in text


def test_normalise_results_rejects_garbage():
    with pytest.raises(SoftError, match="results"):
        normalise_results({"nope": 1})


def test_a_builtin_task_name_reaches_lm_evals_own_tasks(task_dir):
    """Local names are found without indexing lm-eval's built-ins; any other name is
    looked up there (a user with a hub evaluates it unchanged); an unknown name fails."""
    from soft.evaluate.harness import task_manager

    assert "hellaswag" not in task_manager(task_dir, ["soft_hhh"]).all_tasks
    assert {"hellaswag", "soft_hhh"} <= set(task_manager(task_dir, ["soft_hhh", "hellaswag"]).all_tasks)


def test_a_task_folder_built_for_another_module_is_rebuilt(tmp_path, run_snakemake):
    """The task YAMLs call `!function <module>.lm_eval_dataset`; fetch_benchmarks passes that
    module as a param, so a folder built when the functions were soft.benchmarks (whose
    recorded params lack it) is planned again instead of failing inside lm-eval."""
    import base64

    from tiny import tiny_config

    cfg = tiny_config(tmp_path)
    run_snakemake(tmp_path, cfg, "resources/benchmarks")
    assert "soft.resources.eval_tasks.lm_eval_dataset" in (tmp_path / "resources/benchmarks/soft_hhh_ab_helpful.yaml").read_text()
    assert "Nothing to be done" in run_snakemake(tmp_path, cfg, "resources/benchmarks", "-n").stdout
    meta = tmp_path / ".snakemake/metadata" / base64.b64encode(b"resources/benchmarks").decode()
    record = json.loads(meta.read_text())
    record["params"] = [p for p in record["params"] if p != repr(bm.TASK_FUNCTIONS_MODULE)]  # an old build's
    meta.write_text(json.dumps(record))
    planned = run_snakemake(tmp_path, cfg, "resources/benchmarks", "-n").stdout
    assert "rule fetch_benchmarks:" in planned and "Params have changed" in planned
