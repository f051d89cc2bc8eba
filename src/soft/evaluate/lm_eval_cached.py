"""lm-eval's `hf` model with a shared-prefix KV cache for loglikelihood scoring.

Registered with lm-eval as ``soft-hf-cached`` (importing this module registers it).
Multiple-choice tasks send one loglikelihood request per choice, and the stock `hf`
model recomputes each request's whole context: TruthfulQA's six-shot primer (~300
tokens) opens every request, an HHH dialogue opens both of its choices. Here requests
whose token inputs share a long start (at least `min_prefix` tokens, default 32) form a
group; the group's common prefix is run once, its KV cache kept, and each request runs
only its remaining tokens (the rest of its context, then its continuation) on top of a
copy of that cache, in right-padded batches. Several groups may share a batch: each row
then sees its own group's prefix (the cache is padded to the longest prefix in the batch
and the padding masked out; positions continue from the row's own prefix length).

The scores are those of the stock class (same inputs, same log-softmax, same greedy
check) up to float rounding; requests that fit no group, that lm-eval would have to
truncate (longer than max_length), seq2seq models and models whose cache is not a plain
full-attention DynamicCache (sliding windows, linear attention) go through the parent's
code path unchanged.
"""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

log = logging.getLogger(__name__)

MODEL_NAME = "soft-hf-cached"
MIN_PREFIX = 32


def common_prefix_len(a, b) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prefix_groups(inputs: list[tuple[int, ...]], caps: list[int], min_prefix: int) -> list[tuple[int, list[int]]]:
    """Group token sequences that share a start of at least `min_prefix` tokens.

    `caps[i]` bounds how much of sequence i may go into a prefix (so that every position
    whose logits are scored lies after it). Sequences sorted lexicographically: a sequence
    joins its left neighbour's group while the group's common prefix (the smallest
    neighbour overlap and cap inside it, so always >= min_prefix) stays at least half of
    what it was, and while the sequence shares no more than twice that with its right
    neighbour. So requests that share only a short start with each other (the system
    prompt of the layout view, before each document) are split where each document's own
    context begins: each document's context is then computed once for all its choices,
    instead of every group being cut back to the short start. Returns (prefix length,
    indices) for each group of two or more sequences; the rest are left out.
    """
    order = sorted((i for i in range(len(inputs)) if caps[i] >= min_prefix), key=lambda i: inputs[i])
    right = [common_prefix_len(inputs[a], inputs[b]) for a, b in zip(order, order[1:])] + [0]
    groups: list[tuple[int, list[int]]] = []
    members: list[int] = []
    plen = 0
    for pos, i in enumerate(order):
        if members:
            merged = min(plen, right[pos - 1], caps[i])
            longer_ahead = min(right[pos], caps[i]) > 2 * merged
            if merged >= min_prefix and (len(members) == 1 or 2 * merged >= plen) and not longer_ahead:
                members.append(i)
                plen = merged
                continue
            if len(members) > 1:
                groups.append((plen, members))
        members, plen = [i], caps[i]
    if len(members) > 1:
        groups.append((plen, members))
    return groups


REST_TOKENS = 1024


@register_model(MODEL_NAME)
class CachedPrefixHFLM(HFLM):
    """HFLM whose `_loglikelihood_tokens` computes each shared prefix once (see module doc).

    Extra model_args: ``min_prefix`` (int, default 32): the shortest shared start worth
    caching; ``rest_tokens`` (int, default 1024): tokens per batch of requests' own parts
    (at least batch_size rows): the parts are short, and a batch of a few of them is too
    small a matrix to keep the CPU busy. ``self.scoring_stats`` counts requests and the tokens run through the model.
    """

    def __init__(self, *args, min_prefix: int = MIN_PREFIX, rest_tokens: int = REST_TOKENS,
                 layout: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        from soft.layouts import Layout

        # The model's turn layout (soft.layouts.layout_settings; None = auto): what
        # `apply_chat_template` renders through, so a model without a chat template
        # is scored in the plain layout it was trained in.
        self.layout = Layout.from_settings(self.tokenizer, layout, where="lm-eval model")
        self.min_prefix = max(1, int(min_prefix))
        self.rest_tokens = max(1, int(rest_tokens))
        # tokens: run through the model (pads not counted); logit_rows: of those, the
        # positions whose logits (the vocabulary projection) were computed
        self.scoring_stats = {"requests": 0, "cached_requests": 0, "groups": 0, "prefix_tokens": 0,
                              "tokens": 0, "logit_rows": 0}
        self._keep_logits = None

    # ------------------------------------------------------------------ layout

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """lm-eval calls this (simple_evaluate(apply_chat_template=True)) with each zero-shot
        request's messages (the system instruction, one user turn); rendered through
        soft.layouts.Layout, so the context is the text every other stage shows the model:
        the tokenizer's chat template (the stock class's text) or the plain layout."""
        if not add_generation_prompt:
            from soft.errors import SoftError

            raise SoftError("the layout view renders a user turn for the model to answer; tasks with a "
                            "gen_prefix (an assistant turn to continue) are not supported")
        return self.layout.messages_text(self.tokenizer, chat_history)

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        if self.layout.kind == "plain" and chat_template:
            return None  # no template: the plain layout renders the turns
        return super().chat_template(chat_template)

    # ------------------------------------------------------------------ checks

    def _cache_supported(self) -> bool:
        if self.backend != "causal":
            return False
        cfg = self.model.config
        text = cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg
        types = getattr(text, "layer_types", None)
        if types is not None:
            return all(t == "full_attention" for t in types)
        return getattr(text, "sliding_window", None) is None or not getattr(text, "use_sliding_window", True)

    def _supports_keep_logits(self) -> bool:
        if self._keep_logits is None:
            try:
                self._keep_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
            except (TypeError, ValueError):
                self._keep_logits = False
        return self._keep_logits

    def _forward(self, **kwargs):
        with (
            torch.no_grad(),
            torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                           enabled=self.mixed_precision_dtype is not None),
        ):
            return self.model(**kwargs)

    # ------------------------------------------------------------------ scoring

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        n = len(requests)
        if n == 0 or not self._cache_supported() or self.batch_size == "auto":
            return self._parent_scores(requests, disable_tqdm, override_bs)

        # Inputs exactly as the parent builds them: (context + continuation)[:-1]; one
        # that needs left truncation goes to the parent.
        fits = [i for i, (_, ctx, cont) in enumerate(requests) if len(ctx) + len(cont) <= self.max_length + 1]
        uniq: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i in fits:
            _, ctx, cont = requests[i]
            uniq[tuple(ctx + cont)[:-1]].append(i)
        inputs = list(uniq)
        # the first scored position of request r is len(ctx) - 1: the prefix must end before it
        caps = [min(len(requests[r][1]) - 1 for r in uniq[u]) for u in inputs]
        groups = prefix_groups(inputs, caps, self.min_prefix)
        if not groups:
            return self._parent_scores(requests, disable_tqdm, override_bs)

        res: list[tuple[float, bool] | None] = [None] * n
        grouped = {r for _, members in groups for u in members for r in uniq[inputs[u]]}
        rest = [i for i in range(n) if i not in grouped]
        if rest:
            for i, answer in zip(rest, self._parent_scores([requests[i] for i in rest], disable_tqdm, override_bs)):
                res[i] = answer
        bs = int(override_bs or self.batch_size)
        self.scoring_stats["groups"] += len(groups)
        log.info("%s: %d of %d requests in %d shared-prefix groups (prefix %d-%d tokens)", MODEL_NAME,
                 len(grouped), n, len(groups), min(p for p, _ in groups), max(p for p, _ in groups))

        # Chunks of whole groups, each with at least a batch of rows (or batch-size groups):
        # one prefix forward per chunk, then the chunk's rows in batches.
        groups.sort(key=lambda g: (-g[0], inputs[g[1][0]]))
        chunk: list[tuple[int, list[int]]] = []
        rows = 0
        for g in groups:
            chunk.append(g)
            rows += len(g[1])
            if rows >= bs or len(chunk) >= bs:
                self._score_chunk(chunk, inputs, uniq, requests, res, bs)
                chunk, rows = [], 0
        if chunk:
            self._score_chunk(chunk, inputs, uniq, requests, res, bs)
        self.scoring_stats["requests"] += len(grouped)
        self.scoring_stats["cached_requests"] += len(grouped)
        return res

    def _parent_scores(self, requests, disable_tqdm, override_bs):
        # tokens the parent runs: one input per distinct context + continuation[:-1]
        keys = {tuple(ctx + cont[:-1]) for _, ctx, cont in requests}
        tokens = sum(min(len(k), self.max_length) for k in keys)
        self.scoring_stats["tokens"] += tokens
        self.scoring_stats["logit_rows"] += tokens
        self.scoring_stats["requests"] += len(requests)
        return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)

    def _score_chunk(self, chunk, inputs, uniq, requests, res, bs: int) -> None:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        device = self.device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        plens = [p for p, _ in chunk]
        pmax = max(plens)
        # 1. the chunk's prefixes, right-padded (causal: the pads never reach a prefix token)
        prefix = torch.full((len(chunk), pmax), pad, dtype=torch.long, device=device)
        for g, (p, members) in enumerate(chunk):
            prefix[g, :p] = torch.tensor(inputs[members[0]][:p], dtype=torch.long)
        extra = {"logits_to_keep": 1} if self._supports_keep_logits() else {}
        cache = self._forward(input_ids=prefix, use_cache=True, **extra).past_key_values
        if not all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None])):
            raise RuntimeError(f"{MODEL_NAME}: the model's cache is not a plain DynamicCache")
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.scoring_stats["prefix_tokens"] += sum(plens)
        self.scoring_stats["tokens"] += sum(plens)
        self.scoring_stats["logit_rows"] += len(chunk) if extra else sum(plens)

        # 2. every row: its group, its remaining tokens; longest first, like the parent
        work = [(g, u) for g, (_, members) in enumerate(chunk) for u in members]
        work.sort(key=lambda gu: (-(len(inputs[gu[1]]) - plens[gu[0]]), inputs[gu[1]]))
        start = 0
        while start < len(work):
            # longest first: the first row's length bounds the batch's width
            longest = len(inputs[work[start][1]]) - plens[work[start][0]]
            batch = work[start:start + max(bs, self.rest_tokens // max(longest, 1))]
            start += len(batch)
            gidx = [g for g, _ in batch]
            pb = max(plens[g] for g in gidx)
            rests = [inputs[u][plens[g]:] for g, u in batch]
            width = max(len(r) for r in rests)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), pb + width), dtype=torch.long)
            pos = torch.zeros((len(batch), width), dtype=torch.long)
            first = width  # earliest scored position in the batch (rest coordinates)
            for row, ((g, u), r) in enumerate(zip(batch, rests)):
                ids[row, :len(r)] = torch.tensor(r, dtype=torch.long)
                mask[row, :plens[g]] = 1
                mask[row, pb:pb + len(r)] = 1
                pos[row] = torch.arange(plens[g], plens[g] + width)
                for req in uniq[inputs[u]]:
                    first = min(first, len(r) - len(requests[req][2]))
            sel = torch.tensor(gidx, dtype=torch.long, device=device)
            past = DynamicCache([(k.index_select(0, sel)[:, :, :pb], v.index_select(0, sel)[:, :, :pb])
                                 for k, v in kv])
            keep = width - first
            extra = {"logits_to_keep": keep} if self._supports_keep_logits() else {}
            logits = self._forward(input_ids=ids.to(device), attention_mask=mask.to(device),
                                   position_ids=pos.to(device), past_key_values=past, use_cache=True,
                                   **extra).logits
            logits = logits[:, -keep:]  # positions width-keep .. width-1
            logp = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
            self.scoring_stats["tokens"] += sum(len(r) for r in rests)
            self.scoring_stats["logit_rows"] += sum(max(0, len(r) - (width - keep)) for r in rests)
            for row, ((g, u), r) in enumerate(zip(batch, rests)):
                for req in uniq[inputs[u]]:
                    request_str, _, cont = requests[req]
                    lo = len(r) - len(cont) - (width - keep)
                    lp = logp[row, lo:lo + len(cont)]
                    cont_t = torch.tensor(cont, dtype=torch.long, device=lp.device)
                    greedy = bool((lp.argmax(dim=-1) == cont_t).all())
                    answer = (float(lp.gather(1, cont_t.unsqueeze(-1)).sum()), greedy)
                    res[req] = answer
                    if request_str is not None:
                        self.cache_hook.add_partial("loglikelihood", request_str, answer)
            del past, logits, logp
