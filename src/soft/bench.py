"""Performance benchmark: each figure next to this machine's own fp32 matmul rate.

    python -m soft.bench                    # SmolLM2 base model, writes results/bench/
    python -m soft.bench --quick --model D  # seconds, any small model folder (the test uses this)

Sections: matmul FLOP/s (the denominator); generation (batched with and without the
shared-prefix cache vs one prompt at a time); training; lm-eval scoring (TruthfulQA MC1
and HHH, lm-eval's stock hf class vs soft-hf-cached, same documents); workflow overhead
of a finished run (sum of the jobs' times from benchmarks/ vs the run's wall time) and the
dry-run time of a 3 x 50-round grid. Each target is printed as met, not met, or not
measured (with why). FLOP counts: 2 x parameters per token processed (forward), 4 x for
LoRA training (forward + activation gradients, frozen weights), 6 x for full training.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from soft.io import write_json, write_text

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = "resources/models/smollm2-135m-instruct"


def matmul_flops(n: int, repeats: int = 3) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def n_params_on_disk(model_dir: str) -> int:
    """Parameter count from the safetensors headers, without loading the model again."""
    import math

    from safetensors import safe_open

    total = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return total


def bench_generation(model_dir: str, n_prompts: int, max_new_tokens: int, batch_size: int) -> dict:
    from soft.generate import GenerationSettings, encode_split, generate_hf, plan_requests, shared_prefix
    from soft.icl import IclSettings
    from soft.models import load_causal_lm, load_tokenizer
    from soft.principles import load_exemplars, load_principles
    from soft.records import read_prompts

    principles = load_principles(REPO / "config/principles.yaml")
    prompts = read_prompts(REPO / "config/prompts.jsonl")[:n_prompts]
    texts = [r["text"] for r in plan_requests(prompts, principles, load_exemplars(REPO / "config/exemplars.jsonl"),
                                              IclSettings("random", 2, None), 0)]
    tok, model = load_tokenizer(model_dir), load_causal_lm(model_dir).eval()
    params = n_params(model)
    prefix_ids, rests = encode_split(tok, texts, shared_prefix(texts))
    # Greedy, so the three runs write the same tokens and differ only in how they compute.
    out = {}
    for name, batch, reuse in (("batched_prefix_cache", batch_size, True), ("batched", batch_size, False),
                               ("one_at_a_time", 1, False)):
        settings = GenerationSettings(temperature=0.0, max_new_tokens=max_new_tokens, batch_size=batch,
                                      max_prompt_tokens=8192)
        t = time.perf_counter()
        answers = generate_hf(model, tok, texts, settings, seed=0, reuse_prefix=reuse)
        dt = time.perf_counter() - t
        new = sum(len(tok(a, add_special_tokens=False).input_ids) for a in answers)
        prompt_tokens = sum(len(r) for r in rests) + len(prefix_ids) * (1 if reuse else len(texts))
        out[name] = {"seconds": round(dt, 2), "new_tokens": new, "new_tok_per_s": round(new / dt, 2),
                     "flops": 2 * params * (prompt_tokens + new) / dt}
    out["params"] = params
    out["prompts"] = len(texts)
    out["prefix_tokens"] = len(prefix_ids)
    return out


def bench_training(model_dir: str, n_examples: int, tmp: Path) -> dict:
    from transformers import AutoTokenizer

    from soft.principles import load_principles
    from soft.records import read_prompts
    from soft.train import train_model

    principles = load_principles(REPO / "config/principles.yaml")
    prompts = read_prompts(REPO / "config/prompts.jsonl")[:n_examples]
    records = [{"id": p["id"], "prompt": p["prompt"], "round": 1, "seed": 0, "exemplar_ids": [],
                "response": "Here is a careful, step-by-step answer to your question. " * 4} for p in prompts]
    cfg = {"init": "previous", "data": "current", "method": "lora",
           "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
           "learning_rate": 2e-4, "lr_scheduler": "constant", "warmup_ratio": 0.0, "epochs": 1,
           "batch_size": 4, "grad_accum": 1, "max_length": 512, "save_steps": 0}
    tok = AutoTokenizer.from_pretrained(model_dir)
    tokens = sum(len(tok.apply_chat_template(
        [{"role": "system", "content": principles.system_prompt}, {"role": "user", "content": r["prompt"]},
         {"role": "assistant", "content": r["response"]}], tokenize=True)) for r in records)
    t = time.perf_counter()
    train_model(records, model_dir, tmp / "model", principles, cfg, 0, {}, tmp / "work")
    dt = time.perf_counter() - t
    params = n_params_on_disk(model_dir)
    return {"seconds": round(dt, 2), "tokens": tokens, "flops": 4 * params * tokens / dt,
            "note": "includes model load, tokenisation and the LoRA merge and save"}


SCORING_TASKS = ("soft_truthfulqa_mc1", "soft_hhh")
SCORING_TOL = 1e-4  # largest |logprob sum| difference still called identical


def forward_flops(model, tokens: int, logit_rows: int) -> float:
    """Matmul FLOPs of running `tokens` tokens with logits at `logit_rows` of them:
    2 x (parameters - embedding lookup - output projection) per token, plus 2 x the
    output projection per logit row. With logits everywhere and tied embeddings (SmolLM2)
    this is the usual 2 x parameters x tokens."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    head_n = head.weight.numel() if head is not None else 0
    tied = head is not None and head.weight.data_ptr() == emb.data_ptr()
    body = n_params(model) - (0 if tied else emb.numel()) - head_n
    return 2.0 * body * tokens + 2.0 * head_n * logit_rows


def _scoring_lm(model_class: str, model_dir: str, batch_size: int):
    """An lm-eval model object whose `_loglikelihood_tokens` calls are timed and recorded:
    the seconds, the (logprob, is_greedy) answers, and the tokens the model ran (the stock
    class: one input per distinct context + continuation[:-1], as its collator does, with
    logits at every position; the cached class counts its own: each shared prefix once,
    then each request's rest, logits only where a continuation is scored)."""
    from lm_eval.models.huggingface import HFLM

    from soft.lm_eval_cached import CachedPrefixHFLM

    cls = CachedPrefixHFLM if model_class == "cached" else HFLM
    lm = cls(pretrained=model_dir, dtype="float32", batch_size=batch_size, device="cpu")
    lm.bench = {"seconds": 0.0, "answers": [], "tokens": 0, "logit_rows": 0}
    inner = lm._loglikelihood_tokens

    def timed(requests, *args, **kwargs):
        before = dict(getattr(lm, "scoring_stats", {}))
        t = time.perf_counter()
        out = inner(requests, *args, **kwargs)
        lm.bench["seconds"] += time.perf_counter() - t
        lm.bench["answers"] += list(out)
        if model_class == "cached":
            for k in ("tokens", "logit_rows"):
                lm.bench[k] += lm.scoring_stats[k] - before[k]
        else:
            keys = {tuple(ctx + cont[:-1]) for _, ctx, cont in requests}
            tokens = sum(min(len(k), lm.max_length) for k in keys)
            lm.bench["tokens"] += tokens
            lm.bench["logit_rows"] += tokens
        return out

    lm._loglikelihood_tokens = timed
    import torch

    with torch.no_grad():  # warm-up, so neither class pays the first call's set-up in its time
        lm.model(torch.arange(16).unsqueeze(0) % lm.model.config.vocab_size)
    return lm


def bench_scoring(model_dir: str, bench_dir: Path, limit: int, batch_size: int = 4) -> dict:
    """The stock lm-eval `hf` class vs soft-hf-cached on the same tasks and documents:
    requests/s (scoring time only: the model's loglikelihood calls), the ratio, whether
    the scores agree (every request's logprob sum within SCORING_TOL, the same greedy
    flags and the same accuracies) and the matmul FLOP rate (forward_flops of the tokens
    each class runs)."""
    import lm_eval

    from soft.evaluate import _set_offline, normalise_results, task_manager

    _set_offline()
    lms = {c: _scoring_lm(c, model_dir, batch_size) for c in ("hf", "cached")}
    params = n_params(lms["hf"].model)
    out: dict = {"params": params, "batch_size": batch_size, "limit": limit}
    totals = {c: [0.0, 0.0] for c in lms}  # matmul FLOPs, seconds
    for task in SCORING_TASKS:
        row: dict = {}
        answers, accs = {}, {}
        for c, lm in lms.items():
            lm.bench.update(seconds=0.0, answers=[], tokens=0, logit_rows=0)
            t = time.perf_counter()
            raw = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=task_manager(
                bench_dir, [task]), log_samples=False, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                fewshot_random_seed=0)
            wall = time.perf_counter() - t
            norm = normalise_results(raw, limit=limit, batch_size=batch_size)
            b = lm.bench
            n = len(b["answers"])
            flop = forward_flops(lm.model, b["tokens"], b["logit_rows"])
            totals[c][0] += flop
            totals[c][1] += b["seconds"]
            row[c] = {"seconds": round(b["seconds"], 3), "wall_s": round(wall, 2), "requests": n,
                      "requests_per_s": round(n / b["seconds"], 2), "tokens": b["tokens"],
                      "logit_rows": b["logit_rows"], "flops": flop / b["seconds"]}
            answers[c] = b["answers"]
            accs[c] = {k: v["acc"]["value"] for k, v in norm["tasks"].items() if "acc" in v}
            row["documents"] = sum(v for k, v in norm["n_samples"].items() if k not in norm["groups"])
        a, b = answers["hf"], answers["cached"]
        row["max_abs_logprob_diff"] = max((abs(x[0] - y[0]) for x, y in zip(a, b)), default=0.0)
        row["greedy_mismatches"] = sum(x[1] != y[1] for x, y in zip(a, b))
        row["acc"] = accs
        row["identical"] = (len(a) == len(b) and row["max_abs_logprob_diff"] <= SCORING_TOL
                            and row["greedy_mismatches"] == 0 and accs["hf"] == accs["cached"])
        rate = {c: row[c]["requests"] / lms[c].bench["seconds"] for c in lms}
        row["ratio"] = round(rate["cached"] / rate["hf"], 3)
        out[task] = row
    for c, (flop, secs) in totals.items():  # both tasks together: the default evaluation's mix
        out[c] = {"seconds": round(secs, 3), "flops": flop / secs}
    out["note"] = ("requests/s over the model's loglikelihood calls only (not task building); FLOP/s counts the "
                   "matmuls of the tokens each class runs, pads excluded (the cached class runs each shared "
                   "prefix once and projects onto the vocabulary only where a continuation is scored)")
    return out


def workflow_overhead(run_dir: Path) -> dict | None:
    """Sum of the jobs' wall times (benchmarks/*.tsv) vs the run's wall time (first and
    last timestamp of its newest Snakemake log); None when the folder holds no run."""
    import datetime as dt
    import re

    tsvs = sorted((run_dir / "benchmarks").rglob("*.tsv"))
    logs = sorted((run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not tsvs or not logs:
        return None
    jobs, max_rss = 0.0, 0.0
    for f in tsvs:
        row = f.read_text().splitlines()[-1].split("\t")
        jobs += float(row[0])
        max_rss = max(max_rss, float(row[2]) if row[2] != "NA" else 0.0)
    # the newest log of a complete run (a later `make bench` or dry run logs nothing useful)
    complete = [p for p in logs if "(100%) done" in p.read_text()]
    if not complete:
        return None
    log = complete[-1]
    stamps = re.findall(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", log.read_text(), re.M)
    if len(stamps) < 2:
        return None
    parse = lambda s: dt.datetime.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S %Y")  # noqa: E731
    wall = (parse(stamps[-1]) - parse(stamps[0])).total_seconds()
    return {"wall_s": wall, "sum_of_jobs_s": round(jobs, 1), "ratio": round(wall / jobs, 3),
            "max_job_rss_mb": max_rss, "jobs": len(tsvs), "log": log.name}


def dry_run_seconds(experiments: int, rounds: int) -> float:
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["experiments"] = {f"e{i}": {"rounds": rounds, "prompt_budget": rounds} for i in range(experiments)}
    cfg["defaults"]["prompt_budget"] = rounds
    # the whole static DAG: with the early stop on, a dry run plans only up to round 1's
    # decision (a checkpoint), which is not what this figure measures
    cfg["defaults"]["early_stop"] = {"validation": None}
    cfg["evaluation"]["judge"]["reference"] = None  # no single_round in this grid
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(yaml.safe_dump(cfg))
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                               "--configfile", str(path), "-n", "--cores", "2", "--quiet", "all"],
                              cwd=REPO, capture_output=True, text=True)
        dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError((proc.stdout + proc.stderr)[-2000:])
    return dt


def targets(r: dict) -> list[tuple[str, str, str]]:
    """(target, figure, met | not met | not measured)."""
    mm = r["matmul_flops"]
    out = []

    def add(name, value, ok, fmt):
        out.append((name, fmt.format(value) if value is not None else "–",
                    "not measured" if value is None else ("met" if ok else "not met")))

    g = r.get("generation")
    add("batched generation >= 8x one-at-a-time", g and g["batched_prefix_cache"]["new_tok_per_s"] /
        g["one_at_a_time"]["new_tok_per_s"], g and g["batched_prefix_cache"]["new_tok_per_s"] >= 8 *
        g["one_at_a_time"]["new_tok_per_s"], "{:.2f}x")
    add("batched generation >= 35% of matmul FLOP/s", g and g["batched"]["flops"] / mm,
        g and g["batched"]["flops"] >= 0.35 * mm, "{:.1%}")
    t = r.get("training")
    add("training >= 50% of matmul FLOP/s", t and t["flops"] / mm, t and t["flops"] >= 0.5 * mm, "{:.1%}")
    w = r.get("workflow")
    add("no job above 4 GB peak memory", w and w["max_job_rss_mb"], w and w["max_job_rss_mb"] <= 4096, "{:.0f} MB")
    add("default-run wall <= 1.10x sum of job times", w and w["ratio"], w and w["ratio"] <= 1.10, "{:.3f}x")
    d = r.get("dry_run_3x50_s")
    add("dry-run of 3 x 50 rounds < 5 s", d, d is not None and d < 5, "{:.1f} s")
    s = r.get("scoring")
    tqa = s and s.get("soft_truthfulqa_mc1")
    same = s and all(s[t]["identical"] for t in SCORING_TASKS if t in s)
    add("KV-cache scoring >= 2x stock hf requests/s with identical scores", tqa and tqa["ratio"],
        tqa and tqa["ratio"] >= 2 and same, "{:.2f}x")
    add("scoring >= 60% of matmul FLOP/s", s and s["cached"]["flops"] / mm, s and s["cached"]["flops"] >= 0.6 * mm,
        "{:.1%}")
    for name in ("safetensors load >= 10x faster than GGUF", "2x prompts costs <= 2.1x time"):
        add(name, None, False, "{}")
    return out


def markdown(r: dict) -> str:
    lines = ["# soft benchmark", "", f"matmul (fp32, n={r['matmul_n']}): {r['matmul_flops'] / 1e9:.1f} GFLOP/s", ""]
    g = r.get("generation")
    if g:
        lines += [f"## Generation ({g['prompts']} prompts, {g['params'] / 1e6:.0f}M parameters, "
                  f"shared prefix {g['prefix_tokens']} tokens)", "", "| mode | s | new tok/s | of matmul |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['seconds']} | {v['new_tok_per_s']} | {v['flops'] / r['matmul_flops']:.1%} |"
                  for k, v in g.items() if isinstance(v, dict)]
        lines.append("")
    s = r.get("scoring")
    if s:
        lines += [f"## lm-eval scoring (limit {s['limit']}, batch {s['batch_size']}; stock hf vs soft-hf-cached)", "",
                  "| task | class | requests | requests/s | tokens run | of matmul | ratio | identical |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in SCORING_TASKS:
            if t not in s:
                continue
            for c in ("hf", "cached"):
                v = s[t][c]
                lines.append(f"| {t} | {c} | {v['requests']} | {v['requests_per_s']} | {v['tokens']} | "
                             f"{v['flops'] / r['matmul_flops']:.1%} | "
                             f"{s[t]['ratio'] if c == 'cached' else ''} | "
                             f"{'yes' if s[t]['identical'] else 'no'} (max diff {s[t]['max_abs_logprob_diff']:.1e}) |")
        lines.append("")
    lines += ["## Targets", "", "| target | figure | status |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in r["targets"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="model folder (default: the embedded base model)")
    ap.add_argument("--benchmarks", default="resources/benchmarks", help="lm-eval task folder")
    ap.add_argument("--run-dir", default=".", help="a finished run's folder, for the workflow overhead")
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds); for the test")
    args = ap.parse_args(argv)
    import torch

    from soft.models import check_model_dir

    check_model_dir(args.model, need_tokenizer=True)
    torch.manual_seed(0)
    q = args.quick
    r: dict = {"matmul_n": 512 if q else 2048, "threads": torch.get_num_threads()}
    r["matmul_flops"] = matmul_flops(r["matmul_n"])
    print(f"matmul: {r['matmul_flops'] / 1e9:.1f} GFLOP/s", flush=True)
    r["generation"] = bench_generation(args.model, 3 if q else 16, 8 if q else 96, 8)
    print("generation:", json.dumps({k: v for k, v in r["generation"].items()}), flush=True)
    with tempfile.TemporaryDirectory() as d:
        r["training"] = bench_training(args.model, 4 if q else 32, Path(d))
        print("training:", json.dumps(r["training"]), flush=True)
        if Path(args.benchmarks).is_dir():
            r["scoring"] = bench_scoring(args.model, Path(args.benchmarks), 2 if q else 25)
            print("scoring:", json.dumps(r["scoring"]), flush=True)
    r["workflow"] = workflow_overhead(Path(args.run_dir))
    r["dry_run_3x50_s"] = None if q else round(dry_run_seconds(3, 50), 2)
    r["targets"] = targets(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", r)
    write_text(out / "bench.md", markdown(r))
    for name, value, status in r["targets"]:
        print(f"{status:>12}  {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
