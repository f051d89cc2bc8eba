"""Teacher-forced scoring: the one batched forward pass behind every score a stage takes
from a model over (context, span) token pairs: span NLL (the curriculum's difficulty, the
early stop's preference margins) and next-token entropy (the probes' collapse signal).

Pairs are built in the layout the model was trained in (`scoring_texts`) and cut to a
length (`encode_pair`); `forward_batches` runs them longest first, right-padded, so the
same pairs give the same batches, and the same numbers, whichever score is taken."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from soft.errors import SoftError
from soft.layouts import Layout
from soft.principles import Principles

log = logging.getLogger(__name__)

Pair = tuple[list[int], list[int]]


def load_scorer(model_dir, layout: dict | None) -> tuple:
    """(tokenizer, layout, model) for a teacher-forced pass over a model folder: the
    tokenizer right-padded, the turn layout resolved against it (`layout`:
    soft.layouts.layout_settings of the config, None = auto), the model in eval mode."""
    from soft.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(model_dir, padding_side="right")
    lay = Layout.from_settings(tokenizer, layout, where=str(model_dir))
    model = load_causal_lm(model_dir)
    model.eval()
    return tokenizer, lay, model


def scoring_texts(tokenizer, layout: Layout, principles: Principles, prompt: str,
                  response: str | None) -> tuple[str, str]:
    """(context, scored span) for one example, in the training layout (soft.layouts):
    the prompt given the distilled system prompt (response None), else the answer given
    both."""
    if response is None:
        return layout.user_span(tokenizer, principles.system_prompt, prompt)
    return layout.prompt_text(tokenizer, principles.system_prompt, prompt), response


def encode_pair(tokenizer, context: str, span: str, max_length: int,
                add_special_tokens: bool = False) -> Pair:
    """Token ids of context and span, cut to max_length (the span keeps its start, the
    context its end: the span is what is scored). `add_special_tokens`: the layout's
    (Layout.add_special_tokens), for the context only."""
    ctx = tokenizer(context, add_special_tokens=add_special_tokens).input_ids
    tgt = tokenizer(span, add_special_tokens=False).input_ids[:max(1, max_length - 1)]
    if not tgt:
        raise SoftError("empty span to score")
    room = max_length - len(tgt)
    ctx = ctx[-room:] if room > 0 else []
    return ctx, tgt


def forward_batches(model, pairs: list[Pair], pad_id: int, batch_size: int,
                    indices: list[int] | None = None) -> Iterator[tuple[list[int], object]]:
    """(pair indices, float32 logits of shape batch x width x vocab) per batch of the
    pairs at `indices` (default: all), longest first, ties in index order; each row is
    context + span, right-padded with `pad_id` and masked."""
    import torch

    todo = list(range(len(pairs))) if indices is None else indices
    lengths = {i: len(pairs[i][0]) + len(pairs[i][1]) for i in todo}
    order = sorted(todo, key=lambda i: (-lengths[i], i))
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        width = max(lengths[i] for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            seq = pairs[i][0] + pairs[i][1]
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
        yield idx, logits


def span_nll(model, pairs: list[Pair], pad_id: int, batch_size: int) -> list[tuple[float, int]]:
    """(mean NLL of each span given its context, span tokens scored)."""
    import torch
    import torch.nn.functional as F

    out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
    start, done = time.perf_counter(), 0
    for idx, logits in forward_batches(model, pairs, pad_id, batch_size):
        # position p predicts token p+1: a row's labels are its span, -100 elsewhere
        target = torch.full(logits.shape[:2], -100, dtype=torch.long, device=logits.device)
        for row, i in enumerate(idx):
            ctx, tgt = pairs[i]
            target[row, len(ctx):len(ctx) + len(tgt)] = torch.tensor(tgt)
        target = target[:, 1:]
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), target, ignore_index=-100, reduction="none")
        counts = (target != -100).sum(dim=1)
        sums = nll.sum(dim=1)
        for row, i in enumerate(idx):
            out[i] = (float(sums[row] / counts[row]), int(counts[row]))
        done += len(idx)
        log.info("scored %d/%d examples (%.1f s)", done, len(pairs), time.perf_counter() - start)
    return out


def token_entropy(model, pairs: list[Pair], pad_id: int, batch_size: int) -> list[float]:
    """Mean entropy (nats) of the model's next-token distribution at the positions that
    predict each span's tokens, given its context. An empty span scores 0 (so does a
    one-token span without context: nothing predicts its only token)."""
    import torch

    out = [0.0] * len(pairs)
    for idx, logits in forward_batches(model, pairs, pad_id, batch_size,
                                       indices=[i for i, (_, ans) in enumerate(pairs) if ans]):
        logp = torch.log_softmax(logits, dim=-1)
        entropy = -(logp.exp() * logp).sum(dim=-1)  # (batch, width)
        for row, i in enumerate(idx):
            ctx, ans = pairs[i]
            # the span's tokens are predicted from positions len(ctx)-1 .. len(ctx)+len(ans)-2
            span = entropy[row, max(len(ctx) - 1, 0):len(ctx) + len(ans) - 1]
            out[i] = float(span.mean()) if span.numel() else 0.0
    return out
