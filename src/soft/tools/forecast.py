"""Cost forecast per rule from the dry-run DAG: jobs, tokens, device-hours, peak memory and
disk written, for a named device profile, before any job runs.

    python -m soft.tools.forecast [--configfile X] [--device cpu-here|a100-80gb|h100] [targets] [--out DIR]
    python -m soft.tools.forecast calibrate --run RUN [--configfile X] [--totals config/forecast/T.csv ...]
    python -m soft.tools.forecast validate --run RUN [--configfile X]      # forecast vs the run's benchmarks/
    python -m soft.tools.forecast validate --totals config/forecast/T.csv  # vs a run's stage totals
    python -m soft.tools.forecast slurm-profile --configfile X --device a100-80gb --out profiles/slurm-forecast

The jobs come from `snakemake -n --forceall` run in a scratch copy of the working folder.
Early stop makes round k+1 hang on the decide_next_round checkpoint: rounds not decided yet
get a stand-in decision "continue" there, so the plan is each chain's full length (the
upper bound); decisions already taken are kept, and jobs whose outputs exist are reported
as done, so the "left" columns are the remaining work.

Each model job's work is counted from the config (rounds, prompts, tokens per prompt from
the principles, exemplars and max_new_tokens, epochs, evaluation documents from the task
files) and the model's size (its config.json, or a table for hub models): FLOPs = 2 N tokens
for a forward pass, 6 N tokens for training (8 N with gradient checkpointing). On this CPU,
seconds = a + b FLOPs per rule, fitted on real runs' benchmark files; on a GPU profile,
seconds = start-up + FLOPs / (peak x utilisation), both labelled assumptions in
forecast_profiles.yaml.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from soft.errors import SoftError
from soft.train.launch import worker_env

PROFILES_FILE = Path(__file__).with_name("forecast_profiles.yaml")
CALIBRATION_FILE = Path(__file__).with_name("forecast_calibration.json")
REPO = Path(__file__).resolve().parents[3]

# Rules that load a model; the rest are light bookkeeping jobs.
MODEL_RULES = ("generate_responses", "train_model", "evaluate_model", "validate_model", "probe_model",
               "judge_answers", "score_pool_difficulty", "score_round_difficulty")
# Every folder the dry-run copy needs from the working folder is linked, except these.
SCRATCH_SKIP = {"results", ".snakemake", "logs", "benchmarks", ".git"}


# --------------------------------------------------------------------------- the DAG

@dataclass
class Job:
    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    benchmark: str | None = None
    threads: int = 1
    done: bool = False

    @property
    def exp(self) -> str | None:
        return self.wildcards.get("exp")

    @property
    def round(self) -> int | None:
        k = self.wildcards.get("k")
        return int(k) if k is not None else None


_RULE_LINE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$")
_FIELD_LINE = re.compile(r"^\s+(\w+): (.*)$")


def parse_dry_run(text: str) -> list[Job]:
    """Jobs of a `snakemake -n` listing (Snakemake 9): one block per job, opened by
    `rule NAME:` (or `checkpoint`/`localrule`), with indented `output:`, `wildcards:`,
    `benchmark:` and `threads:` lines."""
    jobs: list[Job] = []
    job: Job | None = None
    for line in text.splitlines():
        m = _RULE_LINE.match(line)
        if m:
            job = Job(m.group(1))
            jobs.append(job)
            continue
        m = _FIELD_LINE.match(line)
        if job is None or not m:
            if line and not line.startswith(" "):
                job = None
            continue
        key, value = m.groups()
        if key == "wildcards":
            job.wildcards = dict(kv.split("=", 1) for kv in value.split(", ") if "=" in kv)
        elif key == "output":
            job.outputs = [o.strip() for o in value.split(", ") if o.strip()]
        elif key == "benchmark":
            job.benchmark = value.strip()
        elif key == "threads":
            job.threads = int(value)
    return jobs


# Makes a checkpoint whose output file exists count as done while the DAG is built, so
# that --forceall still plans the rounds after it (Snakemake would otherwise stop the
# plan at every checkpoint it is forced to rerun).
_LAUNCHER = """
import os, sys
import snakemake.checkpoints as cp
_get = cp.Checkpoint.get
def get(self, **wildcards):
    output, _ = self.rule.expand_output(wildcards)
    if all(os.path.exists(o) for o in output):
        return cp.CheckpointJob(self.rule, output)
    return _get(self, **wildcards)
cp.Checkpoint.get = get
from snakemake.cli import main
main(sys.argv[1:])
"""


def _link_workdir(workdir: Path, scratch: Path) -> None:
    """The scratch copy: every top-level entry linked, results/ rebuilt from links to the
    real files, so that existing inputs (a fetched pool's stats) and decisions are seen."""
    for entry in workdir.iterdir():
        if entry.name not in SCRATCH_SKIP:
            (scratch / entry.name).symlink_to(entry.resolve())
    results = workdir / "results"
    if results.is_dir():
        for path in results.rglob("*"):
            if path.is_file():
                target = scratch / path.relative_to(workdir)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(path.resolve())


def plan_jobs(workdir: Path, configfile: Path | None = None, targets: list[str] | None = None,
              snakefile: Path | None = None, python: str = sys.executable, timeout: int = 600) -> list[Job]:
    """Every job of the full chains (undecided rounds assumed to go on), each marked done
    when all its outputs exist in `workdir`."""
    workdir = workdir.resolve()
    snakefile = snakefile or (workdir / "Snakefile" if (workdir / "Snakefile").is_file() else REPO / "Snakefile")
    assumed: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory(prefix="soft_forecast_") as tmp:
        scratch = Path(tmp)
        _link_workdir(workdir, scratch)
        while True:
            # targets first: --configfile takes every word after it
            cmd = [python, "-c", _LAUNCHER, *(targets or []), "-n", "--forceall", "--cores", "1",
                   "--snakefile", str(snakefile), "--directory", str(scratch)]
            if configfile is not None:
                cmd += ["--configfile", str(configfile.resolve())]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=scratch, timeout=timeout,
                                  env=worker_env())
            if proc.returncode != 0:
                raise SoftError(f"the dry run failed ({' '.join(cmd[3:])}):\n{(proc.stdout + proc.stderr)[-3000:]}")
            jobs = parse_dry_run(proc.stdout + "\n" + proc.stderr)
            undecided = [j for j in jobs if j.rule == "decide_next_round"
                         and not all((scratch / o).exists() for o in j.outputs)]
            if not undecided:
                break
            for j in undecided:
                for o in j.outputs:
                    path = scratch / o
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps({"continue": True, "reason": "forecast: assumed"}))
                assumed.add((j.exp, j.wildcards["k"]))
    # The decided checkpoints drop out of the listing: put their (light) jobs back.
    listed = {(j.exp, j.wildcards.get("k")) for j in jobs if j.rule == "decide_next_round"}
    decided = {(p.parts[-3], m.group(1)) for p in (workdir / "results").glob("*/validation/round*_decision.json")
               if (m := re.fullmatch(r"round(\d+)_decision\.json", p.name))}
    planned = {j.exp for j in jobs if j.exp}  # not the decisions of experiments this config lacks
    for exp, k in sorted((assumed | {d for d in decided if d[0] in planned}) - listed):
        jobs.append(Job("decide_next_round", {"exp": exp, "k": k},
                        [f"results/{exp}/validation/round{k}_decision.json"]))
    for j in jobs:
        j.done = bool(j.outputs) and all((workdir / o).exists() for o in j.outputs) \
            and j.rule not in ("all", "paper")
    return jobs


# --------------------------------------------------------------------------- the config

def load_profiles() -> dict:
    return yaml.safe_load(PROFILES_FILE.read_text())


def load_calibration(path: Path = CALIBRATION_FILE) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"rules": {}}


@dataclass
class Setting:
    """What the cost model reads from a config: the resolved experiments and the sizes."""
    experiments: dict[str, dict]
    evaluation: dict
    model: dict  # params, layers, dtype_bytes, name
    prompt_chars: float
    principles_chars: float
    system_chars: float
    exemplar_chars: float
    probe_chars: float
    n_probe: int
    validation_pairs: list[tuple[int, int]]  # (prompt+chosen, prompt+rejected) characters
    tasks: dict[str, dict]
    judge_local: bool
    cfg: dict


def _read_config(workdir: Path, configfile: Path | None) -> dict:
    from soft.config import extend_config

    path = configfile or workdir / "config/config.yaml"
    if not path.is_file():
        raise SoftError(f"{path}: config file not found")
    cwd = os.getcwd()
    os.chdir(workdir)  # extends: and paths in the config are relative to the run folder
    try:
        return extend_config(yaml.safe_load(path.read_text()) or {})
    finally:
        os.chdir(cwd)


def model_size(workdir: Path, cfg: dict, profiles: dict) -> dict:
    """Parameters (from config.json's shapes: embeddings + per-layer attention and MLP) of
    the base model folder, or the hub table when the folder does not exist yet."""
    name = cfg["base_model"]["name"]
    folder = workdir / "resources/models" / name
    source = cfg["base_model"].get("source") or {}
    if not (folder / "config.json").is_file() and source.get("kind") == "local" and source.get("path"):
        folder = Path(source["path"])
    if (folder / "config.json").is_file():
        c = json.loads((folder / "config.json").read_text())
        h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
        inter = c.get("intermediate_size", 4 * h)
        heads = c.get("num_attention_heads", 1)
        head_dim = c.get("head_dim") or h // heads
        kv = c.get("num_key_value_heads", heads) * head_dim
        attn = h * heads * head_dim + 2 * h * kv + heads * head_dim * h
        mlp = 3 * h * inter
        emb = vocab * h * (1 if c.get("tie_word_embeddings") else 2)
        params = layers * (attn + mlp + 2 * h) + emb + h
        dtype = str(c.get("dtype") or c.get("torch_dtype") or "float32")
        return {"name": name, "params": float(params), "layers": layers, "hidden": h, "vocab": vocab,
                "dtype_bytes": 4 if "32" in dtype else 2}
    hub_id = source.get("id")
    table = profiles["hub_models"]
    for key in (hub_id, name):
        if key in table:
            return {"name": name, **table[key]}
    raise SoftError(f"config key 'base_model': {folder}/config.json not found and {hub_id!r} is not in "
                    f"{PROFILES_FILE.name}'s hub_models table: add its params, layers, hidden, vocab")


def _mean_chars(path: Path, key=None) -> tuple[float, int]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        return 0.0, 0
    sizes = [len(key(json.loads(ln))) if key else len(ln) for ln in lines]
    return statistics.fmean(sizes), len(lines)


class _TaskLoader(yaml.SafeLoader):
    """lm-eval task files carry `!function` tags; their values do not matter here."""


_TaskLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _task_sizes(workdir: Path, tasks: list[str], profiles: dict, layout_primer_chars: float = 0.0) -> dict[str, dict]:
    """Per task: documents per subset and mean characters, from resources/benchmarks when
    it exists (the task files), else the table in forecast_profiles.yaml (whose layout-view
    entries count the system prompt already). `layout_primer_chars`: what the layout view
    puts before each document read from the files (the distilled system prompt in the
    model's layout); 0 for the raw view."""
    bench = workdir / "resources/benchmarks"
    out = {}
    for task in tasks:
        # a group's subsets are {task}_{subset}.jsonl; soft_hhh's glob must not take soft_hhh_ab's
        files = [f for f in sorted(bench.glob(f"{task}_*.jsonl")) if "_" not in f.stem[len(task) + 1:]]
        files = files or [bench / f"{task}.jsonl"]
        files = [f for f in files if f.is_file()]
        if files:
            subsets, q, c, n_c = {}, [], [], []
            for f in files:
                recs = [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()]
                subsets[f.stem] = len(recs)
                q += [len(r.get("question", "")) for r in recs]
                c += [statistics.fmean(len(x) for x in r["choices"]) for r in recs]
                n_c += [len(r["choices"]) for r in recs]
            yaml_file = bench / f"{task}.yaml"
            primer = 0
            if yaml_file.is_file():
                text = yaml.load(yaml_file.read_text(), Loader=_TaskLoader) or {}
                primer = len(str(text.get("doc_to_text", ""))) if isinstance(text, dict) else 0
            primer += layout_primer_chars
            out[task] = {"subsets": subsets, "question_chars": statistics.fmean(q),
                         "choice_chars": statistics.fmean(c), "choices": statistics.fmean(n_c),
                         "primer_chars": primer}
        elif task in profiles["tasks"]:
            t = dict(profiles["tasks"][task])
            t.setdefault("subsets", {task: t.pop("docs", 0)})
            out[task] = t
        else:
            raise SoftError(f"config key 'evaluation.tasks': {task!r}: no task file under {bench} and no "
                            f"size for it in {PROFILES_FILE.name}")
    return out


def load_setting(workdir: Path, configfile: Path | None = None) -> Setting:
    """The config resolved as the Snakefile resolves it (extends, paper includes, seeds)."""
    from soft.config import (evaluation_settings, included_experiments, load_schema, paper_settings,
                             prompt_source, resolve_experiments, seed_instances)
    from soft.principles import load_principles

    workdir = workdir.resolve()
    profiles = load_profiles()
    cfg = _read_config(workdir, configfile)
    schema = load_schema()
    paper = paper_settings(cfg, schema)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        all_exps, _ = included_experiments(cfg, paper, schema)
        named = resolve_experiments({**cfg, "experiments": all_exps}, schema)
        experiments = seed_instances(named, cfg.get("seeds"), cfg.get("seed", 0))
        evaluation = evaluation_settings(cfg, schema)
        source = prompt_source(cfg, schema)
        if source["source"] == "file" and Path(source["path"]).is_file():
            prompt_chars, _ = _mean_chars(Path(source["path"]), key=lambda r: r.get("prompt", ""))
        else:
            prompt_chars = float(profiles["hub_prompt_chars"])
        principles = load_principles(cfg["principles"])
        exemplar_chars, _ = _mean_chars(Path(cfg["exemplars"]))
        probe = evaluation["probe"]
        probe_chars, n_probe = (_mean_chars(Path(probe["prompts"]), key=lambda r: r.get("prompt", ""))
                                if probe.get("prompts") else (0.0, 0))
        if probe.get("max_prompts") is not None:
            n_probe = min(n_probe, int(probe["max_prompts"]))  # the probe job answers the first N
        pairs = []
        validation = (cfg.get("defaults") or {}).get("early_stop", {}).get("validation")
        validation = validation or next((e["early_stop"].get("validation") for e in experiments.values()
                                         if e["early_stop"].get("validation")), None)
        if validation and str(validation).endswith(".jsonl") and Path(validation).is_file():
            for ln in Path(validation).read_text().splitlines():
                if ln.strip():
                    r = json.loads(ln)
                    pairs.append((len(r["prompt"]) + len(r["chosen"]), len(r["prompt"]) + len(r["rejected"])))
        # both views: the layout view's documents follow the distilled system prompt
        tasks = {**_task_sizes(workdir, list(evaluation["tasks"]), profiles,
                               len(principles.system_prompt) + profiles["layout_overhead_chars"]),
                 **_task_sizes(workdir, list(evaluation.get("raw_tasks") or []), profiles)}
    finally:
        os.chdir(cwd)
    return Setting(experiments=experiments, evaluation=evaluation, model=model_size(workdir, cfg, profiles),
                   prompt_chars=prompt_chars, principles_chars=len(principles.text()) + len(principles.self_id),
                   system_chars=len(principles.system_prompt), exemplar_chars=exemplar_chars,
                   probe_chars=probe_chars, n_probe=n_probe, validation_pairs=pairs, tasks=tasks,
                   judge_local=evaluation["judge"]["kind"] == "local", cfg=cfg)


# --------------------------------------------------------------------------- work per job

@dataclass
class Work:
    """What one job processes: tokens through the model, FLOPs, bytes it writes, and
    `requests` sent to an endpoint judge (its cost driver on this machine: no local FLOPs)."""
    tokens: float = 0.0
    flops: float = 0.0
    disk_bytes: float = 0.0
    requests: float = 0.0

    def driver(self, key: str) -> float:
        """What the calibration's line for fit key `key` is in: requests for the endpoint
        judge, FLOPs for every other rule."""
        return self.requests if key == ENDPOINT_JUDGE else self.flops


ENDPOINT_JUDGE = "judge_answers@endpoint"


def fit_key(job: Job, s: Setting) -> str:
    """The calibration line a job is priced on: its rule, or `rule@variant` where a setting
    changes what the job costs per FLOP: vLLM generation (an engine start, bf16 kernels),
    QLoRA training (4-bit weights dequantised every step) and an endpoint judge (HTTP
    requests to a served model, no local model). A variant the calibration has no line for
    falls back to its rule's (job_cost)."""
    exp = s.experiments.get(job.exp or "") or {}
    if job.rule == "generate_responses" and (exp.get("generation") or {}).get("backend") == "vllm":
        return "generate_responses@vllm"
    if job.rule == "train_model" and (exp.get("train") or {}).get("method") == "qlora":
        return "train_model@qlora"
    if job.rule == "judge_answers" and s.evaluation["judge"]["kind"] == "endpoint":
        return ENDPOINT_JUDGE
    return job.rule


def _round_prompts(exp: dict, k: int) -> int:
    from soft.config import round_sizes

    sizes = round_sizes(exp["prompt_budget"], exp["rounds"])
    return sizes[k - 1] if 1 <= k <= len(sizes) else 0


def job_work(job: Job, s: Setting, keep_fraction: float, chain_rounds: dict[str, int],
             kept: dict[tuple[str, int], int] | None = None) -> Work:
    """Tokens, FLOPs and bytes written by one job. `kept` (exp, round) -> answers the filter
    kept, when a finished run says; otherwise prompts x keep_fraction."""
    cpt = load_profiles()["chars_per_token"]
    n = s.model["params"]
    exp = s.experiments.get(job.exp or "")
    k = job.round
    rule = job.rule
    w = Work()
    if rule == "generate_responses" and exp:
        g = exp["generation"]
        prompts = _round_prompts(exp, k)
        shots = exp["icl"]["shots"]
        prompt_tokens = min((s.principles_chars + shots * s.exemplar_chars + s.prompt_chars) / cpt,
                            g.get("max_prompt_tokens") or 1e9)
        w.tokens = prompts * (prompt_tokens + g["max_new_tokens"])
        w.flops = 2 * n * w.tokens
        w.disk_bytes = prompts * (s.prompt_chars + g["max_new_tokens"] * cpt) * load_profiles()["record_overhead"]
    elif rule == "train_model" and exp:
        t = exp["train"]
        first = 1 if t.get("data") == "cumulative" else k
        examples = sum((kept or {}).get((job.exp, j), _round_prompts(exp, j) * keep_fraction)
                       for j in range(first, k + 1))
        answer = exp["generation"]["max_new_tokens"]
        per_example = min((s.system_chars + s.prompt_chars) / cpt + answer, t.get("max_length") or 1e9)
        w.tokens = examples * per_example * t["epochs"]
        w.flops = (8 if t.get("gradient_checkpointing", True) else 6) * n * w.tokens
        w.disk_bytes = n * s.model["dtype_bytes"]  # the merged round model
    elif rule == "evaluate_model":
        limit = s.evaluation.get("limit")
        for task in s.tasks.values():  # both views' tasks (load_setting)
            docs = sum(min(limit, d) if limit else d for d in task["subsets"].values())
            ctx = task["primer_chars"] + task["question_chars"]
            w.tokens += docs * task["choices"] * (ctx + task["choice_chars"]) / cpt
        w.flops = 2 * n * w.tokens
    elif rule == "validate_model":
        w.tokens = sum(a + b for a, b in s.validation_pairs) / cpt + 2 * len(s.validation_pairs) * s.system_chars / cpt
        w.flops = 2 * n * w.tokens
    elif rule == "probe_model":
        new = s.evaluation["probe"].get("max_new_tokens", 96)
        # generation, then one scoring pass over prompt + answer (answer entropy)
        w.tokens = s.n_probe * 2 * ((s.system_chars + s.probe_chars) / cpt + new)
        w.flops = 2 * n * w.tokens
        w.disk_bytes = s.n_probe * (s.probe_chars + new * cpt) * load_profiles()["record_overhead"]
    elif rule == "judge_answers" and exp:
        new = s.evaluation["probe"].get("max_new_tokens", 96)
        rounds = chain_rounds.get(job.exp, exp["rounds"])
        pairs = rounds * (2 if s.evaluation["judge"].get("reference") not in (None, exp["name"]) else 1)
        w.tokens = pairs * 2 * s.n_probe * (s.probe_chars / cpt + 2 * new)
        w.flops = 2 * n * w.tokens if s.judge_local else 0.0
        w.requests = 0.0 if s.judge_local else pairs * 2 * s.n_probe
    elif rule == "score_pool_difficulty" and exp:
        w.tokens = exp["prompt_budget"] * (s.system_chars + s.prompt_chars) / cpt
        w.flops = 2 * n * w.tokens
    elif rule == "score_round_difficulty" and exp:
        prompts = (kept or {}).get((job.exp, k), _round_prompts(exp, k) * keep_fraction)
        w.tokens = prompts * ((s.system_chars + s.prompt_chars) / cpt + exp["generation"]["max_new_tokens"])
        w.flops = 2 * n * w.tokens
    elif rule == "prepare_base_model":
        w.disk_bytes = n * s.model["dtype_bytes"]
    return w


# --------------------------------------------------------------------------- time and memory

def model_mb(s: Setting, device: dict) -> float:
    return s.model["params"] * device["weight_bytes"] / 2**20


def job_cost(job: Job, work: Work, s: Setting, device_name: str, profiles: dict, calibration: dict) -> dict:
    """Seconds and peak memory (MB) of one job on the device; `device_hours` counts the
    model rules on a GPU profile (the rest are CPU-hours on any profile)."""
    device = profiles["devices"][device_name]
    mb = model_mb(s, device)
    key = fit_key(job, s)
    fit = calibration["rules"].get(key) or calibration["rules"].get(job.rule)
    x = work.driver(key) if key in calibration["rules"] else work.flops
    on_gpu = device["kind"] == "gpu" and job.rule in MODEL_RULES and (job.rule != "judge_answers" or s.judge_local)
    if on_gpu:
        g = profiles["gpu_rules"][job.rule]
        seconds = g["startup_s"] + work.flops / (device["peak_flops"] * g["utilisation"])
        factor = profiles["gpu_memory_factor"].get(job.rule)
        gpu_mb = mb * factor if factor else 0.9 * device["memory_gb"] * 1024
        if job.rule == "train_model" and s.experiments.get(job.exp or "", {}).get("train", {}).get("method") == "qlora":
            gpu_mb = s.model["params"] * 0.55 / 2**20 * factor  # 4-bit NF4 weights + LoRA state
        peak_mb = profiles["gpu_host_overhead_mb"] + mb
        return {"seconds": seconds, "peak_mb": peak_mb, "gpu_mb": min(gpu_mb, device["memory_gb"] * 1024),
                "on_gpu": True}
    if job.rule == "judge_answers" and not s.judge_local and (device["kind"] == "gpu" or key not in calibration["rules"]):
        # a remote judge: the job waits on the endpoint, one request per answer pair and
        # order, at an assumed rate (this CPU's fitted line measured its own vLLM server)
        return {"seconds": profiles["light_rule_s"] + profiles["endpoint_request_s"] * work.requests,
                "peak_mb": 500.0, "gpu_mb": 0.0, "on_gpu": False}
    if fit:
        seconds = fit["a_s"] + fit["b_s"] * x
        peak_mb = fit["mem_a_mb"] + fit["mem_b"] * (mb if job.rule in MODEL_RULES else 0.0)
        if job.rule in MODEL_RULES and not fit["mem_b"] and key != ENDPOINT_JUDGE:
            # one model size in the calibration: a larger model adds copies of its weights
            peak_mb += max(0.0, mb - fit.get("model_mb", 0.0)) * profiles["cpu_memory_per_model_mb"]
        if device["kind"] == "gpu" and job.rule in MODEL_RULES:  # remote judge: no local model
            peak_mb = fit["mem_a_mb"]
    elif job.rule in MODEL_RULES:
        seconds = 30.0 + work.flops / calibration.get("cpu_flops", 100e9)
        peak_mb = 1000 + 3 * mb
    else:
        seconds, peak_mb = profiles["light_rule_s"], 300.0
    return {"seconds": max(seconds, 0.0), "peak_mb": peak_mb, "gpu_mb": 0.0, "on_gpu": False}


def chain_lengths(jobs: list[Job]) -> dict[str, int]:
    out: dict[str, int] = {}
    for j in jobs:
        if j.rule == "train_model" and j.exp:
            out[j.exp] = max(out.get(j.exp, 0), j.round or 0)
    return out


def forecast_jobs(jobs: list[Job], s: Setting, device: str, calibration: dict | None = None,
                  kept: dict | None = None, keep_fraction: float | None = None) -> list[dict]:
    """One row per job: rule, exp, round, tokens, seconds, peak memory, disk, done. Rounds
    not run yet train on prompts x keep_fraction answers (default: the calibration runs')."""
    profiles = load_profiles()
    if device not in profiles["devices"]:
        raise SoftError(f"--device {device!r}: known profiles are {', '.join(profiles['devices'])}")
    calibration = calibration if calibration is not None else load_calibration()
    keep = calibration.get("keep_fraction", 1.0) if keep_fraction is None else keep_fraction
    if not 0 < keep <= 1:
        raise SoftError(f"--keep-fraction {keep}: must be in (0, 1]")
    rounds = chain_lengths(jobs)
    rows = []
    for j in jobs:
        if j.rule in ("all", "paper"):
            continue
        w = job_work(j, s, keep, rounds, kept)
        c = job_cost(j, w, s, device, profiles, calibration)
        key = fit_key(j, s)
        rows.append({"rule": j.rule, "key": key, "exp": j.exp or "", "round": "" if j.round is None else j.round,
                     "tokens": w.tokens, "flops": w.flops, "x": w.driver(key), "seconds": c["seconds"], "peak_mb": c["peak_mb"],
                     "gpu_mb": c["gpu_mb"], "on_gpu": c["on_gpu"], "disk_bytes": w.disk_bytes,
                     "done": j.done, "benchmark": j.benchmark})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per rule, in order of first appearance, plus a `total` row."""
    out: dict[str, dict] = {}
    for r in rows:
        a = out.setdefault(r["rule"], {"rule": r["rule"], "jobs": 0, "jobs_left": 0, "tokens": 0.0, "hours": 0.0,
                                       "hours_left": 0.0, "peak_mem_gb": 0.0, "gpu_mem_gb": 0.0,
                                       "disk_gb": 0.0, "device": "gpu" if r["on_gpu"] else "cpu"})
        a["jobs"] += 1
        a["tokens"] += r["tokens"]
        a["hours"] += r["seconds"] / 3600
        a["peak_mem_gb"] = max(a["peak_mem_gb"], r["peak_mb"] / 1024)
        a["gpu_mem_gb"] = max(a["gpu_mem_gb"], r["gpu_mb"] / 1024)
        a["disk_gb"] += r["disk_bytes"] / 1e9
        if not r["done"]:
            a["jobs_left"] += 1
            a["hours_left"] += r["seconds"] / 3600
    rules = list(out.values())
    total = {"rule": "total", "device": "", **{k: sum(a[k] for a in rules) for k in
                                              ("jobs", "jobs_left", "tokens", "hours", "hours_left", "disk_gb")},
             "peak_mem_gb": max((a["peak_mem_gb"] for a in rules), default=0.0),
             "gpu_mem_gb": max((a["gpu_mem_gb"] for a in rules), default=0.0)}
    for key in ("gpu_hours", "cpu_hours"):
        total[key] = sum(a["hours"] for a in rules if a["device"] == key[:3])
    return rules + [total]


COLUMNS = ("rule", "device", "jobs", "jobs_left", "tokens", "hours", "hours_left", "peak_mem_gb", "gpu_mem_gb",
           "disk_gb")


def format_table(summary: list[dict], device: str) -> str:
    head = f"{'rule':<24} {'dev':>3} {'jobs':>5} {'left':>5} {'tokens':>10} {'hours':>9} {'h left':>9} " \
           f"{'peak GB':>8} {'GPU GB':>7} {'disk GB':>8}"
    lines = [f"forecast for device profile {device} ({load_profiles()['devices'][device]['description']})",
             head, "-" * len(head)]
    for a in summary:
        if a["rule"] == "total":
            lines.append("-" * len(head))
        lines.append(f"{a['rule']:<24} {a['device']:>3} {a['jobs']:>5} {a['jobs_left']:>5} {a['tokens']:>10.3g} "
                     f"{a['hours']:>9.3f} {a['hours_left']:>9.3f} {a['peak_mem_gb']:>8.2f} {a['gpu_mem_gb']:>7.1f} "
                     f"{a['disk_gb']:>8.2f}")
    t = summary[-1]
    lines.append(f"GPU-hours {t['gpu_hours']:.2f}, CPU-hours {t['cpu_hours']:.2f}, disk written {t['disk_gb']:.1f} GB"
                 f" (left: {t['jobs_left']} jobs, {t['hours_left']:.2f} h)")
    return "\n".join(lines)


def write_outputs(rows: list[dict], summary: list[dict], out_dir: Path, device: str) -> list[Path]:
    """forecast.csv (per rule + total), forecast_jobs.csv (per job) and forecast.png (hours
    by rule and by round)."""
    from soft.io import atomic_path

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "forecast.csv", out_dir / "forecast_jobs.csv", out_dir / "forecast.png"]
    with atomic_path(paths[0]) as tmp, open(tmp, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=COLUMNS + ("gpu_hours", "cpu_hours"), extrasaction="ignore")
        wr.writeheader()
        for a in summary:
            wr.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in a.items()})
    job_cols = ("rule", "exp", "round", "tokens", "flops", "seconds", "peak_mb", "gpu_mb", "disk_bytes", "done")
    with atomic_path(paths[1]) as tmp, open(tmp, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=job_cols, extrasaction="ignore")
        wr.writeheader()
        for r in rows:
            wr.writerow({k: (round(r[k], 3) if isinstance(r[k], float) else r[k]) for k in job_cols})
    plot(rows, summary, paths[2], device)
    return paths


def plot(rows: list[dict], summary: list[dict], path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from soft.io import atomic_path

    rules = [a for a in summary if a["rule"] != "total" and a["hours"] > 0]
    by_round: dict[str, float] = {}
    for r in rows:
        key = "setup / other" if r["round"] == "" else f"round {r['round']}"
        by_round[key] = by_round.get(key, 0.0) + r["seconds"] / 3600
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.barh([a["rule"] for a in rules], [a["hours"] for a in rules],
             color=["tab:red" if a["device"] == "gpu" else "tab:blue" for a in rules])
    ax1.set_xlabel("hours (red: GPU-hours, blue: CPU-hours)")
    ax1.set_title("by rule")
    keys = sorted(by_round, key=lambda x: (x == "setup / other", int(x.split()[-1]) if x[0] == "r" else 0))
    ax2.bar(keys, [by_round[k] for k in keys], color="tab:gray")
    ax2.set_ylabel("hours")
    ax2.set_title("by round")
    fig.suptitle(f"forecast, device profile {device}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


# --------------------------------------------------------------------------- runs: calibrate and validate

def read_benchmark(path: Path) -> dict | None:
    """Snakemake's benchmark TSV: the first data row's s and max_rss (MB)."""
    if not path.is_file():
        return None
    rows = list(csv.DictReader(path.read_text().splitlines(), delimiter="\t"))
    if not rows:
        return None
    rss = rows[0].get("max_rss", "NA")
    return {"s": float(rows[0]["s"]), "max_rss": float(rss) if rss not in ("NA", "-", "") else None}


def kept_counts(run: Path) -> dict[tuple[str, int], int]:
    """Answers the filter kept per (exp, round), from the run's data/round{k}.jsonl files."""
    out = {}
    for p in (run / "results").glob("*/data/round*.jsonl"):
        m = re.fullmatch(r"round(\d+)\.jsonl", p.name)
        if m:
            out[(p.parts[-3], int(m.group(1)))] = sum(1 for ln in p.read_text().splitlines() if ln.strip())
    return out


def keep_fraction_of(run: Path, setting: Setting) -> tuple[int, int] | None:
    """(kept, generated) over the run's rounds, when its filter is the real one (a filter
    told to accept everything says nothing of what a real run keeps)."""
    kept = generated = 0
    for (exp, k), n in kept_counts(run).items():
        cfg = setting.experiments.get(exp)
        if cfg is None or not cfg["filter"].get("require_self_id"):
            continue
        kept += n
        generated += _round_prompts(cfg, k)
    return (kept, generated) if generated else None


def measured_rows(run: Path, configfile: Path | None, targets: list[str] | None = None,
                  calibration: dict | None = None) -> list[dict]:
    """The run's jobs (its own decisions) with the cost model's rows and the measured
    seconds and peak RSS of each job that has a benchmark file."""
    s = load_setting(run, configfile)
    jobs = plan_jobs(run, configfile, targets)
    rows = forecast_jobs(jobs, s, "cpu-here", calibration, kept=kept_counts(run))
    for r in rows:
        m = read_benchmark(run / r["benchmark"]) if r["benchmark"] else None
        r["measured_s"] = m["s"] if m else None
        r["measured_rss"] = m["max_rss"] if m else None
        r["model_mb"] = model_mb(s, load_profiles()["devices"]["cpu-here"]) if r["rule"] in MODEL_RULES else 0.0
    return rows


MIN_SPREAD = 2.0  # the work per job must span this factor before the data fit a slope


def fit_rule(points: list[tuple[float, float]] | list[tuple[float, float, float]],
             prior_b: float | None = None) -> tuple[float, float]:
    """y = n a + b x with a, b >= 0 (scipy's non-negative least squares), over points
    (x, y) of one job or (x, y, n) of n jobs together (a stage's totals: x the jobs' summed
    FLOPs, y their summed seconds). When the points cannot tell a from b (the work per job
    spans less than MIN_SPREAD: at 1.3x, run-to-run noise of a fifth decides the slope, and
    once gave generation no slope at all), b is `prior_b` (or 0) and a what is left, so the
    totals still match."""
    import numpy as np
    from scipy.optimize import nnls

    ns = np.array([p[2] if len(p) > 2 else 1.0 for p in points], dtype=float)
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    per_job = xs / ns
    if per_job.min() <= 0 or per_job.max() / per_job.min() < MIN_SPREAD:
        b = prior_b or 0.0
        if b * xs.sum() > ys.sum():  # the prior alone overshoots: all of it is work
            return 0.0, float(ys.sum() / xs.sum())
        return float((ys.sum() - b * xs.sum()) / ns.sum()), b
    scale = xs.max() or 1.0
    # Plain (unweighted) residuals: with a free intercept they sum to zero, so a rule's
    # forecast total matches its measured total on the calibration runs; the forecast is
    # judged on totals per rule and per run.
    A = np.stack([ns, xs / scale], axis=1)
    (a, b), _ = nnls(A, ys)
    return float(a), float(b / scale)


def read_stage_totals(path: Path) -> dict[str, dict]:
    """A CSV of measured totals per rule (rule, jobs, seconds, peak_rss_mb[, source]), for
    a run whose per-job benchmark files are not at hand (a timing reported in the README)."""
    out = {}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                out[row["rule"]] = {"jobs": int(row["jobs"]), "seconds": float(row["seconds"]),
                                    "peak_rss_mb": float(row["peak_rss_mb"]) if row.get("peak_rss_mb") else None,
                                    "source": row.get("source", "")}
            except (KeyError, ValueError) as e:
                raise SoftError(f"{path}:{i}: expected rule, jobs, seconds, peak_rss_mb ({e})") from None
    return out


def chain_folder(spec_path: Path, folder: Path) -> tuple[Path, Path | None, list[str]]:
    """A run folder holding only what fixes a measured run's chain (its JSON spec next to
    the stage totals' CSV): the config (config/config.yaml with the spec's
    `config_overrides`), each chain's decisions and the answers kept per round, with the
    repository's workflow linked in. Returns the folder, its config file and the targets."""
    from soft.config import deep_merge

    spec = json.loads(spec_path.read_text())
    for name in ("config", "Snakefile", "rules", "workflow", "envs"):
        (folder / name).symlink_to(REPO / name)
    configfile = None
    if spec.get("config", "config/config.yaml") != "config/config.yaml":
        configfile = folder / spec["config"]  # an ablation config, through the linked config/
    if spec.get("config_overrides"):
        cfg = deep_merge(yaml.safe_load((REPO / "config/config.yaml").read_text()), spec["config_overrides"])
        if "experiments" in spec["config_overrides"]:
            cfg["experiments"] = spec["config_overrides"]["experiments"]
        configfile = folder / "forecast_config.yaml"
        configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    for exp, decisions in spec.get("decisions", {}).items():
        for k, go_on in enumerate(decisions, start=1):
            path = folder / f"results/{exp}/validation/round{k}_decision.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"continue": go_on}))
    for exp, counts in spec.get("kept", {}).items():
        for k, n in enumerate(counts, start=1):
            path = folder / f"results/{exp}/data/round{k}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n" * n)
    return folder, configfile, list(spec.get("targets", []))


def record_run(run: Path, configfile: Path | None, out_csv: Path, about: str,
               targets: list[str] | None = None, experiments: list[str] | None = None) -> tuple[Path, Path]:
    """A finished run kept as what validate_totals reads: per-rule totals of its benchmark
    files (CSV) and its chain (config, decisions, kept answers per round: the .json of the
    same name), so the validation can be rerun after the run folder is gone."""
    rows = [r for r in measured_rows(run, configfile, targets, calibration={"rules": {}})
            if r["measured_s"] is not None and r["rule"] in MODEL_RULES
            and (not experiments or r["exp"] in experiments)]
    totals: dict[str, dict] = {}
    for r in rows:
        t = totals.setdefault(r["rule"], {"jobs": 0, "seconds": 0.0, "peak": 0.0})
        t["jobs"] += 1
        t["seconds"] += r["measured_s"]
        t["peak"] = max(t["peak"], r["measured_rss"] or 0.0)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["rule", "jobs", "seconds", "peak_rss_mb", "source"])
        for rule, t in sorted(totals.items()):
            w.writerow([rule, t["jobs"], round(t["seconds"], 1), round(t["peak"]),
                        f"the sum of the run's benchmarks/ files ({about})"])
    decisions: dict[str, list[bool]] = {}
    for p in sorted((run / "results").glob("*/validation/round*_decision.json")):
        k = int(re.fullmatch(r"round(\d+)_decision\.json", p.name).group(1))
        decisions.setdefault(p.parts[-3], []).append((k, bool(json.loads(p.read_text())["continue"])))
    kept: dict[str, list[int]] = {}
    for (exp, k), n in sorted(kept_counts(run).items()):
        kept.setdefault(exp, []).append(n)
    # the run's own resolved config, whole: the repository's config/config.yaml moves on,
    # and chain_folder merges this over whatever it has become
    from soft.config import extend_config

    here = Path.cwd()
    os.chdir(run)  # `extends` paths are relative to the run folder
    try:
        resolved = extend_config(yaml.safe_load((configfile or run / "config/config.yaml").read_text()))
    finally:
        os.chdir(here)
    spec = {"about": about, "config": "config/config.yaml", "config_overrides": resolved,
            "targets": list(targets or []), **({"experiments": list(experiments)} if experiments else {}),
            "decisions": {e: [go for _, go in sorted(v)] for e, v in sorted(decisions.items())},
            "kept": kept}
    out_json = out_csv.with_suffix(".json")
    out_json.write_text(json.dumps(spec, indent=1) + "\n")
    return out_csv, out_json


def stage_points(run: Path, configfile: Path | None, totals: dict[str, dict],
                 targets: list[str] | None = None, calibration: dict | None = None,
                 experiments: list[str] | None = None) -> dict[str, dict]:
    """Per rule of `totals`, keyed by its jobs' fit key (fit_key: a rule whose jobs ran two
    variants cannot be split from totals, and is refused): the forecast's jobs summed over
    the run's jobs of that rule (the run folder holds the decisions and kept answers that
    fix its chain), only those of `experiments` when given (the totals of a run that
    reused other chains' jobs)."""
    rows = measured_rows(run, configfile, targets, calibration={"rules": {}} if calibration is None else calibration)
    if experiments:
        rows = [r for r in rows if r["exp"] in experiments]
    out = {}
    for rule, t in totals.items():
        mine = [r for r in rows if r["rule"] == rule]
        if len(mine) != t["jobs"]:
            raise SoftError(f"stage totals for {rule}: {t['jobs']} jobs measured, but the run's DAG has "
                            f"{len(mine)}")
        keys = sorted({r["key"] for r in mine}) or [rule]
        if len(keys) > 1:
            raise SoftError(f"stage totals for {rule}: its jobs ran as {', '.join(keys)}, which one total "
                            f"cannot separate; record the run with --experiment per variant")
        out[keys[0]] = {"x": sum(r["x"] for r in mine), "model_mb": mine[0]["model_mb"] if mine else 0.0,
                     "s": t["seconds"], "jobs": t["jobs"], "max_rss": t["peak_rss_mb"], "source": t["source"],
                     "forecast_s": sum(r["seconds"] for r in mine),
                     "forecast_peak_mb": max((r["peak_mb"] for r in mine), default=0.0)}
    return out


def calibrate(runs: list[tuple[Path, Path | None]], out: Path = CALIBRATION_FILE,
              totals: list[Path] = ()) -> dict:
    """Fit seconds = a + b FLOPs and peak RSS = a + b x model MB per rule over the runs'
    benchmark files (and stage totals of runs measured as a whole), and write the fit with
    its data points."""
    points: dict[str, list[dict]] = {}
    kept = generated = 0
    for run, configfile in runs:
        rows = measured_rows(run, configfile, calibration={"rules": {}})
        kf = keep_fraction_of(run, load_setting(run, configfile))
        if kf:
            kept, generated = kept + kf[0], generated + kf[1]
        for r in rows:
            if r["measured_s"] is not None:
                points.setdefault(r["key"], []).append(
                    {"run": run.name, "exp": r["exp"], "round": r["round"], "x": r["x"],
                     "model_mb": r["model_mb"], "s": r["measured_s"], "max_rss": r["measured_rss"]})
    for csv_path in totals:
        with tempfile.TemporaryDirectory(prefix="soft_chain_") as tmp:
            run, configfile, targets = chain_folder(csv_path.with_suffix(".json"), Path(tmp))
            kf = keep_fraction_of(run, load_setting(run, configfile))
            if kf:
                kept, generated = kept + kf[0], generated + kf[1]
            experiments = json.loads(csv_path.with_suffix(".json").read_text()).get("experiments")
            for rule, p in stage_points(run, configfile, read_stage_totals(csv_path), targets,
                                        experiments=experiments).items():
                points.setdefault(rule, []).append({"run": csv_path.name, **p})
    rules = {}
    prior_b = 1.0 / load_profiles()["cpu_prior_flops"]
    for rule, pts in sorted(points.items()):
        # the prior splits start-up from work on a FLOP line; the endpoint judge's is in requests
        a, b = fit_rule([(p["x"], p["s"], p.get("jobs", 1)) for p in pts],
                        prior_b if rule.split("@")[0] in MODEL_RULES and rule != ENDPOINT_JUDGE else None)
        mem = [(p["model_mb"], p["max_rss"]) for p in pts if p["max_rss"] is not None]
        # peak memory: the largest seen above the line through the points, so a forecast
        # limit is not below a measured peak
        ma, mb_ = fit_rule(mem) if mem else (500.0, 0.0)
        if mem:
            ma = max(ma, max(y - mb_ * x for x, y in mem))
        rules[rule] = {"a_s": round(a, 4), "b_s": float(f"{b:.6g}"),
                       "per": "request" if rule == ENDPOINT_JUDGE else "FLOP", "mem_a_mb": round(ma, 1),
                       "mem_b": round(mb_, 4), "model_mb": round(max(x for x, _ in mem), 1) if mem else 0.0,
                       "points": len(pts)}
    result = {"command": "python -m soft.tools.forecast calibrate " + " ".join(
                  [f"--run {r}" + (f" --configfile {c}" if c else "") for r, c in runs]
                  + [f"--totals {t}" for t in totals]),
              "keep_fraction": round(kept / generated, 4) if generated else 1.0,
              "keep_fraction_from": f"{kept} of {generated} answers kept in the runs' real-filter rounds",
              "rules": rules, "points": points}
    from soft.io import write_json

    write_json(out, result)
    return result


def validate(run: Path, configfile: Path | None = None, calibration: dict | None = None) -> tuple[list[dict], dict]:
    """Forecast (cpu-here, the run's chain lengths) against the run's benchmark files: per
    rule and in total, the relative error in seconds."""
    rows = [r for r in measured_rows(run, configfile, calibration=calibration) if r["measured_s"] is not None]
    per_rule: dict[str, dict] = {}
    for r in rows:
        a = per_rule.setdefault(r["key"], {"rule": r["key"], "jobs": 0, "forecast_s": 0.0, "measured_s": 0.0,
                                            "forecast_peak_mb": 0.0, "measured_peak_mb": 0.0})
        a["jobs"] += 1
        a["forecast_s"] += r["seconds"]
        a["measured_s"] += r["measured_s"]
        a["forecast_peak_mb"] = max(a["forecast_peak_mb"], r["peak_mb"])
        a["measured_peak_mb"] = max(a["measured_peak_mb"], r["measured_rss"] or 0.0)
    return _with_errors(list(per_rule.values()))


def validate_totals(csv_path: Path, calibration: dict | None = None) -> tuple[list[dict], dict]:
    """validate() for a run measured as stage totals (config/forecast/*.csv + .json)."""
    with tempfile.TemporaryDirectory(prefix="soft_chain_") as tmp:
        run, configfile, targets = chain_folder(csv_path.with_suffix(".json"), Path(tmp))
        experiments = json.loads(csv_path.with_suffix(".json").read_text()).get("experiments")
        points = stage_points(run, configfile, read_stage_totals(csv_path), targets,
                              calibration if calibration is not None else load_calibration(), experiments)
    table = [{"rule": rule, "jobs": p["jobs"], "forecast_s": p["forecast_s"], "measured_s": p["s"],
              "forecast_peak_mb": p["forecast_peak_mb"], "measured_peak_mb": p["max_rss"] or 0.0}
             for rule, p in points.items()]
    return _with_errors(table)


def _with_errors(table: list[dict]) -> tuple[list[dict], dict]:
    total = {"rule": "total", "jobs": sum(a["jobs"] for a in table),
             "forecast_s": sum(a["forecast_s"] for a in table), "measured_s": sum(a["measured_s"] for a in table),
             "forecast_peak_mb": max((a["forecast_peak_mb"] for a in table), default=0.0),
             "measured_peak_mb": max((a["measured_peak_mb"] for a in table), default=0.0)}
    for a in table + [total]:
        a["error"] = (a["forecast_s"] - a["measured_s"]) / a["measured_s"] if a["measured_s"] else float("nan")
    return table, total


def format_validation(table: list[dict], total: dict, run: Path) -> str:
    lines = [f"forecast (cpu-here) vs measured, {run}",
             f"{'rule':<24} {'jobs':>5} {'forecast s':>11} {'measured s':>11} {'error':>8} "
             f"{'fc peak MB':>11} {'peak MB':>8}"]
    for a in table + [total]:
        lines.append(f"{a['rule']:<24} {a['jobs']:>5} {a['forecast_s']:>11.1f} {a['measured_s']:>11.1f} "
                     f"{a['error']:>+8.1%} {a['forecast_peak_mb']:>11.0f} {a['measured_peak_mb']:>8.0f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- SLURM limits

def slurm_limits(rows: list[dict], safety: float = 2.0, min_runtime_min: int = 5,
                 min_mem_mb: int = 1000, mem_safety: float | None = None) -> dict[str, dict]:
    """Per model rule: runtime (minutes) and mem_mb = the largest forecast job x safety
    (mem_safety for memory, if given), rounded up (SLURM counts whole minutes)."""
    mem_safety = safety if mem_safety is None else mem_safety
    out: dict[str, dict] = {}
    for r in rows:
        if r["rule"] not in MODEL_RULES:
            continue
        a = out.setdefault(r["rule"], {"runtime": min_runtime_min, "mem_mb": min_mem_mb})
        a["runtime"] = max(a["runtime"], math.ceil(r["seconds"] * safety / 60))
        a["mem_mb"] = max(a["mem_mb"], int(math.ceil(r["peak_mb"] * mem_safety / 100) * 100))
    return out


def slurm_profile(base: dict, limits: dict[str, dict]) -> dict:
    """The SLURM profile with each rule's runtime and mem_mb from the forecast (the rest of
    each rule's set-resources, gpu and gpu_model, kept)."""
    import copy

    prof = copy.deepcopy(base)
    sr = prof.setdefault("set-resources", {})
    for rule, lim in limits.items():
        sr.setdefault(rule, {}).update(runtime=lim["runtime"], mem_mb=lim["mem_mb"])
    return prof


# --------------------------------------------------------------------------- CLI

def _forecast(args) -> int:
    workdir = Path(args.directory)
    configfile = Path(args.configfile) if args.configfile else None
    s = load_setting(workdir, configfile)
    jobs = plan_jobs(workdir, configfile, args.targets)
    rows = forecast_jobs(jobs, s, args.device, keep_fraction=args.keep_fraction)
    summary = summarise(rows)
    keep = args.keep_fraction if args.keep_fraction is not None else load_calibration().get("keep_fraction", 1.0)
    print(f"model {s.model['name']}: {s.model['params'] / 1e9:.3g} B parameters; "
          f"{len(s.experiments)} experiment instances; training on {keep:.0%} of each round's prompts "
          f"(--keep-fraction); calibration {CALIBRATION_FILE.name}")
    print(format_table(summary, args.device))
    if args.out:
        for p in write_outputs(rows, summary, Path(args.out), args.device):
            print(f"wrote {p}")
    return 0


def _slurm(args) -> int:
    workdir = Path(args.directory)
    configfile = Path(args.configfile) if args.configfile else None
    s = load_setting(workdir, configfile)
    rows = forecast_jobs(plan_jobs(workdir, configfile, args.targets), s, args.device,
                         keep_fraction=args.keep_fraction if args.keep_fraction is not None else 1.0)
    limits = slurm_limits(rows, args.safety)
    base = yaml.safe_load((Path(args.base) / "config.yaml").read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"# Generated by: python -m soft.tools.forecast slurm-profile --device {args.device} --safety {args.safety}"
              f"{' --keep-fraction ' + str(args.keep_fraction) if args.keep_fraction is not None else ''}"
              f"{' --configfile ' + str(configfile) if configfile else ''} --base {args.base}\n"
              f"# runtime (minutes) and mem_mb per rule = the largest forecast job x {args.safety}.\n")
    from soft.io import write_text

    write_text(out / "config.yaml", header + yaml.safe_dump(slurm_profile(base, limits), sort_keys=False))
    for rule, lim in sorted(limits.items()):
        print(f"{rule:<24} runtime {lim['runtime']:>6} min   mem_mb {lim['mem_mb']:>7}")
    print(f"wrote {out / 'config.yaml'}")
    return 0


def _calibrate(args) -> int:
    runs = [(Path(r), Path(c) if c else None) for r, c in zip(args.run, args.configfile + [None] * len(args.run))]
    result = calibrate(runs, Path(args.out), [Path(t) for t in args.totals])
    for rule, f in result["rules"].items():
        print(f"{rule:<28} s = {f['a_s']:.2f} + {f['b_s']:.3g} x {f['per']}s   "
              f"peak MB = {f['mem_a_mb']:.0f} + {f['mem_b']:.2f} x model MB   ({f['points']} points)")
    print(f"keep fraction {result['keep_fraction']} ({result['keep_fraction_from']}); wrote {args.out}")
    return 0


def _validate(args) -> int:
    calibration = load_calibration(Path(args.calibration)) if args.calibration else None
    if args.totals:
        run = Path(args.totals)
        table, total = validate_totals(run, calibration)
    elif args.run:
        run = Path(args.run)
        table, total = validate(run, Path(args.configfile) if args.configfile else None, calibration)
    else:
        raise SoftError("validate needs --run RUN_DIR or --totals CSV")
    print(format_validation(table, total, run))
    bad = [a["rule"] for a in table + [total] if abs(a["error"]) > args.max_error]
    if bad:
        print(f"error above {args.max_error:.0%}: {', '.join(bad)}")
    return 1 if abs(total["error"]) > args.max_error else 0


def _record(args) -> int:
    run = Path(args.run)
    configfile = run / args.configfile if args.configfile else None
    for path in record_run(run, configfile, Path(args.out), args.about, experiments=args.experiment or None):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("calibrate", "validate", "record", "slurm-profile", "forecast")
    command = argv.pop(0) if argv and argv[0] in commands else "forecast"
    p = argparse.ArgumentParser(prog=f"python -m soft.tools.forecast {command}", description=__doc__.split("\n")[0])
    if command in ("forecast", "slurm-profile"):
        p.add_argument("--configfile", help="the config (default: config/config.yaml of --directory)")
        p.add_argument("--directory", "-d", default=".", help="the working folder (default: here)")
        p.add_argument("--device", default="cpu-here", choices=list(load_profiles()["devices"]))
        p.add_argument("targets", nargs="*", help="Snakemake targets (default: the default target)")
        p.add_argument("--keep-fraction", type=float, default=None,
                       help="share of each round's prompts the filter keeps for training (forecast default: "
                            "the calibration runs'; slurm-profile default: 1, every prompt, so no limit is short)")
    if command == "forecast":
        p.add_argument("--out", help="folder for forecast.csv, forecast_jobs.csv and forecast.png")
    if command == "slurm-profile":
        p.add_argument("--base", default=str(REPO / "profiles/slurm"), help="the profile to start from")
        p.add_argument("--safety", type=float, default=2.0, help="limit = forecast x this")
        p.add_argument("--out", required=True, help="folder for the generated profile's config.yaml")
    if command == "calibrate":
        p.add_argument("--run", action="append", default=[], help="a finished run folder (repeatable)")
        p.add_argument("--configfile", action="append", default=[], help="its config, per --run, in order")
        p.add_argument("--totals", action="append", default=[], metavar="CSV",
                       help="stage totals (rule, jobs, seconds, peak_rss_mb) of a run measured as a whole; "
                            "its chain (decisions, kept answers, config) in the .json of the same name")
        p.add_argument("--out", default=str(CALIBRATION_FILE))
    if command == "validate":
        p.add_argument("--run", help="a finished run folder (its benchmarks/ files)")
        p.add_argument("--configfile")
        p.add_argument("--totals", help="or a run measured as stage totals (config/forecast/*.csv)")
        p.add_argument("--calibration", help="calibration file (default: the checked-in one)")
        p.add_argument("--max-error", type=float, default=0.30)
    if command == "record":
        p.add_argument("--run", required=True, help="a finished run folder (its benchmarks/ files)")
        p.add_argument("--configfile", help="its config, relative to the run folder")
        p.add_argument("--about", required=True, help="what run this is (commit, date, machine)")
        p.add_argument("--out", required=True, metavar="CSV", help="config/forecast/<name>.csv (and .json)")
        p.add_argument("--experiment", action="append", default=[],
                       help="only this experiment's jobs (repeatable; e.g. the new chain of an ablation "
                            "that reused the grid's)")
    args = p.parse_args(argv)
    try:
        return {"forecast": _forecast, "slurm-profile": _slurm, "calibrate": _calibrate,
                "validate": _validate, "record": _record}[command](args)
    except SoftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
