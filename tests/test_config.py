"""Unit tests for soft.config: schema validation, defaults, experiment resolution, checks."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from soft.config import (
    extend_config,
    BASE_MODEL_EXP,
    check_moved_keys,
    deep_merge,
    evaluation_settings,
    load_schema,
    resolve_experiments,
    round_sizes,
    rule_resources,
    validate_schema,
)
from soft.errors import SoftError
from soft.preflight import check_evaluation, check_pool_sizes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def schema() -> dict:
    return load_schema()


@pytest.fixture
def cfg() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))


def _schema_error(cfg: dict, schema: dict) -> str:
    with pytest.raises(SoftError) as info:
        validate_schema(cfg, schema)
    return str(info.value)


# ---------------------------------------------------------------- the repo's config


def test_repo_config_validates(cfg, schema):
    validate_schema(cfg, schema)  # raises on any problem
    validate_schema(cfg)  # default schema path is the same file


def test_repo_config_resolves_the_default_grid(cfg, schema):
    exps = resolve_experiments(cfg, schema)
    assert list(exps) == ["single_round", "soft", "soft_plus"]
    assert exps["single_round"]["rounds"] == 1
    assert exps["soft"]["rounds"] == 3 and exps["soft"]["curriculum"]["order"] == "none"
    # SOFT+ differs from SOFT only by its easy-to-hard order
    plus = {**exps["soft_plus"], "curriculum": exps["soft"]["curriculum"]}
    assert plus == exps["soft"] and exps["soft_plus"]["curriculum"]["order"] == "easy_to_hard"
    for exp in exps.values():
        assert exp["prompt_budget"] == 48
        assert exp["icl"] == {"mode": "random", "shots": 2, "pool_size": None}
        assert exp["generation"] == {
            "model": "previous", "backend": "auto", "dtype": "auto", "max_new_tokens": 128, "temperature": 0.7,
            "top_p": 0.95, "batch_size": 16, "max_prompt_tokens": 1536, "precision": "fp32",
        }
        assert exp["filter"] == {
            "require_self_id": True, "require_answer_marker": True, "min_chars": 40,
            "max_prompt_overlap": 0.8, "leak_ngram": 6, "drop_refusals": False,
        }
        assert exp["train"]["init"] == "previous"
        assert exp["train"]["lora"] == {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
        assert exp["train"]["learning_rate"] == pytest.approx(2.0e-4)
        assert exp["train"]["max_length"] == 512
        assert exp["train"]["precision"] == "fp32"


def load_ablation(name: str, schema, monkeypatch) -> dict:
    """An ablation config as the Snakefile sees it: extended onto config/config.yaml."""
    from soft.config import extend_config

    monkeypatch.chdir(REPO)  # `extends` is relative to the workflow's directory
    raw = yaml.safe_load((REPO / "config" / "experiments" / name).read_text(encoding="utf-8"))
    full = extend_config(raw)
    validate_schema(full, schema)
    return full


def test_icl_diversity_config(cfg, schema, monkeypatch):
    """Three ICL modes at equal prompt budget, the rest as the default grid."""
    from soft.principles import load_exemplars
    from soft.records import read_prompts

    icl_cfg = load_ablation("icl_diversity.yaml", schema, monkeypatch)
    for key in ("seed", "base_model", "benchmarks", "prompts", "principles", "exemplars", "defaults", "resources"):
        assert icl_cfg[key] == cfg[key], key
    # the judge's reference is this grid's random-mode chain (there is no single_round here)
    assert icl_cfg["evaluation"] == {**cfg["evaluation"], "judge": {**cfg["evaluation"]["judge"], "reference": "soft"}}
    assert icl_cfg["run_name"] == "icl_diversity"
    exps = resolve_experiments(icl_cfg, schema)
    assert {name: e["icl"]["mode"] for name, e in exps.items()} == {
        "icl_fixed": "fixed", "soft": "random", "icl_growing": "growing"}
    assert {(e["prompt_budget"], e["rounds"], e["icl"]["shots"]) for e in exps.values()} == {(48, 3, 2)}
    # its random-mode chain is the default grid's soft experiment, so results are shared
    assert exps["soft"] == resolve_experiments(cfg, schema)["soft"]
    check_pool_sizes(exps, len(read_prompts(REPO / icl_cfg["prompts"])),
                     len(load_exemplars(REPO / icl_cfg["exemplars"])), "p", "e")


def test_training_order_config(cfg, schema, monkeypatch):
    order_cfg = load_ablation("training_order.yaml", schema, monkeypatch)
    exps = resolve_experiments(order_cfg, schema)
    assert {n: e["curriculum"]["order"] for n, e in exps.items()} == {
        "soft": "none", "soft_plus": "easy_to_hard", "soft_hard_to_easy": "hard_to_easy"}
    assert {(e["prompt_budget"], e["rounds"]) for e in exps.values()} == {(48, 3)}
    main = resolve_experiments(cfg, schema)
    assert exps["soft"] == main["soft"] and exps["soft_plus"] == main["soft_plus"]


def test_bootstrap_control_config(cfg, schema, monkeypatch):
    """Two chains that differ only in the model answering each round's prompts."""
    control = load_ablation("bootstrap_control.yaml", schema, monkeypatch)
    assert control["run_name"] == "bootstrap_control"
    exps = resolve_experiments(control, schema)
    assert {n: e["generation"]["model"] for n, e in exps.items()} == {"soft": "previous", "soft_base_generator": "base"}
    assert exps["soft"] == resolve_experiments(cfg, schema)["soft"]  # the main grid's chain, reused
    other = {**exps["soft_base_generator"], "generation": {**exps["soft_base_generator"]["generation"], "model": "previous"}}
    assert other == exps["soft"]
    assert "config/experiments/bootstrap_control.yaml" in cfg["paper"]["include"]
    # run on its own it compares the two chains (the default pairs name experiments it lacks)
    assert control["comparisons"] == [{"experiment": "soft_base_generator", "reference": "soft"}]


def test_included_config_may_set_comparisons_but_not_settings(cfg, schema, tmp_path, monkeypatch):
    from soft.config import included_experiments, paper_settings

    monkeypatch.chdir(tmp_path)
    ablation = {"experiments": {"soft_x": {"rounds": 2}}, "comparisons": [{"experiment": "soft_x", "reference": "soft"}]}
    Path("ablation.yaml").write_text(yaml.safe_dump(ablation))
    config = {**cfg, "paper": {"include": ["ablation.yaml"]}}
    merged, panels = included_experiments(config, paper_settings(config, schema), schema)
    assert "soft_x" in merged and panels[0]["experiments"] == ["soft_x"]
    Path("ablation.yaml").write_text(yaml.safe_dump({**ablation, "defaults": {"rounds": 2}}))
    with pytest.raises(SoftError, match=r"paper.include\[0\].*also changes defaults; only configs that differ"):
        included_experiments(config, paper_settings(config, schema), schema)


def test_extends_merges_sections_and_replaces_experiments(tmp_path, monkeypatch):
    from soft.config import extend_config, output_dirs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "seed": 1, "defaults": {"rounds": 2, "train": {"epochs": 3, "init": "base"}},
        "experiments": {"a": {}, "b": {}}}))
    out = extend_config({"extends": "base.yaml", "defaults": {"train": {"epochs": 1}},
                         "experiments": {"c": {"rounds": 4}}})
    assert out == {"seed": 1, "defaults": {"rounds": 2, "train": {"epochs": 1, "init": "base"}},
                   "experiments": {"c": {"rounds": 4}}}
    assert extend_config({"extends": "base.yaml"})["experiments"] == {"a": {}, "b": {}}
    # a base that extends another file is resolved first (paper_rehearsal -> paper -> config)
    (tmp_path / "mid.yaml").write_text(yaml.safe_dump({"extends": "base.yaml", "seed": 2,
                                                       "defaults": {"train": {"init": "previous"}}}))
    chained = extend_config({"extends": "mid.yaml", "defaults": {"rounds": 5}})
    assert chained == {"seed": 2, "defaults": {"rounds": 5, "train": {"epochs": 3, "init": "previous"}},
                       "experiments": {"a": {}, "b": {}}}
    assert output_dirs({}) == ("results/tables", "results/figures")
    assert output_dirs({"run_name": "x"}) == ("results/tables/x", "results/figures/x")


@pytest.mark.parametrize("content,match", [
    (None, "config key 'extends': missing.yaml not found"),
    ("extends: base.yaml\n", "config key 'extends': base.yaml extends itself through"),
    ("- a list\n", "expected a mapping"),
    ("a: [unclosed\n", "not valid YAML"),
])
def test_extends_errors_name_the_file(tmp_path, monkeypatch, content, match):
    from soft.config import extend_config

    monkeypatch.chdir(tmp_path)
    name = "missing.yaml"
    if content is not None:
        name = "base.yaml"
        (tmp_path / name).write_text(content)
    with pytest.raises(SoftError, match=match):
        extend_config({"extends": name, "experiments": {"a": {}}})


def test_schema_defaults_fill_a_minimal_config(cfg, schema):
    """Keys absent from `defaults` come from the schema's defaults."""
    minimal = copy.deepcopy(cfg)
    minimal["defaults"] = {}
    minimal["experiments"] = {"a": {"rounds": 2, "train": {"lora": {"r": 4}}}, "b": {}}
    validate_schema(minimal, schema)
    exps = resolve_experiments(minimal, schema)
    a, b = exps["a"], exps["b"]
    assert a["rounds"] == 2 and b["rounds"] == 1
    assert a["prompt_budget"] == b["prompt_budget"] == 48
    assert a["generation"]["top_p"] == 0.95
    assert a["generation"]["backend"] == "auto"
    assert a["icl"] == {"mode": "random", "shots": 2}  # pool_size: null -> absent, read as None
    assert a["filter"]["drop_refusals"] is False
    assert a["train"]["lora"] == {"r": 4, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    assert b["train"]["lora"]["r"] == 16
    assert a["train"]["epochs"] == 2 and a["train"]["lr_scheduler"] == "cosine"


def test_experiment_override_beats_defaults(cfg, schema):
    cfg["defaults"]["icl"]["shots"] = 3
    cfg["experiments"]["soft"]["generation"] = {"temperature": 0.0}
    cfg["experiments"]["soft"]["train"] = {"init": "base"}
    cfg["experiments"]["soft"]["icl"] = {"mode": "growing"}
    exps = resolve_experiments(cfg, schema)
    assert exps["soft"]["icl"] == {"mode": "growing", "shots": 3, "pool_size": None}  # shots from defaults
    assert exps["single_round"]["icl"]["mode"] == "random"
    assert exps["soft"]["generation"]["temperature"] == 0.0  # override
    assert exps["soft"]["generation"]["top_p"] == 0.95  # schema default kept
    assert exps["soft"]["train"]["init"] == "base"
    assert exps["single_round"]["generation"]["temperature"] == 0.7
    assert exps["single_round"]["train"]["init"] == "previous"


def test_resolve_does_not_mutate_config(cfg, schema):
    before = copy.deepcopy(cfg)
    exps = resolve_experiments(cfg, schema)
    exps["soft"]["train"]["lora"]["r"] = 999
    assert cfg == before
    assert resolve_experiments(cfg, schema)["soft"]["train"]["lora"]["r"] == 16


# ---------------------------------------------------------------- deep_merge


def test_deep_merge_semantics():
    base = {"a": 1, "b": {"c": 2, "d": {"e": 3, "f": 4}}, "g": [1, 2], "h": {"x": 1}}
    over = {"b": {"d": {"f": 40}, "new": 5}, "g": [9], "h": 7, "i": {"j": 1}}
    out = deep_merge(base, over)
    assert out == {"a": 1, "b": {"c": 2, "d": {"e": 3, "f": 40}, "new": 5}, "g": [9], "h": 7, "i": {"j": 1}}
    # inputs untouched, output shares no mutable state with them
    assert base == {"a": 1, "b": {"c": 2, "d": {"e": 3, "f": 4}}, "g": [1, 2], "h": {"x": 1}}
    out["b"]["d"]["e"] = 0
    out["i"]["j"] = 0
    assert base["b"]["d"]["e"] == 3 and over["i"]["j"] == 1


def test_deep_merge_none_override_and_dict_replaces_scalar():
    assert deep_merge({"a": 1}, None) == {"a": 1}
    assert deep_merge({"a": 1}, {}) == {"a": 1}
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 1}}, {"a": None}) == {"a": None}


# ---------------------------------------------------------------- schema errors


def test_unknown_top_level_key(cfg, schema):
    cfg["sed"] = 1
    assert _schema_error(cfg, schema) == (
        "config key 'sed': unknown key (did you mean 'seed'?); expected one of "
        + ", ".join(schema["properties"]) + ", got 1")


def test_unknown_nested_key(cfg, schema):
    cfg["defaults"]["train"]["lr"] = 1e-4
    msg = _schema_error(cfg, schema)
    assert msg.startswith("config key 'defaults.train.lr': unknown key; expected one of init, data, method, ")
    assert msg.endswith(", got 0.0001") and "learning_rate" in msg


def test_unknown_key_in_experiment_override(cfg, schema):
    cfg["experiments"]["soft"]["train"] = {"lora": {"rank": 8}}
    msg = _schema_error(cfg, schema)
    assert msg.startswith("config key 'experiments.soft.train.lora.rank': unknown key; expected one of r, ")
    assert msg.endswith(", got 8")


@pytest.mark.parametrize(
    "path, value, expect",
    [
        (("experiments", "soft", "rounds"), "3", "expected an integer >= 1, got '3'"),
        (("defaults", "icl", "shots"), True, "expected an integer >= 0, got true"),
        (("defaults", "icl", "mode"), "grow", "expected one of 'fixed', 'random', 'growing', got 'grow'"),
        (("defaults", "icl", "pool_size"), 0, "expected an integer >= 1 or null, got 0"),
        (("defaults", "icl", "pool_size"), "all", "expected an integer >= 1 or null, got 'all'"),
        (("defaults", "generation", "backend"), "tgi", "expected one of 'auto', 'hf', 'vllm', got 'tgi'"),
        (("defaults", "filter", "drop_refusals"), "no", "expected true or false, got 'no'"),
        (("defaults", "generation", "top_p"), "high", "expected a number > 0 and <= 1, got 'high'"),
        (("defaults", "filter", "require_self_id"), "yes", "expected true or false, got 'yes'"),
        (("experiments", "soft", "rounds"), 0, "expected an integer >= 1, got 0"),
        (("defaults", "prompt_budget"), -5, "expected an integer >= 1, got -5"),
        (("defaults", "generation", "batch_size"), 0, "expected an integer >= 1, got 0"),
        (("defaults", "train", "lora", "r"), 0, "expected an integer >= 1, got 0"),
        (("resources", "train_model", "threads"), 0, "expected an integer >= 1, got 0"),
        (("resources", "train_model", "gpu"), -1, "expected an integer >= 0, got -1"),
        (("defaults", "icl", "shots"), -1, "expected an integer >= 0, got -1"),
        (("defaults", "train", "init"), "scratch", "expected one of 'previous', 'base', got 'scratch'"),
        (("seed",), -1, "expected an integer >= 0, got -1"),
        (("defaults", "train", "epochs"), {"n": "x" * 100}, 'expected a number > 0, got {"n": "' + "x" * 50 + "..."),
    ],
)
def test_bad_values_name_key_path(cfg, schema, path, value, expect):
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    assert _schema_error(cfg, schema) == f"config key '{'.'.join(path)}': {expect}"


def test_experiment_named_base_model_rejected(cfg, schema):
    assert BASE_MODEL_EXP == "base_model"
    cfg["experiments"]["base_model"] = {"rounds": 1}
    assert _schema_error(cfg, schema) == (
        "config key 'experiments.base_model': expected a name other than base_model, prompt_pool, tables, "
        "figures, paper, bench (reserved), got 'base_model'")


@pytest.mark.parametrize("name", ["a/b", "../up", "1st", "has space"])
def test_bad_experiment_names_rejected(cfg, schema, name):
    cfg["experiments"][name] = {"rounds": 1}
    assert _schema_error(cfg, schema) == (
        f"config key 'experiments.{name}': expected a name matching ^[A-Za-z][A-Za-z0-9_-]*$, got {name!r}")


def test_no_experiments_rejected(cfg, schema):
    cfg["experiments"] = {}
    assert _schema_error(cfg, schema) == "config key 'experiments': expected a mapping with at least 1 entry, got {}"


def test_missing_required_top_level_key(cfg, schema):
    del cfg["prompts"]
    assert _schema_error(cfg, schema) == "config key 'prompts': expected a string or a mapping (required), got nothing"


def test_source_oneof_error_names_the_offending_key(cfg, schema):
    cfg["base_model"]["source"]["sha256"] = "xyz"
    assert _schema_error(cfg, schema) == (
        "config key 'base_model.source.sha256': expected a string matching ^[0-9a-f]{64}$, got 'xyz'")


def test_source_oneof_missing_key_of_matching_kind(cfg, schema):
    cfg["base_model"]["source"] = {"kind": "local"}
    assert _schema_error(cfg, schema) == "config key 'base_model.source.path': expected a string (required), got nothing"


def test_source_oneof_unknown_kind_lists_the_kinds(cfg, schema):
    cfg["base_model"]["source"] = {"kind": "ftp"}
    assert _schema_error(cfg, schema) == (
        "config key 'base_model.source.kind': expected one of 'pypi_gguf', 'hub', 'local', got 'ftp'")


@pytest.mark.parametrize("value", [1, [1, 2], ["b" * 10_000], "line\nbreak"])
def test_a_schema_message_is_one_short_line(cfg, schema, value):
    """Whatever the value, the message is one line: never the config or the schema."""
    cfg["defaults"]["train"] = value
    msg = _schema_error(cfg, schema)
    assert "\n" not in msg and len(msg) < 200 and msg.startswith("config key 'defaults.train': expected a mapping, got ")


def test_local_source_accepted(cfg, schema):
    cfg["base_model"]["source"] = {"kind": "local", "path": "/some/model"}
    validate_schema(cfg, schema)


# ---------------------------------------------------------------- cross-field checks


def test_rounds_above_budget_rejected(cfg, schema):
    cfg["experiments"]["soft"] = {"rounds": 5, "prompt_budget": 4}
    with pytest.raises(SoftError) as info:
        resolve_experiments(cfg, schema)
    msg = str(info.value)
    assert "config key 'experiments.soft.rounds'" in msg
    assert "5 rounds" in msg and "prompt_budget is 4" in msg


def test_rounds_equal_budget_accepted(cfg, schema):
    cfg["experiments"]["soft"] = {"rounds": 4, "prompt_budget": 4}
    assert resolve_experiments(cfg, schema)["soft"]["rounds"] == 4


def test_check_pool_sizes_prompt_budget(cfg, schema):
    exps = resolve_experiments(cfg, schema)
    check_pool_sizes(exps, 48, 2, "p.jsonl", "e.jsonl")  # exactly enough: fine
    with pytest.raises(SoftError) as info:
        check_pool_sizes(exps, 47, 24, "data/prompts.jsonl", "data/ex.jsonl")
    msg = str(info.value)
    assert "experiments.single_round.prompt_budget" in msg
    assert "48 prompts asked" in msg
    assert "data/prompts.jsonl holds only 47" in msg


def test_check_pool_sizes_shots(cfg, schema):
    cfg["experiments"]["soft"]["icl"] = {"shots": 5}
    exps = resolve_experiments(cfg, schema)
    with pytest.raises(SoftError) as info:
        check_pool_sizes(exps, 225, 4, "data/prompts.jsonl", "data/ex.jsonl")
    msg = str(info.value)
    assert "experiments.soft.icl.shots" in msg
    assert "5 exemplars per prompt" in msg
    assert "data/ex.jsonl holds only 4" in msg


def test_check_pool_sizes_pool_size_above_file(cfg, schema):
    cfg["experiments"]["soft"]["icl"] = {"pool_size": 30}
    exps = resolve_experiments(cfg, schema)
    with pytest.raises(SoftError) as info:
        check_pool_sizes(exps, 225, 24, "data/prompts.jsonl", "data/ex.jsonl")
    msg = str(info.value)
    assert "config key 'experiments.soft.icl.pool_size'" in msg
    assert "a pool of 30 exemplars asked but data/ex.jsonl holds only 24" in msg


@pytest.mark.parametrize("mode", ["fixed", "random", "growing"])
def test_check_pool_sizes_shots_above_pool_size(cfg, schema, mode):
    # growing too: round 1 draws from the base pool alone
    cfg["experiments"]["soft"]["icl"] = {"mode": mode, "shots": 4, "pool_size": 3}
    exps = resolve_experiments(cfg, schema)
    with pytest.raises(SoftError) as info:
        check_pool_sizes(exps, 225, 24, "data/prompts.jsonl", "data/ex.jsonl")
    msg = str(info.value)
    assert "config key 'experiments.soft.icl.shots'" in msg
    assert "4 exemplars per prompt but icl.pool_size is 3" in msg


def test_check_pool_sizes_boundaries_accepted(cfg, schema):
    cfg["experiments"]["soft"]["icl"] = {"mode": "fixed", "shots": 3, "pool_size": 3}
    cfg["experiments"]["single_round"]["icl"] = {"shots": 24, "pool_size": 24}
    check_pool_sizes(resolve_experiments(cfg, schema), 225, 24, "p.jsonl", "e.jsonl")
    cfg["experiments"]["soft"]["icl"] = {"shots": 0, "pool_size": 1}
    check_pool_sizes(resolve_experiments(cfg, schema), 225, 24, "p.jsonl", "e.jsonl")


@pytest.mark.parametrize("section", [("defaults",), ("experiments", "soft")])
def test_moved_generation_shots_names_new_key(cfg, schema, section):
    node = cfg
    for key in section:
        node = node[key]
    node.setdefault("generation", {})["shots"] = 2
    prefix = ".".join(section)
    for check in (check_moved_keys, lambda c: validate_schema(c, schema)):
        with pytest.raises(SoftError) as info:
            check(cfg)
        assert str(info.value) == (f"config key '{prefix}.generation.shots' has moved: "
                                   f"set '{prefix}.icl.shots' instead")


def test_moved_keys_absent_is_fine(cfg):
    check_moved_keys(cfg)
    check_moved_keys({"defaults": None, "experiments": {"a": None}})


# ---------------------------------------------------------------- round sizes, resources, evaluation


@pytest.mark.parametrize(
    "budget, rounds, expect",
    [
        (10, 3, [4, 3, 3]),
        (48, 3, [16, 16, 16]),
        (48, 1, [48]),
        (11, 4, [3, 3, 3, 2]),
        (5, 5, [1, 1, 1, 1, 1]),
        (7, 2, [4, 3]),
    ],
)
def test_round_sizes(budget, rounds, expect):
    assert round_sizes(budget, rounds) == expect


@pytest.mark.parametrize("budget", range(1, 40))
def test_round_sizes_sum_and_near_equal(budget):
    for rounds in range(1, budget + 1):
        sizes = round_sizes(budget, rounds)
        assert len(sizes) == rounds
        assert sum(sizes) == budget
        assert max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)


def test_rule_resources(cfg, schema):
    assert rule_resources(cfg, "train_model", schema) == {"threads": 2, "mem_mb": 6000, "gpu": 0}
    assert rule_resources({}, "train_model", schema) == {"threads": 2, "mem_mb": 4000, "gpu": 0}
    assert rule_resources({"resources": None}, "generate_responses", schema) == {
        "threads": 2, "mem_mb": 4000, "gpu": 0}
    assert rule_resources({"resources": {"evaluate_model": {"gpu": 2}}}, "evaluate_model", schema) == {
        "threads": 2, "mem_mb": 4000, "gpu": 2}
    # a rule absent from the section gets the defaults
    assert rule_resources({"resources": {"evaluate_model": {"gpu": 2}}}, "train_model", schema)["gpu"] == 0


def test_evaluation_settings(cfg, schema):
    # defaults: no probe prompts, no judge (both only when configured)
    probe = {"max_new_tokens": 96, "temperature": 0.7, "top_p": 0.95, "batch_size": 8}
    judge = {"kind": "none", "batch_size": 4}
    views = {"tasks": ["soft_hhh_ab", "soft_truthfulqa_mc1", "soft_truthfulqa_mc2"],
             "raw_tasks": ["soft_hhh", "soft_bigbench_truthfulqa_mc1"]}
    assert evaluation_settings({}, schema) == {**views, "batch_size": 4, "precision": "fp32", "probe": probe,
                                               "judge": judge}
    # the repository's default: the layout view only, no judge (README "Evaluation")
    assert evaluation_settings(cfg, schema) == {
        **views, "raw_tasks": [], "batch_size": 4, "limit": 26, "precision": "fp32",
        "probe": {**probe, "prompts": "config/probe_prompts.jsonl", "max_prompts": 16}, "judge": judge}
    assert evaluation_settings({"evaluation": {"tasks": ["soft_hhh"]}}, schema) == {
        "tasks": ["soft_hhh"], "raw_tasks": views["raw_tasks"], "batch_size": 4, "precision": "fp32", "probe": probe,
        "judge": judge}
    # a task belongs to one view: caught when the DAG is built
    with pytest.raises(SoftError, match="'evaluation.tasks' and 'evaluation.raw_tasks' both name soft_hhh"):
        check_evaluation(evaluation_settings({"evaluation": {"tasks": ["soft_hhh"]}}, schema), {})


def test_extends_switching_a_variant_replaces_the_section(tmp_path, monkeypatch):
    """An extending config that changes base_model.source.kind (or the prompts source)
    gets that section as written, not merged with the base's other variant's keys; other
    sections still merge."""
    import yaml

    from soft.config import extend_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "base_model": {"name": "m", "source": {"kind": "pypi_gguf", "wheel": "w", "sha256": "0" * 64,
                                               "gguf_member": "g"}},
        "evaluation": {"judge": {"kind": "local", "reference": "a"}},
        "experiments": {"a": {}}}))
    merged = extend_config({"extends": "base.yaml",
                            "base_model": {"source": {"kind": "hub", "id": "x/y"}},
                            "evaluation": {"judge": {"kind": "endpoint", "url": "http://h"}},
                            "experiments": {"b": {}}})
    assert merged["base_model"] == {"name": "m", "source": {"kind": "hub", "id": "x/y"}}
    assert merged["evaluation"]["judge"] == {"kind": "endpoint", "reference": "a", "url": "http://h"}
    same = extend_config({"extends": "base.yaml", "base_model": {"source": {"kind": "pypi_gguf", "wheel": "v"}}})
    assert same["base_model"]["source"]["sha256"] == "0" * 64 and same["base_model"]["source"]["wheel"] == "v"


def test_paper_config_scores_and_judges_everything(monkeypatch):
    """config/experiments/paper.yaml extends the CPU default, whose evaluation and probe are
    cut to fit 2 cores: the paper config must undo every such cut (the full suites, every
    probe prompt for the judge), not inherit it."""
    monkeypatch.chdir(REPO)  # extends: is relative to the checkout
    cfg = extend_config(yaml.safe_load((REPO / "config/experiments/paper.yaml").read_text()))
    assert cfg["evaluation"]["limit"] is None
    assert cfg["evaluation"]["probe"]["max_prompts"] is None
    assert cfg["evaluation"]["judge"]["kind"] == "endpoint"


JOB_SETTINGS_OF_THE_WORKFLOW = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.iocontainers import Wildcards
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
configfile, instance = sys.argv[1:]
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), storage_settings=StorageSettings(),
                      config_settings=ConfigSettings(configfiles=[Path(configfile)]),
                      snakefile=Path("Snakefile"), workdir=Path("."))
    w = Wildcards(fromdict={"exp": instance, "k": "1"})
    train = wf._workflow.get_rule("train_model").params
    generate = wf._workflow.get_rule("generate_responses").params
    g = wf._workflow.globals
    print(json.dumps({"train": train.settings(w), "seed": train.seed(w), "layout": train.layout,
                      "generation": generate.settings(w), "icl": generate.icl(w),
                      "experiment": g["EXPERIMENTS"][instance].to_dict(), "evaluation": g["EVALUATION"].to_dict()}))
"""


def test_config_show_prints_what_the_jobs_receive(monkeypatch):
    """`python -m soft.config show` against the settings the workflow hands its jobs (the
    train and generate rules' params, read from Snakemake's own parse of the Snakefile)."""
    import json
    import subprocess
    import sys

    from soft.config import load_config, main, show

    # an ablation-style config: `extends:`, sizes and sources changed, the curriculum on
    configfile, instance = "config/experiments/paper_rehearsal.yaml", "soft_plus"
    proc = subprocess.run([sys.executable, "-c", JOB_SETTINGS_OF_THE_WORKFLOW, configfile, instance], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = json.loads(proc.stdout.strip().splitlines()[-1])
    monkeypatch.chdir(REPO)
    shown = show(load_config(configfile), instance)
    exp = {k: v for k, v in shown["experiment"].items() if k != "instance"}
    assert exp == job["experiment"] and shown["evaluation"] == job["evaluation"]
    generation = {k: v for k, v in exp["generation"].items() if k != "model"}  # the job's input, not a param
    assert (exp["train"], generation, exp["icl"], exp["seed"]) == (job["train"], job["generation"], job["icl"],
                                                                   job["seed"])
    assert shown["layout"] == job["layout"]
    assert main(["show", "--configfile", configfile, "no_such"]) == 1
