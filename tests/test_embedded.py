"""The full embedded default: SmolLM2-135M-Instruct from PyPI, real BIG-bench tasks,
single-round vs 3-round SOFT and SOFT+ (about 30 minutes on 2 cores). Run with `make test-embedded`.

It runs the repository's own default config in the repository itself, exactly as a user's
`make run` does, so a second run after `make run` finds nothing to do.
"""

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
    points = set(zip(df.experiment, df["round"]))
    assert points == {("single_round", 0), ("single_round", 1)} | {
        (exp, k) for exp in ("soft", "soft_plus") for k in range(4)}
    hhh = df[(df.task == "soft_hhh") & (df.metric == "acc_norm")]
    tqa = df[(df.task == "soft_truthfulqa_mc1") & (df.metric == "acc")]
    assert len(hhh) == 10 and len(tqa) == 10
    # Real scores of a real 135M model: above the floor, below perfect, with a stderr.
    assert hhh.value.between(0.3, 0.95).all() and (hhh.stderr > 0).all()
    assert tqa.value.between(0.05, 0.7).all() and (tqa.stderr > 0).all()
    base = hhh[hhh["round"] == 0].value
    assert base.nunique() == 1  # round 0 is one shared evaluation
    assert (REPO / "results/figures/metric_vs_round.png").stat().st_size > 20_000
    for exp in ("soft", "soft_plus"):
        for k in (1, 2, 3):
            stats = pd.read_json(REPO / f"results/{exp}/data/round{k}_filter.json", typ="series")
            assert stats["kept"] > 0
    scores = pd.read_json(REPO / "results/soft_plus/curriculum/pool_scores.jsonl", lines=True)
    assert len(scores) == 48 and scores.nll.between(0.1, 20).all()
