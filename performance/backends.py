"""generate_responses' transformers and vLLM backends on the same prompts (--backends)."""

from __future__ import annotations

import time

from performance import REPO

BACKEND_PROMPTS = 64  # prompts of the backend comparison (full mode)


def bench_backends(model_dir: str, n_prompts: int, max_new_tokens: int, batch_size: int,
                   vllm_python: str | None = None) -> dict:
    """generate_responses' two backends on the same principle-driven prompts, greedy, each
    as a job sees it. hf: transformers in this process (model load + generate; torch is
    already imported). vllm: the engine process in vLLM's interpreter (soft.generate.vllm_backend:
    Python start, `import vllm`, engine start, generate, exit). New tokens are counted with
    one tokenizer for both; vLLM in dtype auto (bf16 where the CPU has bf16 units, else fp32), transformers fp32."""
    from soft.errors import SoftError
    from soft.generate.decoding import GenerationSettings
    from soft.generate.responses import generate_hf, plan_requests
    from soft.generate.icl import IclSettings
    from soft.models import load_causal_lm, load_tokenizer
    from soft.principles import load_exemplars, load_principles
    from soft.records import read_prompts
    from soft.generate.vllm_backend import run_engine_job, vllm_interpreter

    try:
        python = vllm_interpreter(vllm_python)
    except SoftError as e:
        return {"measured": False, "why": str(e)}
    principles = load_principles(REPO / "config/principles.yaml")
    requests = plan_requests(read_prompts(REPO / "config/prompts.jsonl")[:n_prompts], principles,
                             load_exemplars(REPO / "config/exemplars.jsonl"), IclSettings("random", 2, None), 0)
    texts, ids = [r["text"] for r in requests], [r["id"] for r in requests]
    # max_prompt_tokens as a run has it (1536): vLLM reserves prompt + new tokens of context
    settings = GenerationSettings(temperature=0.0, max_new_tokens=max_new_tokens, batch_size=batch_size)
    t0 = time.perf_counter()
    tok, model = load_tokenizer(model_dir), load_causal_lm(model_dir).eval()
    t1 = time.perf_counter()
    hf_answers = generate_hf(model, tok, texts, settings, seed=0)
    t2 = time.perf_counter()
    del model

    def count(answers):
        return sum(len(tok(a, add_special_tokens=False).input_ids) for a in answers)

    new = count(hf_answers)
    out = {"measured": True, "prompts": len(texts), "max_new_tokens": max_new_tokens, "vllm_python": python,
           "prompt_tokens": sum(len(tok(t).input_ids) for t in texts),
           "hf": {"job_s": round(t2 - t0, 2), "load_s": round(t1 - t0, 2), "generate_s": round(t2 - t1, 2),
                  "new_tokens": new, "new_tok_per_s": round(new / (t2 - t1), 2)}}
    t0 = time.perf_counter()
    engine = run_engine_job(model_dir, texts, ids, settings, seed=0, gpus=0, vllm_python=vllm_python)
    job = time.perf_counter() - t0
    new = count(engine["continuations"])
    out["vllm"] = {"job_s": round(job, 2), "engine_start_s": round(engine["engine_start_s"], 2),
                   "generate_s": round(engine["generate_s"], 2), "new_tokens": new,
                   "new_tok_per_s": round(new / max(engine["generate_s"], 1e-9), 2)}
    for k in ("hf", "vllm"):
        out[k]["job_new_tok_per_s"] = round(out[k]["new_tokens"] / out[k]["job_s"], 2)
    out["same_continuations"] = sum(a == b for a, b in zip(hf_answers, engine["continuations"]))
    # Prompts per job at which the two whole jobs take equal time: fixed costs (hf's model
    # load; vLLM's process, imports and engine start) against the seconds per prompt.
    fixed = {k: out[k]["job_s"] - out[k]["generate_s"] for k in ("hf", "vllm")}
    per_prompt = {k: out[k]["generate_s"] / len(texts) for k in ("hf", "vllm")}
    gain = per_prompt["hf"] - per_prompt["vllm"]
    out["break_even_prompts"] = (round((fixed["vllm"] - fixed["hf"]) / gain, 1)
                                 if gain > 0 and fixed["vllm"] > fixed["hf"] else None)
    return out
