"""soft.aggregate.comparisons and the comparison parts of soft.aggregate.tables: which pairs a grid implies,
the tidy comparisons table from synthetic sample files, metrics.md's paired cells,
training rows and the figure's error bars."""

from __future__ import annotations

import json
import shutil
import math

import pandas as pd
import pytest

from soft.train.finetune import training_record
from soft.aggregate.tables import judge_comparison_rows, judge_rows, metrics_table, training_rows, write_table
from soft.aggregate.comparisons import comparison_pairs, comparison_table, plan_comparisons, rounds_label
from soft.errors import SoftError
from soft.aggregate.figures import change_error
from soft.stats import COMPARISON_COLUMNS, TEST_MCNEMAR, TEST_SEEDS


def samples_path(instance, k):
    return f"results/{instance}/eval/round{k}_samples.jsonl"


RUNS = {
    "single_round": {"experiment": "single_round", "seed": 0, "rounds_run": 1},
    "single_round_seed1": {"experiment": "single_round", "seed": 1, "rounds_run": 1},
    "soft": {"experiment": "soft", "seed": 0, "rounds_run": 3},
    "soft_seed1": {"experiment": "soft", "seed": 1, "rounds_run": 2},  # stopped early
}


def test_plan_every_round_vs_round0_and_pairs_at_the_fixed_budget():
    pairs = [{"experiment": "soft", "reference": "single_round"},
             {"experiment": "soft_plus", "reference": "soft"}]  # soft_plus did not run: left out
    specs = plan_comparisons(RUNS, pairs, samples_path)
    got = [(s["experiment"], s["round"], s["reference"], s["reference_round"], s["kind"]) for s in specs]
    assert got == [("single_round", "1", "single_round", "0", "round0"),
                   ("soft", "1", "soft", "0", "round0"), ("soft", "2", "soft", "0", "round0"),
                   ("soft", "3", "soft", "0", "round0"),
                   # seeds stopped at different rounds: their last rounds against round 0
                   ("soft", "2-3", "soft", "0", "fixed budget"),
                   ("soft", "2-3", "single_round", "1", "fixed budget")]
    assert specs[4]["candidate"] == {0: "results/soft/eval/round3_samples.jsonl",
                                     1: "results/soft_seed1/eval/round2_samples.jsonl"}
    # round 3 exists for seed 0 only; round 1 pools both seeds
    assert specs[3]["candidate"] == {0: "results/soft/eval/round3_samples.jsonl"}
    assert specs[1]["baseline"] == {0: "results/soft/eval/round0_samples.jsonl",
                                    1: "results/soft_seed1/eval/round0_samples.jsonl"}
    # the fixed budget: each seed's last round
    assert specs[5]["candidate"] == {0: "results/soft/eval/round3_samples.jsonl",
                                     1: "results/soft_seed1/eval/round2_samples.jsonl"}


def test_plan_twice_the_same_seed_is_an_error():
    runs = {"a": {"experiment": "soft", "seed": 0, "rounds_run": 1},
            "b": {"experiment": "soft", "seed": 0, "rounds_run": 1}}
    with pytest.raises(SoftError, match="twice at seed 0"):
        plan_comparisons(runs, [], samples_path)


def test_comparison_pairs_add_each_ablation_vs_its_reference():
    panels = [{"name": "icl", "experiments": ["icl_fixed", "soft", "icl_growing"], "reference": "soft"},
              {"name": "none", "experiments": ["x"], "reference": None}]
    assert comparison_pairs([{"experiment": "soft", "reference": "single_round"}], panels) == [
        {"experiment": "soft", "reference": "single_round"},
        {"experiment": "icl_fixed", "reference": "soft"}, {"experiment": "icl_growing", "reference": "soft"}]


def test_rounds_label():
    assert rounds_label([2, 2]) == "2" and rounds_label([3, 1, 2]) == "1-3"


def _metrics(task: str, v) -> dict:
    # an A/B HHH document's value is its letter margin (soft.evaluate.harness.letter_margin)
    if task.startswith("soft_hhh_ab_"):
        return {"acc": int(v > 0), "acc_norm": int(v > 0), "margin": v}
    return {"acc": v, "acc_norm": v}


def write_samples(path, task_values: dict[str, list]):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"task": t, "doc_id": i, "metrics": _metrics(t, v)})
             for t in sorted(task_values) for i, v in enumerate(task_values[t])]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_comparison_table_numbers(tmp_path):
    # HHH values are letter margins; documents 2i and 2i+1 are item i in both orders
    base = write_samples(tmp_path / "b.jsonl", {"soft_truthfulqa_mc1": [0, 0, 0, 0, 1, 1],
                                                "soft_hhh_ab_harmless": [-1, 0.5], "soft_hhh_ab_honest": [-1, -1]})
    r1 = write_samples(tmp_path / "r1.jsonl", {"soft_truthfulqa_mc1": [1, 1, 1, 1, 1, 1],
                                               "soft_hhh_ab_harmless": [1, 1], "soft_hhh_ab_honest": [2, -1]})
    specs = [{"experiment": "soft", "round": "1", "reference": "soft", "reference_round": "0", "kind": "round0",
              "candidate": {0: r1}, "baseline": {0: base}}]
    df = comparison_table(specs)
    assert list(df.columns) == COMPARISON_COLUMNS + ["kind", "n_seeds"]
    hhh = df[(df.task == "soft_hhh_ab") & (df.metric == "acc_both_orders")].iloc[0]
    # the headline pools its subtasks' items: 2 items (4 documents), both flipped up
    assert (hhh.n, hhh["diff"], hhh.test) == (2, 1.0, TEST_MCNEMAR)
    assert hhh.p_value == pytest.approx(0.5)
    # the second view counts each order as a document: 4 documents, 2 flipped up
    per_order = df[(df.task == "soft_hhh_ab") & (df.metric == "acc")].iloc[0]
    assert (per_order.n, per_order["diff"], per_order.p_value) == (4, 0.5, pytest.approx(0.5))
    mc1 = df[df.task == "soft_truthfulqa_mc1"].iloc[0]
    assert (mc1.n, mc1["diff"]) == (6, pytest.approx(4 / 6)) and mc1.p_value == pytest.approx(2 * 0.5 ** 4)
    assert set(df.task) == {"soft_hhh_ab", "soft_truthfulqa_mc1"}  # nothing else was evaluated
    # deterministic: same files, same table
    assert comparison_table(specs).equals(df)


def test_comparison_table_over_seeds(tmp_path):
    base = write_samples(tmp_path / "b.jsonl", {"soft_truthfulqa_mc1": [0, 0, 0, 0]})
    s0 = write_samples(tmp_path / "s0.jsonl", {"soft_truthfulqa_mc1": [1, 0, 0, 0]})
    s1 = write_samples(tmp_path / "s1.jsonl", {"soft_truthfulqa_mc1": [1, 1, 1, 0]})
    specs = [{"experiment": "soft", "round": "1", "reference": "soft", "reference_round": "0", "kind": "round0",
              "candidate": {0: s0, 1: s1}, "baseline": {0: base, 1: base}}]
    df = comparison_table(specs)
    assert list(df.test) == [TEST_MCNEMAR, TEST_SEEDS]
    assert df.iloc[0].n == 8 and df.iloc[0]["diff"] == pytest.approx(0.5)
    assert df.iloc[1].n == 2 and df.iloc[1]["diff"] == pytest.approx(0.5)  # (0.25 + 0.75) / 2
    assert (df.n_seeds == 2).all()


@pytest.fixture
def grid(tmp_path):
    ev = tmp_path / "ev.json"
    ev.write_text(json.dumps({"tasks": {"soft_hhh_ab": {"acc_both_orders": {"value": 0.5, "stderr": 0.1}}}}))
    entries = [{"experiment": "soft", "round": k, "n_train_prompts": 16 * k, "eval": ev} for k in range(2)]
    comparisons = pd.DataFrame([
        {"experiment": "soft", "round": "1", "reference": "soft", "reference_round": "0", "task": "soft_hhh_ab",
         "metric": "acc_both_orders", "n": 100, "diff": 0.04, "ci_low": -0.02, "ci_high": 0.1, "p_value": 0.21,
         "test": TEST_MCNEMAR, "kind": "round0", "n_seeds": 1},
        {"experiment": "soft", "round": "1", "reference": "single_round", "reference_round": "1",
         "task": "soft_hhh_ab", "metric": "acc_both_orders", "n": 100, "diff": -0.01, "ci_low": -0.05, "ci_high": 0.03,
         "p_value": 0.8, "test": TEST_MCNEMAR, "kind": "fixed budget", "n_seeds": 1},
    ])
    return entries, comparisons


def test_metrics_md_carries_the_paired_change(grid, tmp_path):
    entries, comparisons = grid
    write_table(metrics_table(entries), tmp_path / "m.csv", tmp_path / "m.md", comparisons)
    lines = (tmp_path / "m.md").read_text(encoding="utf-8").splitlines()
    assert lines[0] == ("| experiment | round | n_train_prompts | HHH | HHH: change from round 0 [95% CI], p |")
    assert lines[2] == "| soft | 0 | 0 | 0.500 | – |"
    assert lines[3] == "| soft | 1 | 16 | 0.500 | +0.040 [-0.020, +0.100], p=0.21 |"
    assert "| soft | 1 | single_round | 1 | HHH | 100 | -0.010 [-0.050, +0.030], p=0.8 | mcnemar_exact |" in lines


def test_figure_error_bars_are_the_paired_ci(grid):
    """The grid's figure: the bar around round 1 is its paired CI against round 0, not the
    fixed-budget comparison with single_round."""
    _, comparisons = grid
    below, above, source = change_error(comparisons, "soft", "1", "soft_hhh_ab", "acc_both_orders")
    assert (below, above, source) == (pytest.approx(0.06), pytest.approx(0.06), "documents")
    assert change_error(comparisons, "soft", "0", "soft_hhh_ab", "acc_both_orders") == (0.0, 0.0, None)


def test_training_rows_from_filters_and_training_record(tmp_path):
    for k, kept in ((1, 7), (2, 5)):
        (tmp_path / f"f{k}.json").write_text(json.dumps({"total": 16, "kept": kept, "dropped": {}}))
    model = tmp_path / "model"
    model.mkdir()
    (model / "soft_model_card.json").write_text(json.dumps({"train_metrics": {"steps": 9, "loss_last": 1.5}}))
    (tmp_path / "round2.json").write_text(json.dumps(training_record(model)))
    # the tables read the record, so the model folder may be gone (storage.keep_round_models)
    shutil.rmtree(model)
    entry = {"experiment": "soft", "round": 2, "n_train_prompts": 32,
             "train_filters": [tmp_path / "f1.json", tmp_path / "f2.json"], "training": tmp_path / "round2.json"}
    got = {(r["task"], r["metric"]): r["value"] for r in training_rows(entry)}
    assert got == {("training", "examples"): 12, ("training", "optimizer_steps"): 9}


def test_training_record_needs_the_cards_steps(tmp_path):
    with pytest.raises(SoftError, match="soft_model_card.json: file not found"):
        training_record(tmp_path)
    (tmp_path / "soft_model_card.json").write_text(json.dumps({"round": 2}))
    with pytest.raises(SoftError, match="soft_model_card.json: no train_metrics.steps"):
        training_record(tmp_path)


def test_judge_preference_rows():
    judge = {"experiment": "soft", "comparisons": [{"round": 1, "against": "round0", "summary": {
        "n": 80, "win_rate": 0.0, "tie_rate": 1.0, "loss_rate": 0.0, "preference": 0.55,
        "preference_ci_low": 0.51, "preference_ci_high": 0.59, "preference_p": 0.01}}]}
    entries = [{"experiment": "soft", "round": 1, "n_train_prompts": 16}]
    got = {r["metric"]: r["value"] for r in judge_rows(judge, entries)}
    assert got["preference"] == 0.55 and got["preference_p"] == 0.01
    (row,) = judge_comparison_rows(judge)
    assert (row["task"], row["metric"], row["reference_round"]) == ("judge", "preference", "0")
    assert (row["diff"], row["ci_low"], row["ci_high"]) == (pytest.approx(0.05), pytest.approx(0.01),
                                                            pytest.approx(0.09))
    assert not math.isnan(row["p_value"])


def test_metrics_md_leaves_a_local_judge_out(grid, tmp_path):
    entries, comparisons = grid
    judge = {"experiment": "soft", "comparisons": [{"round": 1, "against": "round0", "summary": {
        "n": 80, "win_rate": 0.0, "tie_rate": 1.0, "loss_rate": 0.0, "preference": 0.5,
        "preference_ci_low": 0.49, "preference_ci_high": 0.51, "preference_p": 0.9}}]}
    path = tmp_path / "judge.json"
    path.write_text(json.dumps(judge))
    df = metrics_table(entries, [path])
    comparisons = pd.concat([comparisons, pd.DataFrame(judge_comparison_rows(judge))], ignore_index=True)
    write_table(df, tmp_path / "m.csv", tmp_path / "m.md", comparisons)
    assert "judge preference" in (tmp_path / "m.md").read_text(encoding="utf-8")
    write_table(df, tmp_path / "m.csv", tmp_path / "m.md", comparisons, judge=False)
    assert "judge" not in (tmp_path / "m.md").read_text(encoding="utf-8")
    assert "judge_vs_round0" in (tmp_path / "m.csv").read_text(encoding="utf-8")  # the data stays


def test_shipped_ablations_name_their_reference(monkeypatch):
    """Each shipped ablation's experiments are compared with the experiment its config
    judges against (evaluation.judge.reference): `soft` in each."""
    from pathlib import Path

    import yaml

    from soft.config import included_experiments, load_schema, paper_settings

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # paper.include paths are relative to the repository
    config = yaml.safe_load((repo / "config/config.yaml").read_text())
    schema = load_schema(repo / "config/schema/config.schema.yaml")
    _, panels = included_experiments(config, paper_settings(config, schema), schema)
    assert {p["name"]: p["reference"] for p in panels} == {"icl_diversity": "soft", "training_order": "soft",
                                                             "bootstrap_control": "soft"}
    pairs = comparison_pairs(config.get("comparisons") or schema["properties"]["comparisons"]["default"], panels)
    assert {"experiment": "icl_fixed", "reference": "soft"} in pairs
    assert {"experiment": "soft_hard_to_easy", "reference": "soft"} in pairs
    assert {"experiment": "soft_base_generator", "reference": "soft"} in pairs
    assert {"experiment": "soft", "reference": "single_round"} == pairs[0]


def test_no_comparisons_no_lines():
    from soft.aggregate.tables import comparison_lines

    # no per-document samples: an empty comparisons table, as read back from its CSV
    assert comparison_lines(pd.DataFrame(columns=COMPARISON_COLUMNS + ["kind", "n_seeds"])) == []


def test_two_sample_files_compared_from_the_command_line(tmp_path, capsys):
    # e.g. round 0 scored in bf16 against fp32: the means, the paired test and the flips
    from soft.aggregate.comparisons import main

    fp32 = write_samples(tmp_path / "fp32.jsonl", {"soft_truthfulqa_mc1": [0, 0, 1, 1, 1, 0],
                                                   "soft_hhh_ab_harmless": [0, 1], "soft_hhh_ab_honest": [1, 0]})
    bf16 = write_samples(tmp_path / "bf16.jsonl", {"soft_truthfulqa_mc1": [0, 1, 1, 1, 1, 0],
                                                   "soft_hhh_ab_harmless": [0, 1], "soft_hhh_ab_honest": [1, 0]})
    assert main([str(bf16), str(fp32)]) == 0
    out = capsys.readouterr().out.splitlines()
    # HHH: 2 items (each shown in both orders); its second view counts the 4 documents
    assert out[2] == "| HHH | 2 | 1.000 | 1.000 | +0.000 [+0.000, +0.000], p=1 (mcnemar_exact) | 0 |"
    assert out[3].startswith("| TruthfulQA MC1 | 6 | 0.500 | 0.667 | +0.167 [") and out[3].endswith(
        "p=1 (mcnemar_exact) | 1 |")
    assert out[4] == ("| HHH A/B (each order a document) | 4 | 0.500 | 0.500 | +0.000 [+0.000, +0.000], p=1 "
                      "(mcnemar_exact) | 0 |")
    assert len(out) == 5  # MC2 and the raw view were not scored
    other = write_samples(tmp_path / "other.jsonl", {"soft_truthfulqa_mc1": [0, 1]})
    assert main([str(other), str(fp32)]) == 2
    assert "scored on different documents" in capsys.readouterr().err
