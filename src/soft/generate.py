"""Principle-driven response generation: request planning (exemplars per prompt from
soft.icl) and the transformers backend (batched, seeded); soft.vllm_backend holds vLLM's."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from soft.icl import IclSettings, choose_exemplars
from soft.principles import ANSWER_TAG, SEPARATOR, USER_TAG, Principles, build_prompt

log = logging.getLogger(__name__)

# Generation stops once the model starts a new conversation or user turn: nothing after
# that can be part of the answer, so decoding it would only cost time.
STOP_STRINGS = ["\n" + USER_TAG, "\n" + SEPARATOR]


@dataclass(frozen=True)
class GenerationSettings:
    backend: str = "auto"  # auto | hf | vllm (soft.vllm_backend.resolve_backend)
    dtype: str = "auto"  # vLLM only; the hf backend picks fp32 on CPU, bf16 on GPU
    max_new_tokens: int = 160
    temperature: float = 0.7
    top_p: float = 0.95
    batch_size: int = 8
    max_prompt_tokens: int = 1536


def plan_requests(prompts: list[dict], principles: Principles, exemplar_pool: list[dict],
                  icl: IclSettings, seed: int) -> list[dict]:
    """One request per prompt: its exemplar ids (soft.icl) and the full prompt text."""
    requests = []
    for rec in prompts:
        shown = choose_exemplars(exemplar_pool, icl, seed, rec["id"])
        requests.append({**rec, "exemplar_ids": [e["id"] for e in shown],
                         "text": build_prompt(principles, shown, rec["prompt"])})
    return requests


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so little compute
    goes to padding; ties keep input order, so batches are deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def generate_hf(model, tokenizer, texts: list[str], settings: GenerationSettings, seed: int) -> list[str]:
    import torch

    tokenizer.truncation_side = "left"  # keep the new user turn, lose the oldest context
    lengths = [len(tokenizer(t).input_ids) for t in texts]
    outputs: list[str] = [""] * len(texts)
    batches = length_batches(lengths, settings.batch_size)
    sample = settings.temperature > 0
    total_new, start = 0, time.perf_counter()
    for b, idx in enumerate(batches, start=1):
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                        max_length=settings.max_prompt_tokens).to(model.device)
        # Per-batch seed: a batch's samples do not depend on the batches before it.
        torch.manual_seed(seed * 100_003 + b)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=sample,
                temperature=settings.temperature if sample else None,
                top_p=settings.top_p if sample else None,
                top_k=None,
                max_new_tokens=settings.max_new_tokens,
                stop_strings=STOP_STRINGS,
                tokenizer=tokenizer,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[:, enc.input_ids.shape[1]:]
        for row, i in enumerate(idx):
            outputs[i] = tokenizer.decode(new[row], skip_special_tokens=True)
        total_new += int((new != tokenizer.pad_token_id).sum())
        elapsed = time.perf_counter() - start
        log.info("batch %d/%d: %d prompts, prompt length %d tokens, %.1f new tok/s so far",
                 b, len(batches), len(idx), enc.input_ids.shape[1], total_new / elapsed)
    return outputs


def generate_records(prompts: list[dict], model_dir: str, principles: Principles,
                     exemplar_pool: list[dict], settings: GenerationSettings, icl: IclSettings,
                     seed: int, round_k: int, gpus: int = 0) -> list[dict]:
    """Generation records for one round: prompt fields + exemplar ids + raw continuation."""
    from soft.vllm_backend import generate_vllm, resolve_backend

    requests = plan_requests(prompts, principles, exemplar_pool, icl, seed)
    texts = [r["text"] for r in requests]
    backend = resolve_backend(settings.backend)
    log.info("backend %s (generation.backend: %s), icl mode %s, %d shots, pool of %d",
             backend, settings.backend, icl.mode, icl.shots, len(exemplar_pool))
    if backend == "vllm":
        continuations = generate_vllm(model_dir, texts, [r["id"] for r in requests], settings, seed, gpus)
    else:
        from soft.models import load_causal_lm, load_tokenizer

        tokenizer = load_tokenizer(model_dir)
        model = load_causal_lm(model_dir)
        model.eval()
        continuations = generate_hf(model, tokenizer, texts, settings, seed)
    records = []
    for req, cont in zip(requests, continuations):
        rec = {k: v for k, v in req.items() if k != "text"}
        rec.update(round=round_k, seed=seed, continuation=cont)
        records.append(rec)
    return records


__all__ = ["ANSWER_TAG", "GenerationSettings", "generate_records", "plan_requests", "length_batches"]
