"""soft-hf-cached (soft.evaluate.lm_eval_cached) scores exactly like lm-eval's stock hf class."""

import pytest

from tiny import make_tiny_bigbench, make_tiny_model

PRIMER = "".join(f"Q: What is {a} plus {b}?\nA: It is {a + b}, as everyone knows.\n\n" for a, b in
                 ((1, 2), (3, 4), (5, 6)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("lmc") / "m")


def _models(model_dir, batch_size, **extra):
    from lm_eval.models.huggingface import HFLM

    from soft.evaluate.lm_eval_cached import CachedPrefixHFLM

    args = {"pretrained": str(model_dir), "dtype": "float32", "batch_size": batch_size, "device": "cpu", **extra}
    return HFLM(**args), CachedPrefixHFLM(**args)


def _request(tok, ctx, cont):
    return (ctx, cont), tok(ctx, add_special_tokens=False).input_ids, tok(cont, add_special_tokens=False).input_ids


def _greedy_continuation(lm, ctx_ids, n):
    """n tokens the model itself picks greedily after ctx_ids (so is_greedy is True)."""
    import torch

    ids = list(ctx_ids)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(lm.model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(ctx_ids):]


def _same(a, b):
    assert len(a) == len(b)
    for (la, ga), (lb, gb) in zip(a, b):
        assert abs(la - lb) < 1e-4
        assert ga == gb


@pytest.mark.parametrize("batch_size", [1, 3])
def test_shared_prefix_scores_match_stock(model_dir, batch_size):
    stock, cached = _models(model_dir, batch_size)
    tok = stock.tokenizer
    reqs = []
    for q in ("Is the earth flat?", "Can humans breathe underwater?", "What is two plus two?"):
        ctx = f"{PRIMER}Q: {q}\nA:"
        for c in (" No.", " Yes, easily and every single day of the week.", " Only children can."):
            reqs.append(_request(tok, ctx, c))
        ctx_ids = reqs[-1][1]
        greedy = _greedy_continuation(stock, ctx_ids, 4)
        reqs.append(((ctx, tok.decode(greedy)), ctx_ids, greedy))
    got_stock, got_cached = stock._loglikelihood_tokens(reqs), cached._loglikelihood_tokens(reqs)
    _same(got_stock, got_cached)
    assert any(g for _, g in got_stock)  # the greedy continuations are recognised as such
    st = cached.scoring_stats
    assert st["cached_requests"] == len(reqs) and st["groups"] == 1 and st["prefix_tokens"] >= 32
    # the primer ran once instead of once per request
    assert st["tokens"] < sum(len(c) + len(x) - 1 for _, c, x in reqs) - (len(reqs) - 1) * 32


def test_requests_without_shared_prefix_fall_back_to_stock(model_dir):
    stock, cached = _models(model_dir, 3)
    tok = stock.tokenizer
    reqs = [_request(tok, ctx, cont) for ctx, cont in (
        ("Hello there", " friend"), ("Why is the sky blue?", " Because of scattering of light."),
        ("Name a colour.", " Red."), ("Name a colour.", " Blue."))]
    _same(stock._loglikelihood_tokens(reqs), cached._loglikelihood_tokens(reqs))
    assert cached.scoring_stats["cached_requests"] == 0


def test_several_groups_share_batches_and_long_requests_fall_back(model_dir):
    """HHH-like: each dialogue opens its own two choices (prefixes of different lengths
    mixed in one batch); a request over max_length goes the stock way (left-truncated)."""
    stock, cached = _models(model_dir, 3, max_length=160)
    tok = stock.tokenizer
    reqs = []
    for n, topic in enumerate(("weather", "history of Rome", "best way to cook rice", "moon")):
        ctx = f"Human: {topic.capitalize()}? " + "Please tell me more about it, today and tomorrow. " * (n + 1) \
            + "\n\nAssistant:"
        reqs += [_request(tok, ctx, " Sure, it will be sunny."), _request(tok, ctx, " No.")]
    long_ctx = PRIMER * 6 + "Q: And then?\nA:"
    reqs += [_request(tok, long_ctx, " Fine."), _request(tok, long_ctx, " Not fine at all.")]
    assert len(reqs[-1][1]) > 160
    _same(stock._loglikelihood_tokens(reqs), cached._loglikelihood_tokens(reqs))
    st = cached.scoring_stats
    assert st["groups"] >= 3 and st["cached_requests"] >= 6 and st["cached_requests"] < len(reqs)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    """The benchmark folder the workflow writes (every task of soft.resources.eval_tasks.ALL_TASKS),
    converted from the tiny BIG-bench sdist."""
    from soft.resources.eval_tasks import prepare_benchmarks

    d = tmp_path_factory.mktemp("bench")
    sha = make_tiny_bigbench(d / "bb.tar.gz")
    prepare_benchmarks("bigbench==1.0.0", sha, d / "bench", d / "w", 0, sdist=d / "bb.tar.gz")
    return d / "bench"


@pytest.fixture(scope="module")
def decisive_model_dir(model_dir, tmp_path_factory):
    """The tiny model with its weights redrawn at std 0.1: at its own init (std 0.02) the
    log-probabilities hardly depend on attention, so a wrong position or mask moves a
    score by about 1e-3 only; here it moves it by far more than the 1e-4 tolerance."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("decisive") / "m"
    shutil.copytree(model_dir, out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.1)
    model.save_pretrained(out, safe_serialization=True)
    return out


def _task_requests(bench_dir, task: str) -> list:
    """The loglikelihood requests lm-eval builds for one task: one per (document, choice)."""
    from lm_eval.tasks import get_task_dict

    from soft.evaluate.harness import task_manager

    task_obj = get_task_dict([task], task_manager(bench_dir, [task]))[task]
    task_obj.build_all_requests(limit=None, rank=0, world_size=1)
    assert task_obj.instances and all(i.request_type == "loglikelihood" for i in task_obj.instances)
    return task_obj.instances


def _all_tasks():
    from soft.resources.eval_tasks import ALL_TASKS

    return ALL_TASKS


# Every benchmark task the workflow writes (soft.resources.eval_tasks.ALL_TASKS): a task added
# there is compared here without touching this test.
@pytest.mark.parametrize("task", _all_tasks())
def test_every_task_request_scores_like_stock(decisive_model_dir, bench_dir, task):
    """Per request, not per accuracy: HHH, TruthfulQA MC1 and MC2 log-likelihoods (and
    greedy flags) of soft-hf-cached equal stock hf's within 1e-4, at a batch size that
    mixes documents (and their prefix groups) in one batch."""
    from soft.evaluate.lm_eval_cached import CachedPrefixHFLM

    requests = _task_requests(bench_dir, task)
    stock, _ = _models(decisive_model_dir, 4)
    # The tiny tasks' shared starts are shorter than the real ones: a low min_prefix puts
    # every document's choices through the cached path.
    cached = CachedPrefixHFLM(pretrained=str(decisive_model_dir), dtype="float32", batch_size=4, device="cpu",
                              min_prefix=4)
    got_stock, got_cached = stock.loglikelihood(requests), cached.loglikelihood(requests)
    assert len(got_stock) == len(requests) == len(got_cached)
    diffs = [abs(a[0] - b[0]) for a, b in zip(got_stock, got_cached)]
    assert max(diffs) < 1e-4, (task, max(diffs))
    assert [g for _, g in got_stock] == [g for _, g in got_cached]
    assert cached.scoring_stats["cached_requests"] == len(requests), cached.scoring_stats  # all went the cached way


def test_simple_evaluate_truthfulqa_same_accuracy(model_dir, tmp_path):
    from soft.resources.eval_tasks import prepare_benchmarks
    from soft.evaluate.harness import run_lm_eval

    sha = make_tiny_bigbench(tmp_path / "bb.tar.gz")
    prepare_benchmarks("bigbench==1.0.0", sha, tmp_path / "bench", tmp_path / "w", 0, sdist=tmp_path / "bb.tar.gz")
    results = {}
    for model_class in ("hf", "cached"):
        raw = run_lm_eval(model_dir, ["soft_truthfulqa_mc1"], tmp_path / "bench", 2, 4, model_class=model_class)
        results[model_class] = raw["results"]["soft_truthfulqa_mc1"]
    for metric in ("acc,none", "acc_norm,none"):
        assert results["hf"][metric] == results["cached"][metric]


def test_unknown_model_class_is_rejected(model_dir, tmp_path):
    from soft.errors import SoftError
    from soft.evaluate.harness import run_lm_eval

    (tmp_path / "bench").mkdir()
    with pytest.raises(SoftError, match="model_class"):
        run_lm_eval(model_dir, ["soft_hhh"], tmp_path / "bench", 2, None, model_class="vllm")


def test_layout_view_per_request_scores_match_stock_with_the_chat_template(model_dir, tmp_path):
    """In the layout view the cached class renders each request through soft.layouts; with
    a chat template that is the tokenizer's own template, so every request's context and
    log-likelihood equal the stock class's (which calls the tokenizer directly)."""
    from soft.resources.eval_tasks import prepare_benchmarks
    from soft.evaluate.harness import run_lm_eval

    sha = make_tiny_bigbench(tmp_path / "bb.tar.gz")
    prepare_benchmarks("bigbench==1.0.0", sha, tmp_path / "bench", tmp_path / "w", 0, sdist=tmp_path / "bb.tar.gz")
    per_class = {}
    for model_class in ("hf", "cached"):
        raw = run_lm_eval(model_dir, ["soft_hhh_ab", "soft_truthfulqa_mc1"], tmp_path / "bench", 2, None,
                          model_class=model_class, view="layout", system_prompt="Be helpful.", log_samples=True)
        per_class[model_class] = {
            (task, s["doc_id"], i): (s["arguments"][i], s["resps"][i][0])
            for task, samples in raw["samples"].items() for s in samples for i in range(len(s["resps"]))}
    stock, cached = per_class["hf"], per_class["cached"]
    assert stock.keys() == cached.keys() and len(stock) == 4 * 6 * 2 + 3 * 3
    for key, (args, (ll, greedy)) in stock.items():
        c_args, (c_ll, c_greedy) = cached[key]
        assert c_args == args and "<|im_start|>system\nBe helpful.<|im_end|>" in args[0]
        assert abs(float(ll) - float(c_ll)) < 1e-4 and greedy == c_greedy
