"""Principle-driven response generation: request planning (exemplars per prompt from
soft.generate.icl) and the transformers backend (batched, seeded); soft.generate.vllm_backend holds vLLM's."""

from __future__ import annotations

import logging
import os
import time

from soft.generate.decoding import STOP_STRINGS, GenerationSettings
from soft.generate.icl import IclSettings, choose_exemplars
from soft.principles import ANSWER_TAG, Principles, build_prompt

log = logging.getLogger(__name__)

def plan_requests(prompts: list[dict], principles: Principles, exemplar_pool: list[dict],
                  icl: IclSettings, seed: int) -> list[dict]:
    """One request per prompt: the exemplars it is shown (soft.generate.icl; ids, and each one's
    turns, which the record keeps so the filter reads what the prompt saw instead of
    rebuilding the pool) and the full prompt text."""
    requests = []
    for rec in prompts:
        shown = choose_exemplars(exemplar_pool, icl, seed, rec["id"])
        requests.append({**rec, "exemplar_ids": [e["id"] for e in shown],
                         "exemplars": [{"id": e["id"], "turns": e["turns"]} for e in shown],
                         "text": build_prompt(principles, shown, rec["prompt"])})
    return requests


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so little compute
    goes to padding; ties keep input order, so batches are deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def shared_prefix(texts: list[str]) -> str:
    """The longest common start of all prompts, cut back to a paragraph break ("\\n\\n"),
    so the prefix ends where build_prompt joins two parts: the principles (every mode) and,
    in fixed ICL mode, the exemplars too."""
    prefix = os.path.commonprefix(texts) if texts else ""
    cut = prefix.rfind("\n\n")
    return prefix[:cut + 2] if cut >= 0 else ""


def encode_split(tokenizer, texts: list[str], prefix: str) -> tuple[list[int], list[list[int]]]:
    """Token ids of the shared prefix and of each prompt's remainder. Both generation paths
    use these same ids, so caching the prefix changes the arithmetic, not the input."""
    prefix_ids = tokenizer(prefix).input_ids if prefix else []
    special = not prefix_ids  # BOS (if any) goes with the first piece only
    rests = [tokenizer(t[len(prefix):], add_special_tokens=special).input_ids for t in texts]
    return prefix_ids, rests


def _batch_tensors(prefix_ids: list[int], rests: list[list[int]], pad_id: int, middle_pad: bool):
    """input_ids and attention_mask for one batch. Left padding puts the pads before the
    prefix; middle padding (shared-prefix cache) between the prefix and each remainder.
    Positions come from the mask's cumulative sum, so both lay the tokens out alike."""
    import torch

    width = max(len(r) for r in rests)
    ids, mask = [], []
    for r in rests:
        pad = width - len(r)
        if middle_pad:
            ids.append(prefix_ids + [pad_id] * pad + r)
            mask.append([1] * len(prefix_ids) + [0] * pad + [1] * len(r))
        else:
            ids.append([pad_id] * pad + prefix_ids + r)
            mask.append([0] * pad + [1] * (len(prefix_ids) + len(r)))
    return torch.tensor(ids), torch.tensor(mask)


def prefix_cache(model, prefix_ids: list[int]):
    """KV cache of the shared prefix, computed once per job."""
    import torch

    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prefix_ids], device=model.device), use_cache=True)
    return out.past_key_values


def batch_cache(model, batch: int, max_len: int, prefix=None):
    """A preallocated (static) KV cache for one batch, holding `max_len` positions, with
    the shared prefix's keys and values (if any) copied into the first positions of every
    row. Decoding then writes each new token's keys in place: transformers' default
    dynamic cache concatenates every layer's whole cache at every step instead, which
    profiled at 45% of a decode step's time (batch 8, 750-token prompts, CPU).

    Models with other layer kinds (sliding-window attention keeps a rolling buffer and its
    own counters) get the dynamic cache: the prefix's copied per row, or None (generate's
    default) without a prefix."""
    import copy

    import torch
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    cache = StaticCache(config=model.config, max_cache_len=max_len)
    if any(type(layer) is not StaticLayer for layer in cache.layers):
        if prefix is None:
            return None
        rows = copy.deepcopy(prefix)
        rows.batch_repeat_interleave(batch)
        return rows
    if prefix is None:
        return cache  # sized by its first update
    with torch.inference_mode():
        for layer, done in zip(cache.layers, prefix.layers):
            # the prefix's own keys give heads, head size, dtype and device
            layer.lazy_initialization(done.keys.expand(batch, -1, -1, -1), done.values.expand(batch, -1, -1, -1))
            n = done.keys.shape[-2]
            layer.keys[:, :, :n] = done.keys
            layer.values[:, :, :n] = done.values
            layer.cumulative_length.fill_(n)
    return cache


def generate_hf(model, tokenizer, texts: list[str], settings: GenerationSettings, seed: int,
                reuse_prefix: bool = True, stop_strings: list[str] | None = None) -> list[str]:
    """Batched, seeded generation with transformers.

    The principles (and, in fixed ICL mode, the exemplars) open every prompt: their KV
    cache is computed once and copied into each batch, so each batch only prefills its
    own exemplars and user turn. Prompts longer than max_prompt_tokens lose their oldest
    context instead (no shared prefix then)."""
    import torch

    prefix = shared_prefix(texts) if reuse_prefix else ""
    prefix_ids, rests = encode_split(tokenizer, texts, prefix)
    if any(len(prefix_ids) + len(r) > settings.max_prompt_tokens for r in rests):
        # Left truncation keeps the new user turn and drops the principles' start: the
        # prefix is no longer shared, so fall back to whole prompts.
        log.info("prompts longer than max_prompt_tokens=%d: truncating on the left, no prefix cache",
                 settings.max_prompt_tokens)
        rests = [(prefix_ids + r)[-settings.max_prompt_tokens:] for r in rests]
        prefix_ids = []
    cache = prefix_cache(model, prefix_ids) if prefix_ids and reuse_prefix else None
    if cache is not None:
        log.info("shared prefix: %d tokens, computed once", len(prefix_ids))
    lengths = [len(r) for r in rests]
    outputs: list[str] = [""] * len(texts)
    batches = length_batches(lengths, settings.batch_size)
    sample = settings.temperature > 0
    total_new, total_prompt, start = 0, 0, time.perf_counter()
    for b, idx in enumerate(batches, start=1):
        ids, mask = _batch_tensors(prefix_ids, [rests[i] for i in idx], tokenizer.pad_token_id,
                                   middle_pad=cache is not None)
        ids, mask = ids.to(model.device), mask.to(model.device)
        past = batch_cache(model, len(idx), ids.shape[1] + settings.max_new_tokens, cache)
        # Per-batch seed: a batch's samples do not depend on the batches before it.
        torch.manual_seed(seed * 100_003 + b)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=sample,
                temperature=settings.temperature if sample else None,
                top_p=settings.top_p if sample else None,
                top_k=None,
                max_new_tokens=settings.max_new_tokens,
                stop_strings=STOP_STRINGS if stop_strings is None else stop_strings,
                tokenizer=tokenizer,
                pad_token_id=tokenizer.pad_token_id,
                past_key_values=past,
            )
        new = out[:, ids.shape[1]:]
        for row, i in enumerate(idx):
            outputs[i] = tokenizer.decode(new[row], skip_special_tokens=True)
        total_new += int((new != tokenizer.pad_token_id).sum())
        total_prompt += int(mask.sum())
        elapsed = time.perf_counter() - start
        log.info("batch %d/%d: %d prompts, %d prompt tokens (%d shared), %.1f new tok/s so far",
                 b, len(batches), len(idx), ids.shape[1], len(prefix_ids), total_new / elapsed)
    elapsed = time.perf_counter() - start
    log.info("generated %d new tokens in %.1f s (%.1f tok/s); %d prompt tokens",
             total_new, elapsed, total_new / max(elapsed, 1e-9), total_prompt)
    return outputs


def generate_records(prompts: list[dict], model_dir: str, principles: Principles,
                     exemplar_pool: list[dict], settings: GenerationSettings, icl: IclSettings,
                     seed: int, round_k: int, gpus: int = 0, vllm_python: str | None = None) -> list[dict]:
    """Generation records for one round: prompt fields + exemplar ids + raw continuation.
    The vllm backend runs its engine in vLLM's interpreter (soft.generate.vllm_backend.vllm_interpreter:
    `vllm_python`, this one if it has vllm, else .venv-vllm)."""
    from soft.generate.vllm_backend import generate_vllm, resolve_backend

    requests = plan_requests(prompts, principles, exemplar_pool, icl, seed)
    texts = [r["text"] for r in requests]
    backend = resolve_backend(settings.backend)
    log.info("backend %s (generation.backend: %s), icl mode %s, %d shots, pool of %d",
             backend, settings.backend, icl.mode, icl.shots, len(exemplar_pool))
    if backend == "vllm":
        continuations = generate_vllm(model_dir, texts, [r["id"] for r in requests], settings, seed, gpus,
                                      vllm_python)
    else:
        from soft.models import load_causal_lm, load_tokenizer, pick_device
        from soft.precision import decide

        device = pick_device()
        precision = decide(settings.precision, device, key="generation.precision")
        tokenizer = load_tokenizer(model_dir)
        model = load_causal_lm(model_dir, device=device, dtype=precision.torch_dtype)
        model.eval()
        continuations = generate_hf(model, tokenizer, texts, settings, seed)
    records = []
    for req, cont in zip(requests, continuations):
        rec = {k: v for k, v in req.items() if k != "text"}
        rec.update(round=round_k, seed=seed, continuation=cont)
        records.append(rec)
    return records


__all__ = ["ANSWER_TAG", "GenerationSettings", "generate_records", "generate_hf", "plan_requests",
           "length_batches", "shared_prefix"]
