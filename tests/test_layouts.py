"""The plain layout (a pretrained model without a chat template) in every stage that shows
a model a user turn: the layout itself, training data as the optimiser sees it, curriculum
scoring, validation, probes, the local judge and evaluation (both views, per-document
results). The tiny model is built without a chat template (tests/tiny.py)."""

from __future__ import annotations

import json
import math

import pytest

from soft.errors import SoftError
from soft.layouts import Layout, PlainLayout, layout_settings
from soft.principles import load_principles
from tiny import REPO, make_tiny_bigbench, make_tiny_model

PRINCIPLES = load_principles(REPO / "config/principles.yaml")
PLAIN = layout_settings({"template": "plain"})


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("plain") / "pretrained", chat_template=False)


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("chat") / "instruct")


@pytest.fixture(scope="module")
def plain_tok(plain_dir):
    from soft.models import load_tokenizer

    return load_tokenizer(plain_dir, padding_side="right")


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    from soft.resources.eval_tasks import prepare_benchmarks

    d = tmp_path_factory.mktemp("bench")
    sha = make_tiny_bigbench(d / "bb.tar.gz")
    prepare_benchmarks("bigbench==1.0.0", sha, d / "tasks", d / "w", 0, sdist=d / "bb.tar.gz")
    return d / "tasks"


# ----------------------------------------------------------------- the layout


def test_layout_settings_check_the_config_keys():
    assert layout_settings(None) == {"template": "auto", "plain_layout": {
        "system_suffix": "\n\n", "user_prefix": "### User\n", "answer_prefix": "\n\n### Assistant\n"}}
    assert layout_settings({"plain_layout": {"user_prefix": "Q: "}})["plain_layout"]["user_prefix"] == "Q: "
    with pytest.raises(SoftError, match="config key 'base_model.template': 'jinja' is not one of"):
        layout_settings({"template": "jinja"})
    with pytest.raises(SoftError, match="'base_model.plain_layout': unknown key"):
        layout_settings({"plain_layout": {"user_prefx": "Q: "}})


def test_auto_resolves_plain_without_a_template_and_chat_refuses(plain_tok):
    lay = Layout.from_settings(plain_tok, None)
    assert lay.kind == "plain" and lay.add_special_tokens
    assert lay.prompt_text(plain_tok, "Be kind.", "Hi?") == "Be kind.\n\n### User\nHi?\n\n### Assistant\n"
    assert lay.messages_text(plain_tok, [{"role": "system", "content": "Be kind."},
                                         {"role": "user", "content": "Hi?"}]) == lay.prompt_text(plain_tok, "Be kind.", "Hi?")
    assert lay.describe() == {"kind": "plain", "plain": PLAIN["plain_layout"]}
    with pytest.raises(SoftError, match="no chat template"):
        Layout.from_settings(plain_tok, {"template": "chat"})
    with pytest.raises(SoftError, match="roles"):
        lay.messages_text(plain_tok, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])


# ----------------------------------------------------------------- training


def test_plain_training_data_is_what_the_optimiser_sees(plain_dir, tmp_path, monkeypatch):
    """The model learns the plain layout: each row is prompt_text + answer + eos, and the
    loss covers exactly the answer and its eos. The model card records the layout."""
    from trl import SFTTrainer

    from soft.models import load_tokenizer
    from soft.train.finetune import MODEL_CARD, train_model

    tok = load_tokenizer(plain_dir, padding_side="right")
    lay = Layout.from_settings(tok, PLAIN)
    recs = [{"id": f"r{i}", "prompt": f"Tell me about item {i}.", "response": f"It is number {i}.",
             "round": 1, "seed": 0, "exemplar_ids": []} for i in range(4)]
    rows = []
    original = SFTTrainer.training_step

    def recording_step(self, model, inputs, *args, **kwargs):
        for ids, labels in zip(inputs["input_ids"], inputs["labels"]):  # batch 1: no padding
            rows.append(([int(t) for t in ids], [int(t) for t in labels if t != -100]))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "training_step", recording_step)
    train = {"init": "previous", "data": "current", "method": "lora",
             "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
             "learning_rate": 1e-3, "lr_scheduler": "constant", "warmup_ratio": 0.0, "epochs": 1,
             "batch_size": 1, "grad_accum": 1, "max_length": 256, "save_steps": 0}
    out = tmp_path / "round1"
    train_model(recs, plain_dir, out, PRINCIPLES, train, 0, {}, tmp_path / "work", ordered=True, layout=PLAIN)
    assert len(rows) == len(recs)
    for rec, (ids, answer_ids) in zip(recs, rows):
        prompt = lay.prompt_text(tok, PRINCIPLES.system_prompt, rec["prompt"])
        assert tok.decode(ids) == prompt + rec["response"] + tok.eos_token
        assert tok.decode(answer_ids) == rec["response"] + tok.eos_token
    # the dataset itself carries the eos (TRL would add a missing one, other trainers may not)
    from soft.train.finetune import build_dataset

    row = build_dataset(recs[:1], PRINCIPLES, tok, train, lay)[0]
    assert row == {"prompt": lay.prompt_text(tok, PRINCIPLES.system_prompt, recs[0]["prompt"]),
                   "completion": recs[0]["response"] + tok.eos_token}
    card = json.loads((out / MODEL_CARD).read_text())
    assert card["layout"] == {"kind": "plain", "plain": PLAIN["plain_layout"]}


# ----------------------------------------------------------------- curriculum, validation, probe, judge


def test_curriculum_scores_in_the_plain_layout(plain_dir, plain_tok):
    from soft.curriculum.difficulty import score_records
    from soft.scoring import encode_pair, scoring_texts, span_nll
    from soft.models import load_causal_lm

    lay = Layout.from_settings(plain_tok, PLAIN)
    ctx, span = scoring_texts(plain_tok, lay, PRINCIPLES, "How do tides work?", None)
    assert span == "How do tides work?" and ctx == f"{PRINCIPLES.system_prompt}\n\n### User\n"
    ctx, span = scoring_texts(plain_tok, lay, PRINCIPLES, "How do tides work?", "The moon.")
    assert span == "The moon." and ctx.endswith("How do tides work?\n\n### Assistant\n")
    recs = [{"id": "a", "prompt": "How do tides work?", "response": "The moon."},
            {"id": "b", "prompt": "Name a colour.", "response": "Red."}]
    scores = score_records(recs, str(plain_dir), PRINCIPLES, "prompt_response", 2, 128, layout=PLAIN)
    model = load_causal_lm(plain_dir).eval()
    direct = span_nll(model, [encode_pair(plain_tok, *scoring_texts(plain_tok, lay, PRINCIPLES, r["prompt"],
                                                                     r["response"]), 128, True) for r in recs],
                      plain_tok.pad_token_id, 1)
    assert [s["nll"] for s in scores] == [round(n, 6) for n, _ in direct]
    with pytest.raises(SoftError, match="no chat template"):
        score_records(recs, str(plain_dir), PRINCIPLES, "prompt", 2, 128, layout={"template": "chat"})


def test_validation_scores_in_the_plain_layout(plain_dir, tmp_path):
    from soft.validate.early_stop import score_preferences

    path = tmp_path / "val.jsonl"
    path.write_text("".join(json.dumps({"id": f"v{i}", "prompt": f"Question {i}?", "chosen": "A careful answer.",
                                        "rejected": "No."}) + "\n" for i in range(3)))
    metrics = score_preferences(str(plain_dir), str(path), PRINCIPLES, batch_size=2, layout=PLAIN)
    assert 0.0 <= metrics["acc"] <= 1.0 and math.isfinite(metrics["margin"])
    with pytest.raises(SoftError, match="no chat template"):
        score_preferences(str(plain_dir), str(path), PRINCIPLES, layout={"template": "chat"})


def test_probe_generates_in_the_plain_layout(plain_dir, plain_tok, monkeypatch):
    import soft.generate.responses as gen
    from soft.probe.answers import probe_model

    shown = []
    original = gen.generate_hf

    def recording(model, tokenizer, texts, *args, **kwargs):
        shown.extend(texts)
        return original(model, tokenizer, texts, *args, **kwargs)

    monkeypatch.setattr(gen, "generate_hf", recording)
    prompts = [{"id": "p0", "prompt": "What is rain?"}, {"id": "p1", "prompt": "Hello?"}]
    settings = {"max_new_tokens": 4, "temperature": 0.7, "top_p": 0.95, "batch_size": 2}
    records, summary = probe_model(str(plain_dir), prompts, PRINCIPLES, settings, 0, 1, layout=PLAIN)
    assert shown == [Layout.from_settings(plain_tok, PLAIN).prompt_text(plain_tok, PRINCIPLES.system_prompt,
                                                                          p["prompt"]) for p in prompts]
    assert [r["id"] for r in records] == ["p0", "p1"] and summary


def test_local_judge_reads_the_plain_layout(plain_dir):
    from soft.probe.judge import LocalJudge, make_judge

    judge = make_judge({"kind": "local", "batch_size": 2}, str(plain_dir), layout=PLAIN)
    assert isinstance(judge, LocalJudge)
    text, special = judge.judge_text("Which is better?")
    assert text == "### User\nWhich is better?\n\n### Assistant\n" and special
    assert set(judge.verdicts(["Which is better, A or B?", "A or B?"])) <= {"A", "B", "tie"}


# ----------------------------------------------------------------- evaluation


def test_evaluation_views_and_samples_in_the_plain_layout(plain_dir, bench_dir, tmp_path):
    from soft.evaluate.harness import evaluate_model

    out, samples = tmp_path / "round0.json", tmp_path / "round0_samples.jsonl"
    tasks = ["soft_hhh_ab", "soft_truthfulqa_mc1", "soft_truthfulqa_mc2"]
    raw_tasks = ["soft_hhh", "soft_bigbench_truthfulqa_mc1"]
    norm = evaluate_model(plain_dir, tasks, bench_dir, out, batch_size=2, limit=None, device="cpu",
                          raw_tasks=raw_tasks, system_prompt=PRINCIPLES.system_prompt, layout=PLAIN,
                          samples_out=samples)
    assert json.loads(out.read_text()) == norm
    assert norm["views"] == {"layout": {"tasks": tasks, "layout": {"kind": "plain", "plain": PLAIN["plain_layout"]}},
                             "raw": {"tasks": raw_tasks}}
    for name in (*tasks, *raw_tasks):
        assert name in norm["tasks"]
    assert norm["n_samples"]["soft_hhh_ab"] == 4 * 6 and norm["n_samples"]["soft_hhh"] == 4 * 3
    assert set(norm["groups"]) == {"soft_hhh", "soft_hhh_ab"}
    lines = samples.read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [list(r) for r in recs] == [["task", "doc_id", "metrics"]] * len(recs)
    keys = [(r["task"], r["doc_id"]) for r in recs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    by_task = {}
    for r in recs:
        by_task.setdefault(r["task"], []).append(r)
    assert sorted(by_task) == sorted([*(f"soft_hhh_ab_{s}" for s in ("harmless", "helpful", "honest", "other")),
                                      *(f"soft_hhh_{s}" for s in ("harmless", "helpful", "honest", "other")),
                                      "soft_truthfulqa_mc1", "soft_truthfulqa_mc2", "soft_bigbench_truthfulqa_mc1"])
    for task, rs in by_task.items():
        assert [r["doc_id"] for r in rs] == list(range(len(rs)))
        for r in rs:
            if task == "soft_truthfulqa_mc2":
                assert list(r["metrics"]) == ["acc"] and isinstance(r["metrics"]["acc"], float)
            elif task.startswith("soft_hhh_ab_"):
                m = r["metrics"]
                assert list(m) == ["acc", "acc_norm", "margin"] and type(m["acc"]) is int
                # the margin is the preferred letter's log-likelihood minus the other's
                assert m["acc"] == int(m["margin"] > 0) and m["margin"] != 0
            else:
                assert list(r["metrics"]) == ["acc", "acc_norm"] and set(r["metrics"].values()) <= {0, 1}
                assert all(type(v) is int for v in r["metrics"].values())
        # the per-document results average to the task's acc
        acc = sum(r["metrics"]["acc"] for r in rs) / len(rs)
        assert acc == pytest.approx(norm["tasks"][task]["acc"]["value"])
    # the headline HHH number: per item, the two orders' margins summed (soft.stats)
    items = {t: [int(rs[i]["metrics"]["margin"] + rs[i + 1]["metrics"]["margin"] > 0)
                 for i in range(0, len(rs), 2)] for t, rs in by_task.items() if t.startswith("soft_hhh_ab_")}
    for task, wins in items.items():
        assert norm["tasks"][task]["acc_both_orders"]["value"] == pytest.approx(sum(wins) / len(wins))
    pooled = [w for wins in items.values() for w in wins]
    assert len(pooled) == 4 * 3
    assert norm["tasks"]["soft_hhh_ab"]["acc_both_orders"]["value"] == pytest.approx(sum(pooled) / len(pooled))
    assert "acc_both_orders" not in norm["tasks"]["soft_hhh"]
    assert str(tmp_path) not in samples.read_text() and "pretrained" not in samples.read_text()
    # the same model and settings give the same bytes
    again = tmp_path / "again_samples.jsonl"
    evaluate_model(plain_dir, tasks, bench_dir, tmp_path / "again.json", batch_size=2, limit=None, device="cpu",
                   raw_tasks=raw_tasks, system_prompt=PRINCIPLES.system_prompt, layout=PLAIN, samples_out=again)
    assert again.read_bytes() == samples.read_bytes()
    assert (tmp_path / "again.json").read_bytes() == out.read_bytes()


def test_stock_hf_refuses_the_plain_layout_view(plain_dir, bench_dir):
    from soft.evaluate.harness import run_lm_eval

    with pytest.raises(SoftError, match="model_class"):
        run_lm_eval(plain_dir, ["soft_truthfulqa_mc1"], bench_dir, 2, 2, model_class="hf", view="layout",
                    system_prompt=PRINCIPLES.system_prompt, layout=PLAIN)


def test_layout_view_requests_are_the_layout_text(plain_dir, plain_tok, bench_dir):
    """What lm-eval scores in the layout view: the record's user turn after the system
    prompt in the model's layout, the letter/answer directly after it."""
    from lm_eval.tasks import get_task_dict

    from soft.evaluate.harness import load_lm, task_manager

    lm = load_lm(plain_dir, "cached", 2, "cpu", PLAIN)
    tm = task_manager(bench_dir, ["soft_hhh_ab_harmless"])
    task = get_task_dict(["soft_hhh_ab_harmless"], tm)["soft_hhh_ab_harmless"]
    task.build_all_requests(limit=2, rank=0, world_size=1, system_instruction=PRINCIPLES.system_prompt,
                            apply_chat_template=True, chat_template=lm.apply_chat_template)
    docs = [json.loads(line) for line in (bench_dir / "soft_hhh_ab_harmless.jsonl").read_text().splitlines()]
    lay = Layout(kind="plain", plain=PlainLayout())
    for inst in task.instances:
        ctx, cont = inst.arguments
        assert ctx == lay.prompt_text(plain_tok, PRINCIPLES.system_prompt, docs[inst.doc_id]["question"])
        assert cont in ("A", "B")


def test_probe_answers_only_the_first_max_prompts(plain_dir):
    from soft.probe.answers import probe_model

    prompts = [{"id": f"p{i}", "prompt": f"Question {i}?"} for i in range(3)]
    settings = {"max_new_tokens": 2, "temperature": 0.7, "top_p": 0.95, "batch_size": 2, "max_prompts": 2}
    records, _ = probe_model(str(plain_dir), prompts, PRINCIPLES, settings, 0, 1, layout=PLAIN)
    assert [r["id"] for r in records] == ["p0", "p1"]
