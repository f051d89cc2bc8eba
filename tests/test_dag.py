"""Dry-run DAG tests through the real Snakefile: the bootstrapping chain, job by job.

Nothing is built or run: the base model source is a `local` folder of empty stand-in
files and the benchmark checksum is a placeholder, which is enough for `snakemake -n`.
Each job of the dry run is parsed from Snakemake's job listing (rule, wildcards, input,
output), and the chain is checked file by file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
PROMPTS = str(REPO / "config" / "prompts.jsonl")
PRINCIPLES = str(REPO / "config" / "principles.yaml")
EXEMPLARS = str(REPO / "config" / "exemplars.jsonl")
BASE_NAME = "tiny-llama"
BASE = f"resources/models/{BASE_NAME}"
BENCH = "resources/benchmarks"
BASE_EVAL = "results/base_model/eval/round0.json"
FINAL = ["results/tables/metrics.csv", "results/tables/metrics.md", "results/tables/comparisons.csv",
         "results/figures/metric_vs_round.png", "results/figures/metric_vs_round.pdf",
         "results/figures/collapse.png", "results/figures/collapse.pdf"]
TRACEBACK = "Traceback (most recent call last)"
# Snakemake 9 never prints TRACEBACK for an error raised in a Snakefile: it prints
# `KeyError in file "...", line N:` and `  File "...", line N, in <module>` frames instead.
FRAME_LINE = re.compile(r'^\s*File "')
ERROR_CLASS = re.compile(r"\b[A-Z]\w*(?:Error|Exception|Exit)\b")


def stub_model_folder(path: Path) -> Path:
    """A folder that passes the DAG-time checks of a local base model (config.json,
    safetensors, a tokenizer) without being loadable: enough for a dry run."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in (("config.json", "{}"), ("model.safetensors", ""), ("tokenizer.json", "{}")):
        (path / name).write_text(text)
    return path


def write_config(workdir: Path, experiments: dict, defaults: dict | None = None) -> Path:
    """A config shaped like tests/tiny.py's, without building anything."""
    cfg = {
        "seed": 0,
        "base_model": {"name": BASE_NAME, "source": {"kind": "local", "path": str(stub_model_folder(
            workdir / "model_src"))}},
        "benchmarks": {"sdist": "bigbench==1.0.0", "sha256": "0" * 64},
        "prompts": PROMPTS,
        "principles": PRINCIPLES,
        "exemplars": EXEMPLARS,
        "evaluation": {"tasks": ["soft_truthfulqa_mc1"], "raw_tasks": ["soft_hhh"], "batch_size": 4},
        "defaults": defaults if defaults is not None else {
            "prompt_budget": 6,
            "rounds": 1,
            "icl": {"shots": 1},
            "generation": {"max_new_tokens": 24, "batch_size": 4},
            "train": {"epochs": 1, "batch_size": 4, "lora": {"r": 4, "alpha": 8}},
        },
        "experiments": experiments,
        "resources": {r: {"threads": 1, "mem_mb": 1000, "gpu": 0}
                      for r in ("prepare_base_model", "generate_responses", "train_model", "evaluate_model")},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def dry_run(workdir: Path, configfile: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", "--dry-run"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def fresh_workdir(workdir: Path) -> Path:
    """A folder to run the repository's own configs in, as a fresh clone would: a copy of
    config/ (their input paths are relative to it) and nothing else, so no result, log or
    Snakemake record already in the checkout can stand in for a job or feed a DAG check."""
    import shutil

    shutil.copytree(REPO / "config", workdir / "config")
    return workdir


def repo_config_dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """`snakemake --dry-run --forceall [args]` with the repository's configs, in `workdir`
    (see fresh_workdir): every job is listed, whatever exists."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           *args, "--cores", "2", "--dry-run", "--forceall"]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=180)


def assert_refused(proc: subprocess.CompletedProcess, line: str | re.Pattern) -> None:
    """The run stopped with a non-zero exit and printed exactly one line: `line` (the
    whole line: exact text, or a regex that must match all of it), and nothing else: no
    frame lines, no error class name, no job planned."""
    out = proc.stdout + proc.stderr
    printed = [ln for ln in out.splitlines() if ln.strip()]
    assert proc.returncode != 0, f"accepted:\n{out[-3000:]}"
    assert not [ln for ln in printed if FRAME_LINE.match(ln)], f"frame lines printed:\n{out[-3000:]}"
    classes = [c for c in ERROR_CLASS.findall(out) if c != "SoftError"]  # the project's own may be named
    assert not classes, f"error class {classes} printed:\n{out[-3000:]}"
    assert len(printed) == 1, f"{len(printed)} lines printed, not one:\n{out[-3000:]}"
    if isinstance(line, re.Pattern):
        assert line.fullmatch(printed[0]), f"{printed[0]!r}\ndoes not match\n{line.pattern!r}"
    else:
        assert printed[0] == line, f"{printed[0]!r}\n!=\n{line!r}"


_JOB_HEAD = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
_JOB_FIELD = re.compile(r"^ {4}(\w+): (.*)$")


def parse_jobs(text: str) -> list[dict]:
    """Jobs of a dry-run listing: rule, wildcards (dict), input and output (lists)."""
    jobs, cur = [], None
    for line in text.splitlines():
        head = _JOB_HEAD.match(line)
        if head:
            cur = {"rule": head.group(1), "input": [], "output": [], "wildcards": {}}
            jobs.append(cur)
            continue
        field = _JOB_FIELD.match(line) if cur is not None else None
        if field is None:
            cur = None
            continue
        key, value = field.groups()
        if key in ("input", "output"):
            cur[key] = value.split(", ")
        elif key == "wildcards":
            cur[key] = dict(item.split("=", 1) for item in value.split(", "))
    return jobs


def parse_job_stats(text: str) -> Counter:
    """The 'Job stats' table Snakemake prints (rule -> count), without the total."""
    lines = text.splitlines()
    start = lines.index("Job stats:") + 3  # header, column names, dashes
    stats = Counter()
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        stats[parts[0]] = int(parts[1])
    return stats


class Plan:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.out = proc.stdout + proc.stderr
        assert proc.returncode == 0, self.out[-6000:]
        self.jobs = parse_jobs(self.out)
        self.stats = parse_job_stats(self.out)

    def one(self, rule: str, **wildcards) -> dict:
        hits = [j for j in self.jobs if j["rule"] == rule and all(j["wildcards"].get(k) == str(v)
                                                                for k, v in wildcards.items())]
        assert len(hits) == 1, f"{rule} {wildcards}: {len(hits)} jobs"
        return hits[0]

    def rounds_of(self, rule: str, exp: str) -> list[int]:
        return sorted(int(j["wildcards"]["k"]) for j in self.jobs
                      if j["rule"] == rule and j["wildcards"].get("exp") == exp)


def expected_counts(rounds: list[int]) -> Counter:
    total = sum(rounds)
    return Counter({"split_prompts": total, "generate_responses": total, "filter_responses": total,
                    "train_model": total, "record_training": total, "evaluate_model": total + 1, "prepare_base_model": 1,
                    "fetch_benchmarks": 1, "aggregate_metrics": 1, "plot_metrics": 1, "all": 1,
                    "write_stop_record": len(rounds)})


def check_chain(plan: Plan, exp: str, rounds: int, init: str) -> None:
    """Every job of one experiment's chain, with its exact inputs and outputs."""
    for rule in ("split_prompts", "generate_responses", "filter_responses", "train_model", "evaluate_model"):
        assert plan.rounds_of(rule, exp) == list(range(1, rounds + 1)), rule
    r = f"results/{exp}"
    for k in range(1, rounds + 1):
        prev = BASE if k == 1 else f"{r}/models/round{k - 1}"
        job = plan.one("split_prompts", exp=exp, k=k)
        assert job["input"] == [PROMPTS]
        assert job["output"] == [f"{r}/prompts/round{k}.jsonl"]

        job = plan.one("generate_responses", exp=exp, k=k)
        assert job["input"] == [f"{r}/prompts/round{k}.jsonl", prev, PRINCIPLES, EXEMPLARS]
        assert job["output"] == [f"{r}/data/round{k}_gen.jsonl"]

        job = plan.one("filter_responses", exp=exp, k=k)
        # The filter's leak check reads the shown exemplars from the generation records.
        assert job["input"] == [f"{r}/data/round{k}_gen.jsonl", PRINCIPLES]
        assert sorted(job["output"]) == [f"{r}/data/round{k}.jsonl", f"{r}/data/round{k}_filter.json"]

        job = plan.one("train_model", exp=exp, k=k)
        init_model = BASE if init == "base" else prev
        assert job["input"] == [f"{r}/data/round{k}.jsonl", init_model, PRINCIPLES]
        assert job["output"] == [f"{r}/models/round{k}"]
        job = plan.one("record_training", exp=exp, k=k)
        assert (job["input"], job["output"]) == ([f"{r}/models/round{k}"], [f"{r}/train/round{k}.json"])

        job = plan.one("evaluate_model", exp=exp, k=k)
        assert job["input"] == [f"{r}/models/round{k}", BENCH, PRINCIPLES]
        assert job["output"] == [f"{r}/eval/round{k}.json", f"{r}/eval/round{k}_samples.jsonl"]


def check_shared(plan: Plan, experiments: dict[str, int]) -> None:
    """Round 0 evaluated once, the aggregate's inputs, and a closed DAG."""
    base_evals = [j for j in plan.jobs if j["rule"] == "evaluate_model" and j["wildcards"]["k"] == "0"]
    assert len(base_evals) == 1
    assert base_evals[0]["wildcards"] == {"exp": "base_model", "k": "0"}
    assert base_evals[0]["input"] == [BASE, BENCH, PRINCIPLES]
    assert base_evals[0]["output"] == [BASE_EVAL, BASE_EVAL.replace(".json", "_samples.jsonl")]
    assert plan.one("prepare_base_model", model=BASE_NAME)["output"] == [BASE]
    assert plan.one("fetch_benchmarks")["output"] == [BENCH]

    agg = plan.one("aggregate_metrics")
    # per (experiment, round): its evaluation, then (rounds >= 1) its filter stats and
    # its training record (the optimiser steps; never the model folder, which
    # storage.keep_round_models: reported may remove)
    # (and the per-document samples beside each evaluation, which the comparisons pair)
    base_samples = BASE_EVAL.replace(".json", "_samples.jsonl")
    inputs = [p for exp, t in experiments.items() for k in range(t + 1)
              for p in ([BASE_EVAL, base_samples] if k == 0 else [f"results/{exp}/eval/round{k}.json",
                                                                  f"results/{exp}/eval/round{k}_samples.jsonl",
                                                                  f"results/{exp}/data/round{k}_filter.json",
                                                                  f"results/{exp}/train/round{k}.json"])]
    assert agg["input"] == inputs
    assert agg["output"] == FINAL[:3]
    stops = [f"results/{exp}/stop.json" for exp in experiments]
    assert plan.one("plot_metrics")["input"] == [FINAL[0], FINAL[2]] + stops
    assert plan.one("all")["input"] == FINAL + stops

    # Closed and unambiguous: every workflow file a job reads is written by exactly one job.
    producers = Counter(o for j in plan.jobs for o in j["output"])
    assert all(n == 1 for n in producers.values()), [o for o, n in producers.items() if n > 1]
    for job in plan.jobs:
        for path in job["input"]:
            if path.startswith(("results/", "resources/")):
                assert path in producers, f"{job['rule']} reads {path}, which no job writes"
    base_outputs = (BASE_EVAL, BASE_EVAL.replace(".json", "_samples.jsonl"))
    assert not any(o.startswith("results/") and "/round0" in o and o not in base_outputs for o in producers)


# ---------------------------------------------------------------- one experiment, T = 1..5

CHAINS = [(1, "previous"), (2, "base"), (3, "previous"), (4, "base"), (5, "previous")]


@pytest.fixture(scope="module", params=CHAINS, ids=[f"T{t}-{init}" for t, init in CHAINS])
def chain_plan(request, tmp_path_factory):
    rounds, init = request.param
    work = tmp_path_factory.mktemp(f"dag_T{rounds}")
    cfg = write_config(work, {"chain": {"rounds": rounds, "train": {"init": init}}})
    return rounds, init, Plan(dry_run(work, cfg))


def test_chain_job_counts(chain_plan):
    rounds, _, plan = chain_plan
    assert plan.stats == expected_counts([rounds])
    assert Counter(j["rule"] for j in plan.jobs) == plan.stats  # every listed job was parsed


def test_chain_links(chain_plan):
    rounds, init, plan = chain_plan
    check_chain(plan, "chain", rounds, init)
    if rounds >= 2:
        train2 = plan.one("train_model", exp="chain", k=2)
        assert ("results/chain/models/round1" in train2["input"]) == (init == "previous")


def test_chain_shared_jobs(chain_plan):
    rounds, _, plan = chain_plan
    check_shared(plan, {"chain": rounds})


# ---------------------------------------------------------------- two experiments in one grid


@pytest.fixture(scope="module")
def grid_plan(tmp_path_factory):
    work = tmp_path_factory.mktemp("dag_grid")
    cfg = write_config(work, {"single_round": {"rounds": 1}, "soft": {"rounds": 3}})
    return Plan(dry_run(work, cfg))


def test_grid_job_counts(grid_plan):
    assert grid_plan.stats == expected_counts([1, 3])
    assert Counter(j["rule"] for j in grid_plan.jobs) == grid_plan.stats
    assert len(grid_plan.jobs) == 32


def test_grid_chains(grid_plan):
    check_chain(grid_plan, "single_round", 1, "previous")
    check_chain(grid_plan, "soft", 3, "previous")


def test_grid_shares_round0(grid_plan):
    check_shared(grid_plan, {"single_round": 1, "soft": 3})
    # both chains start from the one base model folder
    assert grid_plan.one("generate_responses", exp="single_round", k=1)["input"][1] == BASE
    assert grid_plan.one("generate_responses", exp="soft", k=1)["input"][1] == BASE


# ---------------------------------------------------------------- icl growing mode: earlier rounds as inputs


@pytest.fixture(scope="module")
def growing_plan(tmp_path_factory):
    work = tmp_path_factory.mktemp("dag_growing")
    cfg = write_config(work, {"grow": {"rounds": 3, "icl": {"mode": "growing"}},
                              "fixed": {"rounds": 3, "icl": {"mode": "fixed", "pool_size": 4}}})
    return Plan(dry_run(work, cfg))


def test_growing_rounds_read_earlier_rounds_data(growing_plan):
    plan = growing_plan
    assert plan.stats == expected_counts([3, 3])
    r = "results/grow"
    for k in (1, 2, 3):
        prev = BASE if k == 1 else f"{r}/models/round{k - 1}"
        earlier = [f"{r}/data/round{j}.jsonl" for j in range(1, k)]
        job = plan.one("generate_responses", exp="grow", k=k)
        assert job["input"] == [f"{r}/prompts/round{k}.jsonl", prev, PRINCIPLES, EXEMPLARS, *earlier]
        job = plan.one("filter_responses", exp="grow", k=k)
        assert job["input"] == [f"{r}/data/round{k}_gen.jsonl", PRINCIPLES]
    check_shared(plan, {"grow": 3, "fixed": 3})


def test_other_modes_do_not_read_earlier_rounds(growing_plan):
    check_chain(growing_plan, "fixed", 3, "previous")


# ---------------------------------------------------------------- bad configs fail before any job


def test_unknown_key_fails_naming_it(tmp_path):
    defaults = {"prompt_budget": 6, "train": {"lr": 0.1}}
    proc = dry_run(tmp_path, write_config(tmp_path, {"soft": {"rounds": 2}}, defaults=defaults))
    assert_refused(proc, re.compile(r"invalid configuration: config key 'defaults\.train\.lr': unknown key; "
                                    r"expected one of init, data, .*learning_rate, .*, got 0\.1"))


def test_prompt_budget_above_pool_fails_without_traceback(tmp_path):
    # The budget is set where a user sets it, in `defaults`, and inherited by both experiments.
    defaults = {"prompt_budget": 1000, "rounds": 1}
    proc = dry_run(tmp_path, write_config(tmp_path, {"single_round": {"rounds": 1}, "soft": {"rounds": 3}},
                                          defaults=defaults))
    assert proc.returncode != 0, (
        "dry run accepted defaults.prompt_budget 1000 > 225 prompts: the `defaults` value did not reach "
        "the experiments (schema defaults filled into each experiment override it?)\n" + proc.stderr[-3000:])
    assert_refused(proc, f"invalid configuration: config key 'experiments.single_round.prompt_budget': "
                         f"1000 prompts asked but {PROMPTS} holds only 225")


def test_shots_above_pool_size_fails_naming_key(tmp_path):
    exps = {"soft": {"rounds": 2, "icl": {"shots": 3, "pool_size": 2}}}
    proc = dry_run(tmp_path, write_config(tmp_path, exps))
    assert_refused(proc, "invalid configuration: config key 'experiments.soft.icl.shots': 3 exemplars per "
                         "prompt but icl.pool_size is 2")


def test_old_generation_shots_key_names_its_new_place(tmp_path):
    defaults = {"prompt_budget": 6, "generation": {"shots": 1}}
    proc = dry_run(tmp_path, write_config(tmp_path, {"soft": {"rounds": 2}}, defaults=defaults))
    assert_refused(proc, "invalid configuration: config key 'defaults.generation.shots' has moved: set "
                         "'defaults.icl.shots' instead")
