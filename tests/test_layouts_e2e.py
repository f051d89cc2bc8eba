"""The whole workflow on a tiny model without a chat template (a pretrained model's plain
layout): curriculum scoring, training, validation, probes, the local judge and both
evaluation views run through the real Snakemake DAG, and every output records the plain
layout."""

import json

import pytest
from tiny import REPO, tiny_config

pytestmark = pytest.mark.e2e

PLAIN = {"kind": "plain", "plain": {"system_suffix": "\n\n", "user_prefix": "### User\n",
                                    "answer_prefix": "\n\n### Assistant\n"}}


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    from conftest import snakemake

    workdir = tmp_path_factory.mktemp("plain_run")
    validation = {"validation": str(REPO / "config/validation.jsonl"), "metric": "margin", "patience": 2}
    cfg = tiny_config(
        workdir, chat_template=False,
        experiments={"single_round": {"rounds": 1},
                     "soft_plus": {"rounds": 2, "curriculum": {"order": "easy_to_hard", "scope": "within_round",
                                                              "scorer": "previous", "target": "prompt_response"}}},
        evaluation={"tasks": ["soft_hhh_ab", "soft_truthfulqa_mc1", "soft_truthfulqa_mc2"],
                    "raw_tasks": ["soft_hhh", "soft_bigbench_truthfulqa_mc1"], "batch_size": 4, "limit": 2,
                    "probe": {"prompts": str(REPO / "config/probe_prompts.jsonl"), "max_new_tokens": 8},
                    "judge": {"kind": "local", "reference": "single_round"}},
    )
    import yaml

    data = yaml.safe_load(cfg.read_text())
    data["defaults"]["early_stop"] = validation
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    snakemake(workdir, cfg, timeout=900)
    return workdir


def test_every_stage_ran_in_the_plain_layout(plain_run):
    from transformers import AutoTokenizer

    r = plain_run / "results"
    assert not AutoTokenizer.from_pretrained(plain_run / "resources/models/tiny-llama").chat_template
    for exp, k in (("single_round", 1), ("soft_plus", 1), ("soft_plus", 2)):
        card = json.loads((r / exp / f"models/round{k}/soft_model_card.json").read_text())
        assert card["layout"] == PLAIN
        assert (r / exp / f"curriculum/round{k}_scores.jsonl").is_file() or exp == "single_round"
        assert (r / exp / f"validation/round{k}.json").is_file()
        assert (r / exp / f"probe/round{k}.jsonl").is_file()
    for path in [r / "base_model/eval/round0.json", r / "soft_plus/eval/round2.json"]:
        ev = json.loads(path.read_text())
        assert ev["views"]["layout"]["layout"] == PLAIN
        assert {"soft_hhh_ab", "soft_truthfulqa_mc1", "soft_truthfulqa_mc2", "soft_hhh",
                "soft_bigbench_truthfulqa_mc1"} <= set(ev["tasks"])
        samples = [json.loads(line) for line in path.with_name(path.stem + "_samples.jsonl").read_text().splitlines()]
        assert {s["task"] for s in samples} >= {"soft_hhh_ab_harmless", "soft_truthfulqa_mc2",
                                                "soft_bigbench_truthfulqa_mc1", "soft_hhh_other"}
    assert json.loads((r / "soft_plus/judge.json").read_text())["comparisons"]
