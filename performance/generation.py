"""Generation: batched with and without the shared-prefix cache vs one prompt at a time."""

from __future__ import annotations

import time

import yaml

from performance import REPO
from performance.matmul import n_params


def default_generation_batch() -> int:
    """The default config's generation batch size: the benchmark measures what a run uses."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return int(cfg["defaults"]["generation"]["batch_size"])


def bench_generation(model_dir: str, n_prompts: int, max_new_tokens: int, batch_size: int) -> dict:
    from soft.generate.decoding import GenerationSettings
    from soft.generate.responses import encode_split, generate_hf, plan_requests, shared_prefix
    from soft.generate.icl import IclSettings
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
