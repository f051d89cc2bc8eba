"""Probe answers: every round's model answers the same held-out prompts, as it would be
used after training (the distilled system prompt, no principles, no exemplars). The
answers feed the collapse diagnostics (soft.probe.diagnostics) and the pairwise judge
(soft.probe.judge); sampling is seeded, so a rerun writes the same answers."""

from __future__ import annotations

import logging

from soft.config import section_settings
from soft.layouts import Layout
from soft.principles import Principles
from soft.settings import Probe

log = logging.getLogger(__name__)


def deployment_prompt(tokenizer, layout: Layout, principles: Principles, prompt: str) -> str:
    """The text a trained round sees for a user prompt: the training layout (soft.layouts)
    up to the start of the answer."""
    return layout.prompt_text(tokenizer, principles.system_prompt, prompt)


def probe_model(model_dir: str, prompts: list[dict], principles: Principles, settings: Probe | dict,
                seed: int, round_k: int, layout: dict | None = None) -> tuple[list[dict], dict]:
    """(answer records, diagnostics) of one model on the probe prompts. `layout`:
    soft.layouts.layout_settings of the config (None = auto)."""
    from soft.probe.diagnostics import summarize_answers
    from soft.generate.decoding import GenerationSettings
    from soft.generate.responses import generate_hf
    from soft.models import load_causal_lm, load_tokenizer
    from soft.scoring import encode_pair, token_entropy

    settings = section_settings(Probe, "evaluation.probe", settings)
    prompts = prompts[:settings.max_prompts or len(prompts)]
    tokenizer = load_tokenizer(model_dir)
    lay = Layout.from_settings(tokenizer, layout, where=str(model_dir))
    model = load_causal_lm(model_dir)
    model.eval()
    texts = [deployment_prompt(tokenizer, lay, principles, p["prompt"]) for p in prompts]
    gen = GenerationSettings(backend="hf", max_new_tokens=settings.max_new_tokens,
                             temperature=settings.temperature, top_p=settings.top_p,
                             batch_size=settings.batch_size)
    answers = [a.strip() for a in generate_hf(model, tokenizer, texts, gen, seed, reuse_prefix=False)]
    # An empty answer has no token to score: token_entropy gives it 0.
    pairs = [encode_pair(tokenizer, t, a, 1024, lay.add_special_tokens) if a else ([], []) for t, a in zip(texts, answers)]
    entropies = token_entropy(model, pairs, tokenizer.pad_token_id, settings.batch_size)
    records = [{"id": p["id"], "prompt": p["prompt"], "round": round_k, "seed": seed, "answer": a,
                "entropy": round(h, 6)}
               for p, a, h in zip(prompts, answers, entropies)]
    summary = summarize_answers(answers, entropies)
    log.info("round %d probe: %s", round_k, summary)
    return records, summary
