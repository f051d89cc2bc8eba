"""Early stop, collapse diagnostics and the judge, end to end with the tiny model.

The forced collapse: min_delta is larger than the margin can ever move, so round 1
cannot count as an improvement on round 0 and, with patience 1, the chain must stop
after it. Round 2 must then never be planned: no prompts, generations or model of it
may exist, while a chain without the stop runs all its rounds."""

import json
from pathlib import Path

import pandas as pd
import pytest
from tiny import REPO, tiny_config

pytestmark = pytest.mark.e2e

VALIDATION = str(REPO / "config/validation.jsonl")


def collapse_config(workdir: Path) -> Path:
    forced = {"validation": VALIDATION, "metric": "margin", "patience": 1, "min_delta": 1000.0}
    patient = {"validation": VALIDATION, "metric": "margin", "patience": 3, "min_delta": 0.0}
    return tiny_config(
        workdir,
        experiments={"single_round": {"rounds": 1},
                     "collapsing": {"rounds": 3, "early_stop": forced},
                     "patient": {"rounds": 2, "early_stop": patient}},
        evaluation={"tasks": ["soft_hhh_ab"], "raw_tasks": ["soft_hhh"], "batch_size": 4, "limit": 2,
                    "probe": {"prompts": str(REPO / "config/probe_prompts.jsonl"), "max_new_tokens": 12},
                    "judge": {"kind": "local", "reference": "single_round"}},
    )


@pytest.fixture(scope="module")
def collapse_run(tmp_path_factory):
    from conftest import snakemake

    workdir = tmp_path_factory.mktemp("collapse_run")
    cfg = collapse_config(workdir)
    proc = snakemake(workdir, cfg, timeout=900)
    return workdir, cfg, proc


def test_forced_collapse_stops_after_round_1(collapse_run):
    workdir, _, _ = collapse_run
    stop = json.loads((workdir / "results/collapsing/stop.json").read_text())
    assert stop["stopped_early"] and stop["rounds_run"] == 1 and stop["stop_after_round"] == 1
    assert [h["round"] for h in stop["history"]] == [0, 1] and stop["best_round"] == 0
    assert "round 2 was not run" in stop["reason"]
    # round 2 was never planned, let alone run
    for path in ("prompts/round2.jsonl", "data/round2_gen.jsonl", "models/round2", "validation/round2.json",
                 "eval/round2.json", "probe/round2.jsonl"):
        assert not (workdir / "results/collapsing" / path).exists(), path
    assert not list((workdir / "logs/collapsing").rglob("round2*"))


def test_a_chain_that_improves_or_waits_runs_every_round(collapse_run):
    workdir, _, _ = collapse_run
    stop = json.loads((workdir / "results/patient/stop.json").read_text())
    assert not stop["stopped_early"] and stop["rounds_run"] == 2 and len(stop["history"]) == 3
    off = json.loads((workdir / "results/single_round/stop.json").read_text())
    assert off["early_stop"] is False and off["rounds_run"] == 1
    assert (workdir / "results/patient/models/round2/model.safetensors").is_file()


def test_table_holds_chains_of_different_lengths_and_every_signal(collapse_run):
    workdir, _, _ = collapse_run
    df = pd.read_csv(workdir / "results/tables/metrics.csv")
    assert df.groupby("experiment")["round"].max().to_dict() == {"collapsing": 1, "patient": 2, "single_round": 1}
    tasks = set(df.task)
    assert {"soft_hhh", "validation", "diagnostics", "filter", "judge_vs_round0", "judge_vs_single_round"} <= tasks
    diag = df[(df.task == "diagnostics")]
    assert {"entropy", "distinct_1", "distinct_2", "mean_length", "repetition_rate"} <= set(diag.metric)
    assert (diag[diag.metric == "entropy"].value > 0).all()
    # validation has round 0 too: the base model is where the history starts
    val = df[(df.task == "validation") & (df.metric == "margin")]
    assert set(zip(val.experiment, val["round"])) == {("collapsing", 0), ("collapsing", 1),
                                                      ("patient", 0), ("patient", 1), ("patient", 2)}
    judged = df[df.task == "judge_vs_round0"]
    rates = judged.pivot_table(index=["experiment", "round"], columns="metric", values="value")
    assert ((rates.win_rate + rates.tie_rate + rates.loss_rate) - 1).abs().max() < 1e-6
    assert ((rates.preference_ci_low <= rates.preference) & (rates.preference <= rates.preference_ci_high)).all()
    # the reference experiment is not judged against itself
    assert "single_round" not in set(df[df.task == "judge_vs_single_round"].experiment)
    md = (workdir / "results/tables/metrics.md").read_text()
    # the local judge's preference stays out of the Markdown (no signal measured: README)
    assert "validation margin" in md and "judge" not in md
    for name in ("collapse.png", "collapse.pdf", "metric_vs_round.png"):
        assert (workdir / "results/figures" / name).stat().st_size > 1_000


def test_probe_answers_and_judge_files(collapse_run):
    workdir, _, _ = collapse_run
    n_probe = len((REPO / "config/probe_prompts.jsonl").read_text().splitlines())
    base = [json.loads(line) for line in (workdir / "results/base_model/probe/round0.jsonl").read_text().splitlines()]
    assert len(base) == n_probe and all(r["round"] == 0 for r in base)
    judge = json.loads((workdir / "results/patient/judge.json").read_text())
    against = {(c["round"], c["against"]) for c in judge["comparisons"]}
    assert against == {(1, "round0"), (2, "round0"), (1, "single_round"), (2, "single_round")}
    for comp in judge["comparisons"]:
        assert comp["summary"]["n"] == n_probe and len(comp["items"]) == n_probe
        assert all(i["ab"] in {"A", "B", "tie"} and i["ba"] in {"A", "B", "tie"} for i in comp["items"])


def test_rerun_has_nothing_to_do(collapse_run, run_snakemake):
    workdir, cfg, _ = collapse_run
    proc = run_snakemake(workdir, cfg, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
