"""The transformers backend on the tiny model: the shared-prefix KV cache gives the same
tokens as whole-prompt generation, and the prefix is where build_prompt says it is."""

from __future__ import annotations

import pytest
import torch

from soft.generate.decoding import GenerationSettings
from soft.generate.responses import encode_split, generate_hf, shared_prefix
from soft.generate.icl import IclSettings
from soft.generate.responses import plan_requests
from soft.principles import load_exemplars, load_principles
from tiny import REPO, make_tiny_model

PRINCIPLES = load_principles(REPO / "config/principles.yaml")
EXEMPLARS = load_exemplars(REPO / "config/exemplars.jsonl")
PROMPTS = [{"id": f"p{i}", "prompt": p} for i, p in enumerate([
    "How do I make a cup of tea?", "Explain photosynthesis to a child, with an example or two.",
    "Is it safe to mix bleach and ammonia?", "Write a two-line poem about autumn leaves.",
    "What is 17 times 23?"])]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from soft.models import load_causal_lm, load_tokenizer

    d = make_tiny_model(tmp_path_factory.mktemp("m") / "tiny")
    return load_tokenizer(d), load_causal_lm(d, device="cpu").eval()


@pytest.mark.parametrize("mode,shared", [("random", "principles"), ("fixed", "exemplars")])
def test_shared_prefix_is_principles_or_principles_and_fixed_exemplars(mode, shared):
    texts = [r["text"] for r in plan_requests(PROMPTS, PRINCIPLES, EXEMPLARS, IclSettings(mode, 2, None), 0)]
    prefix = shared_prefix(texts)
    assert prefix.startswith(PRINCIPLES.text()) and prefix.endswith("\n\n")
    if shared == "principles":
        assert prefix == PRINCIPLES.text() + "\n\n"
    else:
        assert prefix.count("---") == 2 and len(prefix) > len(PRINCIPLES.text()) + 100
    assert all(t.startswith(prefix) for t in texts)
    assert shared_prefix(["abc", "xyz"]) == "" and shared_prefix([]) == ""


def test_encode_split_rejoins_to_the_prompt(tiny):
    tok, _ = tiny
    texts = [r["text"] for r in plan_requests(PROMPTS, PRINCIPLES, EXEMPLARS, IclSettings("random", 1, None), 0)]
    prefix_ids, rests = encode_split(tok, texts, shared_prefix(texts))
    for text, rest in zip(texts, rests):
        assert tok.decode(prefix_ids + rest) == text


@pytest.mark.parametrize("mode", ["random", "fixed"])
def test_prefix_cache_gives_the_same_tokens_as_whole_prompts(tiny, mode):
    tok, model = tiny
    texts = [r["text"] for r in plan_requests(PROMPTS, PRINCIPLES, EXEMPLARS, IclSettings(mode, 1, None), 0)]
    greedy = GenerationSettings(temperature=0.0, max_new_tokens=12, batch_size=2, max_prompt_tokens=4096)
    cached = generate_hf(model, tok, texts, greedy, seed=0, reuse_prefix=True)
    whole = generate_hf(model, tok, texts, greedy, seed=0, reuse_prefix=False)
    assert cached == whole
    assert all(c for c in cached)


def test_overlong_prompts_fall_back_to_left_truncation(tiny, caplog):
    tok, model = tiny
    texts = [r["text"] for r in plan_requests(PROMPTS[:2], PRINCIPLES, EXEMPLARS, IclSettings("random", 1, None), 0)]
    short = GenerationSettings(temperature=0.0, max_new_tokens=4, batch_size=2, max_prompt_tokens=64)
    with caplog.at_level("INFO"):
        out = generate_hf(model, tok, texts, short, seed=0)
    assert len(out) == 2 and "no prefix cache" in caplog.text


def test_static_cache_gives_the_tokens_of_stock_generate(tiny):
    """generate_hf decodes into a preallocated cache (batch_cache); transformers' own
    generate with its default dynamic cache must give the same greedy tokens."""
    from soft.generate.decoding import STOP_STRINGS
    from soft.generate.responses import batch_cache

    tok, model = tiny
    assert type(batch_cache(model, 1, 8)).__name__ == "StaticCache"  # Llama layers take the fast path
    texts = [r["text"] for r in plan_requests(PROMPTS[:3], PRINCIPLES, EXEMPLARS, IclSettings("random", 1, None), 0)]
    greedy = GenerationSettings(temperature=0.0, max_new_tokens=12, batch_size=1, max_prompt_tokens=4096)
    ours = generate_hf(model, tok, texts, greedy, seed=0, reuse_prefix=True)
    for text, answer in zip(texts, ours):
        ids = torch.tensor([tok(text).input_ids])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=12, stop_strings=STOP_STRINGS, tokenizer=tok,
                                 pad_token_id=tok.pad_token_id)
        assert tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == answer


def test_sliding_window_models_keep_the_dynamic_cache(tmp_path):
    """A sliding-window model (tiny Mistral, window 8, shorter than the prompts) cannot take
    the prefix copied into a static cache: batch_cache falls back to the dynamic one, and
    the cached path still gives the whole-prompt tokens."""
    from transformers import MistralConfig, MistralForCausalLM

    from soft.generate.responses import batch_cache, prefix_cache
    from soft.models import load_tokenizer

    tok = load_tokenizer(make_tiny_model(tmp_path / "tiny"))
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, sliding_window=8,
                        pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = MistralForCausalLM(cfg).eval()
    assert batch_cache(model, 2, 64) is None
    rows = batch_cache(model, 2, 64, prefix_cache(model, [1, 2, 3]))
    assert type(rows).__name__ == "DynamicCache" and rows.layers[0].keys.shape[0] == 2
    texts = [r["text"] for r in plan_requests(PROMPTS[:2], PRINCIPLES, EXEMPLARS, IclSettings("random", 1, None), 0)]
    greedy = GenerationSettings(temperature=0.0, max_new_tokens=6, batch_size=2, max_prompt_tokens=4096)
    assert generate_hf(model, tok, texts, greedy, seed=0) == generate_hf(model, tok, texts, greedy, seed=0,
                                                                        reuse_prefix=False)


@pytest.fixture(scope="module")
def decisive(tiny):
    """The tiny model with its weights redrawn at std 0.3. At its own init (std 0.02) the
    residual stream is almost all token embedding: greedy decoding writes one token over
    and over whatever the attention sees, so attending to the padding by mistake changes
    no token (seen: "??????????" either way). Here it changes most of them."""
    import copy

    tok, model = tiny
    model = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.3)
    return tok, model


@pytest.mark.parametrize("reuse_prefix", [True, False], ids=["prefix_cache", "whole_prompts"])
def test_batched_padded_static_cache_gives_the_tokens_of_stock_generate(decisive, reuse_prefix):
    """Three prompts of different lengths in one batch: generate_hf pads them (between the
    shared prefix and each remainder, or on the left without the prefix cache) and decodes
    into the static cache; stock `generate` on each prompt alone, unpadded, with its
    default dynamic cache, must give the same greedy tokens, and so must stock `generate`
    on the same three left-padded."""
    from soft.generate.decoding import STOP_STRINGS

    tok, model = decisive
    prompts = [PROMPTS[4], PROMPTS[1], PROMPTS[3]]
    texts = [r["text"] for r in plan_requests(prompts, PRINCIPLES, EXEMPLARS, IclSettings("fixed", 1, None), 0)]
    _, rests = encode_split(tok, texts, shared_prefix(texts))
    assert len({len(r) for r in rests}) == 3  # three widths: every row but the longest is padded
    n_new = 10
    greedy = GenerationSettings(temperature=0.0, max_new_tokens=n_new, batch_size=3, max_prompt_tokens=4096)
    ours = generate_hf(model, tok, texts, greedy, seed=0, reuse_prefix=reuse_prefix)

    def stock(batch: list[str]) -> list[str]:
        enc = tok(batch, return_tensors="pt", padding=True)  # the tokenizer pads on the left
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=False, max_new_tokens=n_new, stop_strings=STOP_STRINGS,
                                 tokenizer=tok, pad_token_id=tok.pad_token_id)
        return [tok.decode(row, skip_special_tokens=True) for row in out[:, enc.input_ids.shape[1]:]]

    alone = [stock([t])[0] for t in texts]
    assert ours == alone
    assert stock(texts) == alone
    assert len(set(ours)) == 3 and all(len(set(a)) > 2 for a in ours)  # tokens that depend on the prompt
