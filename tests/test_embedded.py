"""The full embedded default: SmolLM2-135M-Instruct from PyPI, real BIG-bench tasks,
single-round vs 3-round SOFT and SOFT+ with validation-based early stop, collapse
diagnostics and the local judge (about 16 minutes on 2 cores at commit e309b51, where both
chains stop after round 2; up to about 35 when every round runs). Run with `make test-embedded`.

It runs the repository's own default config in the repository itself, exactly as a user's
`make run` does, so a second run after `make run` finds nothing to do.
"""

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO

pytestmark = pytest.mark.embedded


def test_default_run_writes_table_and_figure():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "all"], cwd=REPO,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-8000:]
    df = pd.read_csv(REPO / "results/tables/metrics.csv")
    stops = {exp: json.loads((REPO / f"results/{exp}/stop.json").read_text())
             for exp in ("single_round", "soft", "soft_plus")}
    for exp, stop in stops.items():
        assert stop["early_stop"] and stop["validation"] == "validation.jsonl"
        assert stop["rounds_configured"] == (1 if exp == "single_round" else 3)
        assert stop["rounds_run"] == len(stop["history"]) - 1 >= 1
        assert stop["stopped_early"] == (stop["rounds_run"] < stop["rounds_configured"])
    points = set(zip(df.experiment, df["round"]))
    assert points == {(exp, k) for exp, stop in stops.items() for k in range(stop["rounds_run"] + 1)}
    n_points = len(points)
    hhh = df[(df.task == "soft_hhh") & (df.metric == "acc_norm")]
    tqa = df[(df.task == "soft_truthfulqa_mc1") & (df.metric == "acc")]
    assert len(hhh) == n_points and len(tqa) == n_points
    # Real scores of a real 135M model: above the floor, below perfect, with a stderr.
    assert hhh.value.between(0.3, 0.95).all() and (hhh.stderr > 0).all()
    assert tqa.value.between(0.05, 0.7).all() and (tqa.stderr > 0).all()
    base = hhh[hhh["round"] == 0].value
    assert base.nunique() == 1  # round 0 is one shared evaluation
    for name in ("metric_vs_round.png", "collapse.png"):
        assert (REPO / "results/figures" / name).stat().st_size > 20_000
    for exp, stop in stops.items():
        for k in range(1, stop["rounds_run"] + 1):
            stats = pd.read_json(REPO / f"results/{exp}/data/round{k}_filter.json", typ="series")
            assert stats["kept"] > 0
    # the signals beside lm-eval's: validation and diagnostics at every point, the judge
    # at every trained round (against the base and, for the chains, the single round)
    for task, metric in (("validation", "margin"), ("diagnostics", "entropy"), ("diagnostics", "distinct_2")):
        assert len(df[(df.task == task) & (df.metric == metric)]) == n_points, (task, metric)
    entropy = df[(df.task == "diagnostics") & (df.metric == "entropy")].value
    assert entropy.between(0.05, 11).all()  # nats per token, below log(49152)
    judged = df[(df.task == "judge_vs_round0") & (df.metric == "win_rate")]
    assert len(judged) == n_points - 3 and judged.value.between(0, 1).all()
    assert set(df[df.task == "judge_vs_single_round"].experiment) == {"soft", "soft_plus"}
    scores = pd.read_json(REPO / "results/soft_plus/curriculum/pool_scores.jsonl", lines=True)
    assert len(scores) == 48 and scores.nll.between(0.1, 20).all()
