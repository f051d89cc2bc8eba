"""The workflow at P and 2P prompts (--scaling): the ratio of wall times."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from performance import REPO

SCALING_BUDGET = {False: 48, True: 4}  # P in full and quick mode
SCALING_MINUTES = {False: 20, True: 2}  # about how long both runs take


def scaling_config(model_dir: Path, budget: int, quick: bool) -> dict:
    """A one-experiment grid (single_round, one round of `budget` prompts) from
    config/config.yaml: no early stop, no probe, no judge, no paper includes; quick mode
    takes tests/tiny.py's tiny_config settings. Paths are absolute (the run is elsewhere)."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for key in ("prompts", "principles", "exemplars"):
        cfg[key] = str(REPO / cfg[key])
    cfg["base_model"]["name"] = model_dir.name  # resources/models/<name>: a link to model_dir
    cfg["experiments"] = {"single_round": {"rounds": 1}}
    cfg["paper"] = {"include": []}
    cfg["evaluation"]["probe"] = {"prompts": None}
    cfg["evaluation"]["judge"] = {"kind": "none", "reference": None}
    d = cfg["defaults"]
    d["prompt_budget"] = budget
    d["early_stop"] = {"validation": None}
    if quick:  # tests/tiny.py: tiny_config
        cfg["base_model"]["source"] = {"kind": "local", "path": str(model_dir)}
        cfg["evaluation"] = {"tasks": ["soft_truthfulqa_mc1"], "raw_tasks": ["soft_hhh"], "batch_size": 4,
                             "probe": {"prompts": None}, "judge": {"kind": "none", "reference": None}}
        d["icl"] = {"shots": 1}
        d["generation"] = {"max_new_tokens": 24, "batch_size": 4, "max_prompt_tokens": 512}
        d["filter"] = {"require_self_id": False, "require_answer_marker": False, "min_chars": 1,
                       "max_prompt_overlap": 1.0, "leak_ngram": 0}
        d["train"] = {"epochs": 1, "batch_size": 4, "max_length": 128, "lora": {"r": 4, "alpha": 8}}
        cfg["resources"] = {r: {"threads": 1, "mem_mb": 1000, "gpu": 0} for r in cfg["resources"]}
    return cfg


def _job_seconds(run_dir: Path) -> dict:
    """Each benchmarked job's seconds, by its benchmarks/ path (e.g.
    single_round/generate_responses/round1); the light jobs have no benchmark file."""
    base = run_dir / "benchmarks"
    return {str(f.relative_to(base).with_suffix("")): float(f.read_text().splitlines()[-1].split("\t")[0])
            for f in sorted(base.rglob("*.tsv"))}


def bench_scaling(model_dir: str, bench_dir: str, tmp: Path, quick: bool = False) -> dict:
    """The workflow (`all`) on a one-experiment grid at P and 2P prompts, each in its own
    fresh folder whose resources/ links to one shared resources/ (models/<name> -> the
    model, benchmarks -> the task folder), so neither run prepares them; wall time of
    each `snakemake` command, their ratio, and each rule's job seconds."""
    import os

    model_dir, bench_dir = Path(model_dir).resolve(), Path(bench_dir).resolve()
    shared = tmp / "shared" / "resources"
    (shared / "models").mkdir(parents=True)
    (shared / "models" / model_dir.name).symlink_to(model_dir, target_is_directory=True)
    (shared / "benchmarks").symlink_to(bench_dir, target_is_directory=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    p = SCALING_BUDGET[quick]
    out: dict = {"experiment": "single_round", "rounds": 1, "cores": 2}
    for budget in (p, 2 * p):
        run = tmp / f"prompts{budget}"
        run.mkdir()
        (run / "resources").symlink_to(shared.resolve(), target_is_directory=True)
        cfg = run / "config.yaml"
        cfg.write_text(yaml.safe_dump(scaling_config(model_dir, budget, quick), sort_keys=False))
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                               "--directory", str(run), "--configfile", str(cfg), "--cores", "2", "all"],
                              capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"scaling run at {budget} prompts failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        jobs = _job_seconds(run)
        rebuilt = sorted(k for k in jobs if k.split("/")[0] in ("prepare_base_model", "fetch_benchmarks"))
        if rebuilt:
            raise RuntimeError(f"scaling run at {budget} prompts rebuilt the shared {', '.join(rebuilt)}")
        out[f"prompts_{budget}"] = {"prompts": budget, "wall_s": round(wall, 2),
                                    "sum_of_jobs_s": round(sum(jobs.values()), 2), "jobs_s": jobs}
    a, b = out[f"prompts_{p}"], out[f"prompts_{2 * p}"]
    out["prompts"] = [p, 2 * p]
    out["ratio"] = round(b["wall_s"] / a["wall_s"], 3)
    out["measured"] = True
    out["note"] = ("wall time of `snakemake all` per run (Snakemake start-up and DAG included); fixed costs "
                   "(round 0's evaluation, aggregation, figures) do not grow with the prompts; jobs_s: the jobs "
                   "with a benchmark file (split, filter, aggregate and plot have none)")
    return out
