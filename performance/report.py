"""The results as targets (met, not met, not measured) and as bench.md."""

from __future__ import annotations

from performance.scoring import SCORING_TASKS


def targets(r: dict) -> list[tuple[str, str, str]]:
    """(target, figure, met | not met | not measured)."""
    mm = r["matmul_flops"]
    out = []

    def add(name, value, ok, fmt, why=None):
        out.append((name, fmt.format(value) if value is not None else (f"– ({why})" if why else "–"),
                    "not measured" if value is None else ("met" if ok else "not met")))

    g = r.get("generation")
    add("batched generation >= 8x one-at-a-time", g and g["batched_prefix_cache"]["new_tok_per_s"] /
        g["one_at_a_time"]["new_tok_per_s"], g and g["batched_prefix_cache"]["new_tok_per_s"] >= 8 *
        g["one_at_a_time"]["new_tok_per_s"], "{:.2f}x")
    add("batched generation >= 35% of matmul FLOP/s", g and g["batched"]["flops"] / mm,
        g and g["batched"]["flops"] >= 0.35 * mm, "{:.1%}")
    t = r.get("training")
    add("training >= 50% of matmul FLOP/s", t and t["flops"] / mm, t and t["flops"] >= 0.5 * mm, "{:.1%}")
    ld = r.get("load") or {}
    ok = ld.get("measured")
    add("safetensors load >= 10x faster than GGUF", ld["ratio"] if ok else None, ok and ld["ratio"] >= 10,
        "{:.2f}x", ld.get("why"))
    sc = r.get("scaling") or {}
    ok = sc.get("measured")
    add("2x prompts costs <= 2.1x time", sc["ratio"] if ok else None, ok and sc["ratio"] <= 2.1, "{:.3f}x",
        sc.get("why"))
    w = r.get("workflow")
    add("no job above 4 GB peak memory", w and w["max_job_rss_mb"], w and w["max_job_rss_mb"] <= 4096, "{:.0f} MB")
    add("default-run wall <= 1.10x sum of job times", w and w["ratio"], w and w["ratio"] <= 1.10, "{:.3f}x")
    d = r.get("dry_run_3x50_s")
    add("dry-run of 3 x 50 rounds < 5 s", d, d is not None and d < 5, "{:.1f} s")
    s = r.get("scoring")
    tqa = s and s.get("soft_bigbench_truthfulqa_mc1")
    same = s and all(s[t]["identical"] for t in SCORING_TASKS if t in s)
    add("KV-cache scoring >= 2x stock hf requests/s with identical scores", tqa and tqa["ratio"],
        tqa and tqa["ratio"] >= 2 and same, "{:.2f}x")
    add("scoring >= 60% of matmul FLOP/s", s and s["cached"]["flops"] / mm, s and s["cached"]["flops"] >= 0.6 * mm,
        "{:.1%}")
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
    t = r.get("training")
    if t:
        lines += [f"## LoRA training ({t['examples']} examples of {t['answer_tokens'][0]}-{t['answer_tokens'][1]} "
                  f"answer tokens, batch {t['batch_size']}, {t['epochs']} epoch, {t['steps']} steps)", "",
                  "| figure | value |", "|---|---|",
                  f"| optimisation loop | {t['loop_seconds']} s |",
                  f"| whole train_model() job (load, tokenise, loop, merge, save) | {t['job_seconds']} s |",
                  f"| tokens the forward passes ran: real / padded | {t['tokens_real']} / {t['tokens_padded']} "
                  f"(padding {t['padding_share']:.1%}) |",
                  f"| loop FLOP/s, 4 x params x padded tokens | {t['flops'] / r['matmul_flops']:.1%} of matmul |",
                  f"| the same over real tokens only | {t['flops_real_tokens'] / r['matmul_flops']:.1%} of matmul |",
                  f"| executed, with the recomputed forward of gradient checkpointing "
                  f"({'on' if t['gradient_checkpointing'] else 'off'}) | "
                  f"{t['flops_executed'] / r['matmul_flops']:.1%} of matmul |",
                  ""]
    ld = r.get("load")
    if ld:
        lines += ["## Base model load (fp32, model weights only)", ""]
        if ld.get("measured"):
            lines += ["| format | size | load s |", "|---|---|---|",
                      f"| safetensors (load_causal_lm) | {ld['safetensors_mb']} MB | {ld['safetensors_s']} |",
                      f"| GGUF ({ld['gguf']}) | {ld['gguf_mb']} MB | {ld['gguf_s']} |", "",
                      f"GGUF / safetensors: {ld['ratio']}x (best of {ld['repeats']})", ""]
        else:
            lines += [f"not measured: {ld['why']}", ""]
    sc = r.get("scaling")
    if sc:
        lines += ["## Scaling with the prompt budget (single_round, `snakemake all`, 2 cores)", ""]
        if sc.get("measured"):
            runs = [sc[f"prompts_{n}"] for n in sc["prompts"]]
            rules = sorted({k for v in runs for k in v["jobs_s"]})
            lines += ["| | " + " | ".join(f"{v['prompts']} prompts" for v in runs) + " |", "|---|---|---|",
                      "| wall s | " + " | ".join(str(v["wall_s"]) for v in runs) + " |",
                      "| sum of jobs s | " + " | ".join(str(v["sum_of_jobs_s"]) for v in runs) + " |"]
            lines += [f"| {k} s | " + " | ".join(str(v["jobs_s"].get(k, 0)) for v in runs) + " |" for k in rules]
            lines += ["", f"2x prompts / 1x: {sc['ratio']}x", ""]
        else:
            lines += [f"not measured: {sc['why']}", ""]
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
    b = r.get("backends")
    if b:
        lines += ["## Generation backends (generate_responses as a job sees it; greedy)", ""]
        if b.get("measured"):
            lines += [f"{b['prompts']} principle-driven prompts ({b['prompt_tokens']} prompt tokens), "
                      f"at most {b['max_new_tokens']} new tokens each.", "",
                      "| backend | whole job s | fixed s (load / engine start) | generate s | new tokens | "
                      "new tok/s (generate) | new tok/s (whole job) |", "|---|---|---|---|---|---|---|"]
            for k, fixed in (("hf", "load_s"), ("vllm", "engine_start_s")):
                v = b[k]
                lines.append(f"| {k} | {v['job_s']} | {v[fixed]} | {v['generate_s']} | {v['new_tokens']} | "
                             f"{v['new_tok_per_s']} | {v['job_new_tok_per_s']} |")
            even = b["break_even_prompts"]
            lines += ["", f"identical continuations: {b['same_continuations']} of {b['prompts']}; "
                      + (f"vLLM's whole job is faster from about {even} prompts per job" if even is not None
                         else "no break-even (one backend is faster at every job size)"), ""]
        else:
            lines += [f"not measured: {b['why']}", ""]
    lines += ["## Targets", "", "| target | figure | status |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in r["targets"]]
    return "\n".join(lines) + "\n"
