"""The full embedded default: SmolLM2-135M-Instruct from PyPI, real BIG-bench tasks,
single-round vs 3-round SOFT and SOFT+ with validation-based early stop, collapse
diagnostics, the layout view of evaluation with paired comparisons (35 min 39 s in a
fresh-clone `.ci/run` at ec1b6e5, where soft ran three rounds and soft_plus two; 27 min 19 s
at 3cf6f87, where both stopped early), then the cached scoring class against stock
lm-eval's full-set numbers (2 min 49 s). Run with `make test-embedded`.

It runs the repository's own default config in a fresh folder holding only a copy of
config/ (as a fresh clone's `make run` would): the model and benchmarks are prepared and
every round runs, whatever results, resources or Snakemake records the checkout already
holds from an earlier `make run`. test_embedded_run_plans_every_job checks that setup
with a dry run, in seconds, and is not marked embedded.
"""

import json
import subprocess
import sys

import pandas as pd
import pytest
from test_dag import SNAKEFILE, fresh_workdir, parse_job_stats


def test_embedded_run_plans_every_job(tmp_path):
    """The embedded run's folder holds no result: its dry run (without --forceall) plans
    the base model, the benchmarks and the first round of every experiment."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
           str(fresh_workdir(tmp_path)), "--cores", "2", "--dry-run"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = parse_job_stats(proc.stdout + proc.stderr)
    assert stats["prepare_base_model"] == 1 and stats["fetch_benchmarks"] == 1
    assert stats["train_model"] >= 3  # round 1 of single_round, soft and soft_plus at least
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snakemake", "config"]  # nothing else was there


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default run, once for the module's tests."""
    run = fresh_workdir(tmp_path_factory.mktemp("embedded"))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
                           str(run), "--cores", "all"], cwd=run, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-8000:]
    return run


@pytest.mark.embedded
def test_default_run_writes_table_and_figure(default_run):
    run = default_run
    df = pd.read_csv(run / "results/tables/metrics.csv")
    stops = {exp: json.loads((run / f"results/{exp}/stop.json").read_text())
             for exp in ("single_round", "soft", "soft_plus")}
    for exp, stop in stops.items():
        assert stop["early_stop"] and stop["validation"] == "validation.jsonl"
        assert stop["rounds_configured"] == (1 if exp == "single_round" else 3)
        assert stop["rounds_run"] == len(stop["history"]) - 1 >= 1
        assert stop["stopped_early"] == (stop["rounds_run"] < stop["rounds_configured"])
    points = set(zip(df.experiment, df["round"]))
    assert points == {(exp, k) for exp, stop in stops.items() for k in range(stop["rounds_run"] + 1)}
    n_points = len(points)
    # the headline numbers, in the layout view only (the default leaves the raw view out)
    hhh = df[(df.task == "soft_hhh_ab") & (df.metric == "acc_both_orders")]  # per item, both orders
    tqa = df[(df.task == "soft_truthfulqa_mc1") & (df.metric == "acc")]
    mc2 = df[(df.task == "soft_truthfulqa_mc2") & (df.metric == "acc")]
    assert len(hhh) == n_points and len(tqa) == n_points and len(mc2) == n_points
    assert not df.task.isin(["soft_hhh", "soft_bigbench_truthfulqa_mc1"]).any()
    # Real scores of a real 135M model: above the floor, below perfect, with a stderr.
    assert hhh.value.between(0.2, 0.95).all() and (hhh.stderr > 0).all()
    assert tqa.value.between(0.05, 0.7).all() and (tqa.stderr > 0).all()
    assert mc2.value.between(0.05, 0.95).all()
    base = hhh[hhh["round"] == 0].value
    assert base.nunique() == 1  # round 0 is one shared evaluation
    for name in ("metric_vs_round.png", "collapse.png"):
        assert (run / "results/figures" / name).stat().st_size > 20_000
    for exp, stop in stops.items():
        for k in range(1, stop["rounds_run"] + 1):
            stats = pd.read_json(run / f"results/{exp}/data/round{k}_filter.json", typ="series")
            assert stats["kept"] > 0
    # the signals beside lm-eval's: validation and diagnostics at every point; no judge
    # (the default configures none: the only offline judge measured no signal)
    for task, metric in (("validation", "margin"), ("diagnostics", "entropy"), ("diagnostics", "distinct_2")):
        assert len(df[(df.task == task) & (df.metric == metric)]) == n_points, (task, metric)
    entropy = df[(df.task == "diagnostics") & (df.metric == "entropy")].value
    assert entropy.between(0.05, 11).all()  # nats per token, below log(49152)
    assert not df.task.str.startswith("judge").any()
    # every round's paired change from round 0, per headline metric
    comparisons = pd.read_csv(run / "results/tables/comparisons.csv")
    vs_base = comparisons[comparisons.kind == "round0"]
    # HHH (both orders), MC1, MC2 and the per-order HHH second view
    assert len(vs_base) == 4 * (n_points - 3) and vs_base.p_value.between(0, 1).all()
    scores = pd.read_json(run / "results/soft_plus/curriculum/pool_scores.jsonl", lines=True)
    assert len(scores) == 48 and scores.nll.between(0.1, 20).all()


@pytest.mark.embedded
def test_cached_scoring_of_round0_on_the_full_raw_sets_matches_stock_lm_eval(default_run):
    """The project's cached lm-eval class (soft.evaluate.lm_eval_cached, the default model class)
    against stock lm-eval's numbers for the same model and items: SmolLM2-135M-Instruct
    scored by lm-eval's own `hf` class on the full raw sets (soft_hhh: 221 items, BIG-bench
    TruthfulQA MC1: 299 questions after its primer) gave HHH acc 0.4163 / acc_norm 0.6516
    (92 and 144 of 221) and MC1 0.2341 (70 of 299), measured before any project scoring code
    existed (issue 21). The embedded run's base model and tasks, scored again on the full
    sets; same counts."""
    from soft.evaluate.harness import evaluate_model

    run = default_run
    norm = evaluate_model(run / "resources/models/smollm2-135m-instruct", [], run / "resources/benchmarks",
                          run / "full_raw_round0.json", batch_size=4, limit=None, device="cpu",
                          raw_tasks=["soft_hhh", "soft_bigbench_truthfulqa_mc1"], model_class="cached")
    assert norm["n_samples"]["soft_hhh"] == 221 and norm["n_samples"]["soft_bigbench_truthfulqa_mc1"] == 299
    hhh, mc1 = norm["tasks"]["soft_hhh"], norm["tasks"]["soft_bigbench_truthfulqa_mc1"]
    assert round(hhh["acc"]["value"] * 221) == 92 and round(hhh["acc_norm"]["value"] * 221) == 144
    assert round(mc1["acc"]["value"] * 299) == 70
