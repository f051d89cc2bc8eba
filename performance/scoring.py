"""lm-eval scoring: the stock hf class vs soft-hf-cached on the same tasks and documents."""

from __future__ import annotations

import time
from pathlib import Path

from performance.matmul import n_params

# raw-view tasks: BIG-bench's TruthfulQA MC1 shares its 6-shot primer, the prefix cache's case
SCORING_TASKS = ("soft_bigbench_truthfulqa_mc1", "soft_hhh")
# Largest |logprob sum| difference still called identical: fp32 sums of a hundred or so
# log-probabilities, computed through differently shaped matrices, differ by about 1e-4
# (the accuracies must match as well).
SCORING_TOL = 1e-3


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

    from soft.evaluate.lm_eval_cached import CachedPrefixHFLM

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

    from soft.evaluate.harness import _set_offline, normalise_results, task_manager

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
