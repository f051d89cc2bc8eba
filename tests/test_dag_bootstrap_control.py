"""The bootstrapping control in the DAG: `generation.model: base` has the base model answer
every round's prompts, `previous` (the default) round k-1's model, while training follows
train.init either way."""

from __future__ import annotations

from test_dag import BASE, Plan, dry_run, write_config


def test_generation_model_picks_the_writer_of_each_round(tmp_path):
    cfg = write_config(tmp_path, {"soft": {"rounds": 3},
                                  "soft_base_generator": {"rounds": 3, "generation": {"model": "base"}}})
    plan = Plan(dry_run(tmp_path, cfg))
    for k in (1, 2, 3):
        prev = BASE if k == 1 else f"results/soft/models/round{k - 1}"
        assert plan.one("generate_responses", exp="soft", k=k)["input"][1] == prev
        assert plan.one("generate_responses", exp="soft_base_generator", k=k)["input"][1] == BASE
        # the control still trains round k from round k-1 (train.init: previous)
        prev_control = BASE if k == 1 else f"results/soft_base_generator/models/round{k - 1}"
        assert plan.one("train_model", exp="soft_base_generator", k=k)["input"][1] == prev_control
