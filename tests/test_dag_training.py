"""Dry-run DAG tests of the training readings: which data and which model each round uses."""

import pytest
from test_dag import BASE, dry_run, fresh_workdir, parse_jobs, repo_config_dry_run, write_config


@pytest.mark.parametrize("data_mode", ["current", "cumulative"])
def test_train_data_mode_chooses_the_rounds_trained_on(tmp_path, data_mode):
    cfg = write_config(tmp_path, {"soft": {"rounds": 3, "train": {"data": data_mode, "init": "base"}}})
    proc = dry_run(tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trains = {int(j["wildcards"]["k"]): j for j in parse_jobs(proc.stdout) if j["rule"] == "train_model"}
    assert sorted(trains) == [1, 2, 3]
    for k, job in trains.items():
        data = [f for f in job["input"] if f.startswith("results/soft/data/")]
        first = 1 if data_mode == "cumulative" else k
        assert data == [f"results/soft/data/round{j}.jsonl" for j in range(first, k + 1)]
        assert BASE in job["input"] and not any("models/round" in f for f in job["input"])


def jobs_by_rule(proc):
    out = {}
    for j in parse_jobs(proc.stdout):
        out.setdefault(j["rule"], []).append(j)
    return out


def test_across_rounds_curriculum_scores_the_pool_once_before_the_split(tmp_path):
    cfg = write_config(tmp_path, {"soft": {"rounds": 3},
                                  "soft_plus": {"rounds": 3, "curriculum": {"order": "easy_to_hard"}}})
    proc = dry_run(tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = jobs_by_rule(proc)
    scores = "results/soft_plus/curriculum/pool_scores.jsonl"
    assert [j["output"] for j in jobs["score_pool_difficulty"]] == [[scores]]
    assert BASE in jobs["score_pool_difficulty"][0]["input"]
    assert "score_round_difficulty" not in jobs
    for j in jobs["split_prompts"]:
        assert (scores in j["input"]) == (j["wildcards"]["exp"] == "soft_plus")
    for j in jobs["train_model"]:
        assert (scores in j["input"]) == (j["wildcards"]["exp"] == "soft_plus")


@pytest.mark.parametrize("scorer", ["base", "previous"])
def test_within_round_curriculum_scores_each_round_with_its_scorer(tmp_path, scorer):
    cfg = write_config(tmp_path, {"plus": {"rounds": 3, "train": {"data": "cumulative"}, "curriculum": {
        "order": "hard_to_easy", "scope": "within_round", "scorer": scorer, "target": "prompt_response"}}})
    proc = dry_run(tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = jobs_by_rule(proc)
    assert "score_pool_difficulty" not in jobs
    score_jobs = {int(j["wildcards"]["k"]): j for j in jobs["score_round_difficulty"]}
    assert sorted(score_jobs) == [1, 2, 3]
    for k, j in score_jobs.items():
        model = BASE if scorer == "base" or k == 1 else f"results/plus/models/round{k - 1}"
        assert model in j["input"] and f"results/plus/data/round{k}.jsonl" in j["input"]
    for j in jobs["train_model"]:
        k = int(j["wildcards"]["k"])
        assert [f for f in j["input"] if "/curriculum/" in f] == [
            f"results/plus/curriculum/round{i}_scores.jsonl" for i in range(1, k + 1)]


def test_impossible_curriculum_fails_at_dag_build(tmp_path):
    cfg = write_config(tmp_path, {"plus": {"rounds": 2, "curriculum": {"order": "easy_to_hard",
                                                                          "target": "prompt_response"}}})
    proc = dry_run(tmp_path, cfg)
    assert proc.returncode != 0
    assert "experiments.plus.curriculum.target" in proc.stderr + proc.stdout


def test_qlora_without_a_gpu_plans_cpu_training_when_bitsandbytes_imports(tmp_path):
    import os
    import subprocess
    import sys

    from test_dag import SNAKEFILE

    cfg = write_config(tmp_path, {"q": {"train": {"method": "qlora"}}})
    assert dry_run(tmp_path, cfg).returncode == 0  # bitsandbytes 0.50 trains 4-bit on the CPU
    # A bitsandbytes that does not import (absent, or built for another platform) is named
    # before any job starts.
    shadow = tmp_path / "shadow" / "bitsandbytes"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no bitsandbytes here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
                           str(tmp_path), "--configfile", str(cfg), "--cores", "2", "--dry-run"],
                          capture_output=True, text=True, timeout=120, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert ("experiments.q.train.method' (resources.train_model.gpu is 0, so QLoRA trains on the CPU): "
            "qlora needs the bitsandbytes package") in out, out[-2000:]


@pytest.mark.parametrize("name,experiments", [
    ("training_order", {"soft", "soft_plus", "soft_hard_to_easy"}),
    ("icl_diversity", {"icl_fixed", "soft", "icl_growing"}),
    ("self_instruct", {"soft_self_instruct"}),
])
def test_ablation_configs_build_their_own_grid_and_tables(tmp_path, name, experiments):
    """Run from a copy of the repository's config/, as a user would from the clone
    (`extends` is relative to it); nothing the checkout holds is read."""
    proc = repo_config_dry_run(fresh_workdir(tmp_path), "--configfile", f"config/experiments/{name}.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = jobs_by_rule(proc)
    assert {j["wildcards"]["exp"] for j in jobs["train_model"]} == experiments
    assert [j["output"] for j in jobs["aggregate_metrics"]] == [
        [f"results/tables/{name}/metrics.csv", f"results/tables/{name}/metrics.md",
         f"results/tables/{name}/comparisons.csv"]]
    assert jobs["plot_metrics"][0]["output"] == [f"results/figures/{name}/{fig}" for fig in (
        "metric_vs_round.png", "metric_vs_round.pdf", "collapse.png", "collapse.pdf")]


def test_early_stop_plans_the_chain_only_up_to_the_first_open_validation(tmp_path):
    """decide_next_round is a checkpoint: before round 1's decision exists, round 2 is
    not in the plan at all, and the table and the stop record wait (their rounds are not
    known yet); other experiments' chains are planned in full meanwhile."""
    import json

    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps({"id": "v1", "prompt": "p?", "chosen": "good", "rejected": "bad"}) + "\n")
    es = {"validation": str(val), "metric": "margin", "patience": 1, "min_delta": 0.0}
    cfg = write_config(tmp_path, {"soft": {"rounds": 3, "early_stop": es}, "single_round": {"rounds": 1}})
    proc = dry_run(tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = parse_jobs(proc.stdout)

    def planned(rule, exp):
        return sorted(int(j["wildcards"]["k"]) for j in jobs if j["rule"] == rule and j["wildcards"].get("exp") == exp)

    assert planned("validate_model", "soft") == [1]
    assert planned("validate_model", "base_model") == [0]  # round 0: one validation, shared
    assert planned("generate_responses", "soft") == [1] and planned("train_model", "soft") == [1]
    assert planned("generate_responses", "single_round") == [1]
    # the jobs whose inputs depend on the decisions wait, marked to-be-determined
    waiting = {tuple(j["output"]) for j in jobs if j["input"] == ["<TBD>"]}
    assert waiting == {("results/soft/stop.json",), ("results/tables/metrics.csv", "results/tables/metrics.md",
                                                     "results/tables/comparisons.csv")}
    assert planned("decide_next_round", "soft") == [1]


def test_paper_config_builds_the_paper_scale_dag(tmp_path):
    """config/experiments/paper.yaml: Llama-2-7b from the hub, vLLM, QLoRA on one GPU per
    job, Dolly prompts from the hub, three seeds, the main grid and both ablations."""
    proc = repo_config_dry_run(fresh_workdir(tmp_path), "paper", "--configfile", "config/experiments/paper.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = jobs_by_rule(proc)
    runs = {j["wildcards"]["exp"] for j in jobs["generate_responses"]}
    names = {"single_round", "soft", "soft_plus", "icl_fixed", "icl_growing", "soft_hard_to_easy",
             "soft_base_generator"}
    assert runs == names | {f"{n}_seed{s}" for n in names for s in (1, 2)}
    assert [j["output"] for j in jobs["prepare_base_model"]] == [["resources/models/llama-2-7b"]]
    assert [j["output"] for j in jobs["fetch_prompt_pool"]] == [
        ["results/prompt_pool/hub.jsonl", "results/prompt_pool/hub_stats.json"]]
    # every GPU job of the listing asks for one GPU
    import re

    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout)
    gpu_blocks = [b for b in blocks if re.match(r"(?:local)?rule (train_model|generate_responses):", b)]
    assert len(gpu_blocks) == 42 and all(re.search(r"resources: .*\bgpu=1\b", b) for b in gpu_blocks)
    assert "results/paper/paper_llama2_7b/main_table.tex" in jobs["write_paper_tables"][0]["output"]
    assert "results/paper/paper_llama2_7b/ablation_training_order.png" in jobs["plot_paper_figures"][0]["output"]



def test_default_paper_target_adds_the_ablations_to_the_grid(tmp_path):
    workdir = fresh_workdir(tmp_path)
    proc = repo_config_dry_run(workdir, "paper")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = jobs_by_rule(proc)
    assert {j["wildcards"]["exp"] for j in jobs["generate_responses"]} == {
        "single_round", "soft", "soft_plus", "icl_fixed", "icl_growing", "soft_hard_to_easy", "soft_base_generator"}
    outputs = jobs["plot_paper_figures"][0]["output"]
    for stem in ("benchmarks", "metric_vs_round", "collapse", "ablation_icl_diversity", "ablation_training_order",
                 "ablation_bootstrap_control"):
        assert f"results/paper/{stem}.png" in outputs and f"results/paper/{stem}.pdf" in outputs
    # `all` stays the grid
    plain = jobs_by_rule(repo_config_dry_run(workdir))
    assert {j["wildcards"]["exp"] for j in plain["generate_responses"]} == {"single_round", "soft", "soft_plus"}


LOCAL_RULES_OF_PAPER_CONFIG = """
import json
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), storage_settings=StorageSettings(),
                      config_settings=ConfigSettings(configfiles=[Path("config/experiments/paper.yaml")]),
                      snakefile=Path("Snakefile"), workdir=Path("."))
    wf.dag()
    print(json.dumps(sorted(wf._workflow._localrules)))
"""


def test_downloads_run_where_snakemake_runs():
    """Under a cluster profile the downloads (PyPI, the hub) are local rules: compute nodes
    often have no network. (A dry run prints every job as `rule`, so the rule set is read
    from the workflow itself.)"""
    import json
    import subprocess
    import sys

    from test_dag import REPO

    proc = subprocess.run([sys.executable, "-c", LOCAL_RULES_OF_PAPER_CONFIG], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert {"prepare_base_model", "fetch_benchmarks", "fetch_prompt_pool"} <= local
    assert not local & {"train_model", "generate_responses", "evaluate_model"}
