"""Unit tests for soft.paper.summary (seed summary, selected rounds, the main table) and the
paper's figures (soft.aggregate.figures)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from soft.errors import SoftError
from soft.io import write_json
from soft.aggregate.figures import plot_benchmarks, plot_collapse_panel, plot_rounds
from soft.paper.summary import (MAIN_COLUMNS, PER_SEED_COLUMNS, main_table, read_stops, selected_rounds, summarize_seeds,
                        tex_escape, write_main_table)

EXPERIMENTS = ["soft", "soft_plus"]
# per-task level at round 0; trained rounds add the experiment's offset plus 0.01 per round
# (soft_hhh, the raw-continuation view, is in the per-seed table but not in the main table)
TASK_BASE = {"soft_hhh_ab_harmless": 0.50, "soft_hhh_ab_helpful": 0.55, "soft_hhh_ab": 0.52, "soft_hhh": 0.48,
             "soft_truthfulqa_mc1": 0.25, "soft_truthfulqa_mc2": 0.40}
OFFSET = {"soft": 0.04, "soft_plus": 0.02}
# soft seed 1 stops after round 1 (round 1 did not beat round 0): it has no round 2
ROUNDS = {("soft", 0): 2, ("soft", 1): 1, ("soft_plus", 0): 2, ("soft_plus", 1): 2}
MARGIN = {("soft", 0): [0.10, 0.20, 0.30], ("soft", 1): [0.10, 0.05],
          ("soft_plus", 0): [0.10, 0.15, 0.12], ("soft_plus", 1): [0.10, 0.12, 0.16]}


def value(task: str, exp: str, seed: int, k: int) -> float:
    return TASK_BASE[task] + (OFFSET[exp] + 0.01 * k if k else 0.0) + 0.02 * seed


def make_df(mc2: bool = True, judge: bool = True, validation: bool = True, diagnostics: bool = True):
    rows = []

    def add(exp, seed, k, task, metric, v, se=math.nan):
        rows.append({"experiment": exp, "seed": seed, "round": k, "task": task, "metric": metric,
                     "value": v, "stderr": se, "n_train_prompts": 16 * k})

    for (exp, seed), last in ROUNDS.items():
        for k in range(last + 1):
            for task in TASK_BASE:
                if task == "soft_truthfulqa_mc2" and not mc2:
                    continue
                # HHH A/B's headline is per item over both orders (soft.stats.HHH_BOTH_ORDERS)
                metric = "acc_both_orders" if task.startswith("soft_hhh_ab") else "acc"
                add(exp, seed, k, task, metric, value(task, exp, seed, k), 0.03 + 0.01 * seed)
                if task != "soft_truthfulqa_mc2":
                    add(exp, seed, k, task, "acc_norm", value(task, exp, seed, k) + 0.01, 0.03)
            if validation:
                add(exp, seed, k, "validation", "margin", MARGIN[(exp, seed)][k])
                add(exp, seed, k, "validation", "acc", 0.5 + 0.05 * k)
            if diagnostics:
                for metric, v in [("entropy", 2.0 - 0.3 * k - 0.1 * seed), ("distinct_1", 0.5), ("distinct_2", 0.8),
                                  ("mean_length", 40.0 + k), ("repetition_rate", 0.05 * k)]:
                    add(exp, seed, k, "diagnostics", metric, v)
            if k:
                add(exp, seed, k, "training", "examples", 10 + k + seed)
                add(exp, seed, k, "training", "optimizer_steps", 3 * k)
                add(exp, seed, k, "filter", "kept_rate", 0.9 - 0.1 * k)
                add(exp, seed, k, "filter", "drop_rate_refusal", 0.1 * k)
                if judge:
                    win = 0.5 + 0.1 * k + 0.05 * seed
                    add(exp, seed, k, "judge_vs_round0", "win_rate", win)
                    add(exp, seed, k, "judge_vs_round0", "tie_rate", 0.1)
                    add(exp, seed, k, "judge_vs_round0", "loss_rate", 0.9 - win)
                    add(exp, seed, k, "judge_vs_round0", "preference", 0.5 + 0.01 * k)
    return pd.DataFrame(rows, columns=PER_SEED_COLUMNS)


def make_stops() -> dict:
    stops = {}
    for (exp, seed), last in ROUNDS.items():
        history = [{"round": k, "value": v} for k, v in enumerate(MARGIN[(exp, seed)])]
        if exp == "soft":
            stopped = last < 2
            best = max(range(len(history)), key=lambda k: (history[k]["value"], -k))
            stops[(exp, seed)] = {"early_stop": True, "metric": "margin", "rounds_configured": 2,
                                  "rounds_run": last, "stopped_early": stopped,
                                  "stop_after_round": last if stopped else None, "best_round": best,
                                  "history": history}
        else:
            stops[(exp, seed)] = {"early_stop": False, "rounds_configured": 2, "rounds_run": last,
                                  "stopped_early": False, "stop_after_round": None, "history": []}
    return stops


@pytest.fixture
def df():
    return make_df()


@pytest.fixture
def stops():
    return make_stops()


def sample_std(vals):
    mean = sum(vals) / len(vals)
    return math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


# ------------------------------------------------------------------ summarize_seeds

def test_summarize_seeds_numbers(df):
    s = summarize_seeds(df)
    assert list(s.columns) == ["experiment", "round", "task", "metric", "mean", "std", "n_seeds", "stderr",
                               "n_train_prompts"]
    keys = list(zip(s.experiment, s["round"], s.task, s.metric))
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    row = s[(s.experiment == "soft_plus") & (s["round"] == 2) & (s.task == "soft_hhh_ab") & (s.metric == "acc_both_orders")].iloc[0]
    vals = [value("soft_hhh_ab", "soft_plus", seed, 2) for seed in (0, 1)]
    assert row["mean"] == pytest.approx(sum(vals) / 2, abs=1e-12)
    assert row["std"] == pytest.approx(sample_std(vals), abs=1e-12)
    assert row["std"] == pytest.approx(0.02 / math.sqrt(2), abs=1e-12)
    assert row.n_seeds == 2
    assert row.stderr == pytest.approx(0.035)  # mean of 0.03 and 0.04
    assert row.n_train_prompts == 32
    # soft round 2: only seed 0 ran it -> std NaN
    one = s[(s.experiment == "soft") & (s["round"] == 2) & (s.task == "soft_hhh_ab") & (s.metric == "acc_both_orders")].iloc[0]
    assert one.n_seeds == 1 and math.isnan(one["std"])
    assert one["mean"] == pytest.approx(value("soft_hhh_ab", "soft", 0, 2))
    # no lm-eval stderr for the signals
    val = s[(s.task == "validation") & (s.metric == "margin")]
    assert val.stderr.isna().all()


def test_summarize_seeds_is_order_independent(df):
    a = summarize_seeds(df)
    b = summarize_seeds(df.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(a, b)


def test_summarize_seeds_none_stderr(df):
    # soft.aggregate.tables writes stderr None for metrics without one
    obj = df.astype({"stderr": object})
    obj.loc[obj.task == "validation", "stderr"] = None
    s = summarize_seeds(obj)
    assert s[s.task == "validation"].stderr.isna().all()
    assert s[s.task == "soft_hhh_ab"].stderr.notna().all()


def test_summarize_seeds_bad_columns(df):
    with pytest.raises(SoftError, match="seed"):
        summarize_seeds(df.drop(columns=["seed"]))


# ------------------------------------------------------------------ selected_rounds

def test_selected_rounds_best_and_last(stops):
    assert selected_rounds(stops) == {("soft", 0): 2, ("soft", 1): 0, ("soft_plus", 0): 2, ("soft_plus", 1): 2}
    assert selected_rounds(stops, "last") == {("soft", 0): 2, ("soft", 1): 1, ("soft_plus", 0): 2,
                                               ("soft_plus", 1): 2}


def test_selected_rounds_bad_mode(stops):
    with pytest.raises(SoftError, match="paper.model_round"):
        selected_rounds(stops, "median")


def test_read_stops(stops, tmp_path):
    instances = {"soft": ["soft", 0], "soft_seed1": ["soft", 1], "soft_plus": ["soft_plus", 0],
                 "soft_plus_seed1": ["soft_plus", 1]}
    paths = []
    for run, (exp, seed) in instances.items():
        paths.append(str(tmp_path / run / "stop.json"))
        write_json(paths[-1], stops[(exp, seed)])
    assert read_stops(paths, instances) == stops
    with pytest.raises(SoftError, match="soft_seed1"):
        read_stops(paths, {"soft": ["soft", 0]})


# ------------------------------------------------------------------ main table

def comparisons_df():
    """Paired changes from round 0 as soft.aggregate.comparisons writes them (pooled, then seeds)."""
    rows = []

    def add(exp, rounds, test, diff, low, high, p, n):
        rows.append({"experiment": exp, "round": rounds, "reference": exp, "reference_round": "0",
                     "task": "soft_hhh_ab", "metric": "acc_both_orders", "n": n, "diff": diff, "ci_low": low, "ci_high": high,
                     "p_value": p, "test": test, "kind": "round0", "n_seeds": 2})

    add("soft", "1-2", "mcnemar_exact", 0.05, 0.01, 0.09, 0.02, 400)
    add("soft", "1-2", "t_over_seeds", 0.05, -0.3, 0.4, 0.5, 2)
    add("soft_plus", "2", "mcnemar_exact", 0.04, -0.01, 0.09, 0.11, 400)
    add("soft_plus", "2", "t_over_seeds", 0.04, -0.05, 0.13, 0.2, 2)
    return pd.DataFrame(rows)


def cell(table, model, label):
    row = table[table.model == model].iloc[0]
    return row[label], row[f"{label} std"]


def test_main_table_at_the_fixed_budget(df, stops):
    table, notes = main_table(df, selected_rounds(stops, "last"), EXPERIMENTS, best=selected_rounds(stops),
                              comparisons=comparisons_df(), stops=stops)
    assert list(table.columns) == [
        "model", "rounds", "prompts", "training examples", "optimiser steps", "n_seeds",
        "HHH", "HHH std", "HHH vs base", "TruthfulQA MC1", "TruthfulQA MC1 std", "TruthfulQA MC1 vs base",
        "TruthfulQA MC2", "TruthfulQA MC2 std", "TruthfulQA MC2 vs base",
        "best round", "HHH at best", "TruthfulQA MC1 at best", "TruthfulQA MC2 at best"]
    assert list(table.model) == ["base model", "soft", "soft_plus"]
    # each chain at its last round; soft seed 1 stopped after round 1
    assert list(table.rounds) == ["0", "1-2", "2"]
    assert list(table.prompts) == ["0", "16-32", "32"]
    assert notes == ["soft seed 1: stopped early after round 1 of 2; reported at its last trained round, "
                     "16 prompts consumed, not the full budget"]
    vals = [value("soft_hhh_ab", "soft", 0, 2), value("soft_hhh_ab", "soft", 1, 1)]
    mean, std = cell(table, "soft", "HHH")
    assert mean == pytest.approx(sum(vals) / 2) and std == pytest.approx(sample_std(vals))
    # training examples: mean over seeds of 10 + k + seed; steps 3k
    soft = table[table.model == "soft"].iloc[0]
    assert soft["training examples"] == pytest.approx((12 + 12) / 2) and soft["optimiser steps"] == pytest.approx(4.5)
    assert math.isnan(table.iloc[0]["training examples"])  # the base model trained on nothing here
    # the paired change from the base model, pooled and over seeds
    assert soft["HHH vs base"] == "+0.050 [+0.010, +0.090], p=0.02; seeds [-0.300, +0.400]"
    assert table.iloc[0]["HHH vs base"] == "–" and soft["TruthfulQA MC1 vs base"] == "–"
    # the best-validated round: soft seed 0 at round 2 (32 prompts), seed 1 at round 0
    assert soft["best round"] == "0-2 (0-32 prompts)"
    best = [value("soft_hhh_ab", "soft", 0, 2), value("soft_hhh_ab", "soft", 1, 0)]
    assert soft["HHH at best"] == pytest.approx(sum(best) / 2)
    assert table[table.model == "soft_plus"].iloc[0]["best round"] == "2 (32 prompts)"  # no early stop: the last


def test_main_table_judge_column_only_when_asked(df, stops):
    table, _ = main_table(df, selected_rounds(stops, "last"), EXPERIMENTS)
    assert "judge preference vs base" not in table.columns and "best round" not in table.columns
    table, _ = main_table(df, selected_rounds(stops, "last"), EXPERIMENTS, judge=True)
    mean, _ = cell(table, "soft_plus", "judge preference vs base")
    assert mean == pytest.approx(0.52)
    assert math.isnan(cell(table, "base model", "judge preference vs base")[0])


def test_main_table_drops_absent_columns(stops):
    table, notes = main_table(make_df(mc2=False, judge=False), selected_rounds(stops, "last"), EXPERIMENTS,
                              judge=True)
    assert "TruthfulQA MC2" not in table.columns and "judge preference vs base std" not in table.columns
    assert "HHH" in table.columns
    assert notes == ["TruthfulQA MC2: not evaluated (add soft_truthfulqa_mc2 to evaluation.tasks)",
                     "judge preference vs base: no judge preference (evaluation.judge.kind: none, or a local "
                     "judge: left out, README)"]


def test_main_table_missing_experiment_and_empty(df, stops):
    table, notes = main_table(df, selected_rounds(stops, "last"), ["soft", "ghost"])
    assert list(table.model) == ["base model", "soft"]
    assert any(n.startswith("ghost:") for n in notes)
    empty = df.iloc[0:0]
    table, notes = main_table(empty, {}, EXPERIMENTS)
    assert len(table) == 0 and list(table.columns)[:6] == ["model", "rounds", "prompts", "training examples",
                                                          "optimiser steps", "n_seeds"]
    assert len(notes) >= len(MAIN_COLUMNS)


def write_all(tmp_path, table, notes, name="main", **kw):
    paths = [tmp_path / f"{name}.csv", tmp_path / f"{name}.md", tmp_path / f"{name}.tex"]
    write_main_table(table, notes, *paths, caption="Main results: SOFT_v2 & 100% of {budget}", **kw)
    return paths


def test_write_main_table_markdown_and_csv(df, stops, tmp_path):
    table, notes = main_table(make_df(mc2=False), selected_rounds(stops, "last"), EXPERIMENTS,
                              best=selected_rounds(stops), comparisons=comparisons_df(), stops=stops)
    table.loc[table.model == "soft_plus", "n_seeds"] = 1  # as if one seed
    table.loc[table.model == "soft_plus", "HHH std"] = float("nan")
    csv, md, tex = write_all(tmp_path, table, notes, appendix=["", "appendix line"])
    lines = md.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Main results: SOFT_v2 & 100% of {budget}"
    assert lines[2] == ("| model | round | prompts | examples | steps | seeds | HHH | HHH: change from base "
                        "[95% CI], p | TruthfulQA MC1 | TruthfulQA MC1: change from base [95% CI], p | best round "
                        "| HHH at best | TruthfulQA MC1 at best |")
    base = next(line for line in lines if line.startswith("| base model |"))
    assert base.startswith("| base model | 0 | 0 | – | – | 2 | 0.530 ± 0.014 | – |")
    plus = next(line for line in lines if line.startswith("| soft_plus |"))
    assert f"| 32 | 12.5 | 6 | 1 | {value('soft_hhh_ab', 'soft_plus', 0, 2) + 0.01:.3f} | +0.040 [-0.010, +0.090], " \
           f"p=0.11; seeds [-0.050, +0.130] |" in plus  # one seed: no ±
    assert lines[-3:] == ["- TruthfulQA MC2: not evaluated (add soft_truthfulqa_mc2 to evaluation.tasks)", "",
                          "appendix line"]
    back = pd.read_csv(csv)
    assert list(back.columns) == list(table.columns)
    assert back["HHH"].tolist() == pytest.approx(table["HHH"].tolist(), abs=1e-6)


def test_write_main_table_latex(df, stops, tmp_path):
    table, notes = main_table(make_df(), selected_rounds(stops, "last"), EXPERIMENTS, comparisons=comparisons_df())
    csv, md, tex = write_all(tmp_path, table, notes)
    text = tex.read_text(encoding="utf-8")
    lines = text.splitlines()
    n_cols = 5 + 2 * len(MAIN_COLUMNS)  # value ± std and the change from base per benchmark
    assert r"\begin{tabular}{l" + "r" * n_cols + "}" in lines
    assert lines.index(r"\toprule") < lines.index(r"\midrule") < lines.index(r"\bottomrule")
    assert r"\caption{Main results: SOFT\_v2 \& 100\% of \{budget\}}" in lines
    assert r"\label{tab:main}" in lines
    assert lines[-1] == r"\end{table*}"
    assert r"soft\_plus & 2 & 32 & 12.5 & 6 & 2 & $" in text
    assert r"$0.530 \pm 0.014$" in text
    assert "soft_plus" not in text.replace("% note", "")  # every underscore escaped
    assert "±" not in text and "–" not in text
    body = [line for line in lines if line.endswith(r"\\")]
    assert all(line.count("&") == n_cols for line in body)
    assert tex_escape("a_b & c%$#{}~^\\<") == (r"a\_b \& c\%\$\#\{\}\textasciitilde{}\textasciicircum{}"
                                               r"\textbackslash{}$<$")


def test_write_main_table_deterministic(df, stops, tmp_path):
    table, notes = main_table(df, selected_rounds(stops, "last"), EXPERIMENTS, best=selected_rounds(stops),
                              comparisons=comparisons_df(), stops=stops)
    first = [p.read_bytes() for p in write_all(tmp_path / "a", table, notes)]
    table2, notes2 = main_table(df.sample(frac=1.0, random_state=1), selected_rounds(stops, "last"), EXPERIMENTS,
                                best=selected_rounds(stops), comparisons=comparisons_df(), stops=stops)
    second = [p.read_bytes() for p in write_all(tmp_path / "b", table2, notes2)]
    assert first == second
    assert not any(str(tmp_path).encode() in b for b in first)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["main.csv", "main.md", "main.tex"]


# ------------------------------------------------------------------ figures

def assert_figure(png, pdf):
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    assert not any(p.name.endswith(".tmp") for p in png.parent.iterdir())


def test_plot_benchmarks(df, stops, tmp_path):
    png, pdf = tmp_path / "bench.png", tmp_path / "bench.pdf"
    notes = plot_benchmarks(df, selected_rounds(stops), EXPERIMENTS, png, pdf)
    assert notes == []
    assert_figure(png, pdf)
    notes = plot_benchmarks(make_df(mc2=False), selected_rounds(stops), EXPERIMENTS + ["ghost"], png, pdf)
    assert "TruthfulQA MC2: no data, left out" in notes and any(n.startswith("ghost:") for n in notes)
    assert_figure(png, pdf)


def test_plot_rounds_and_determinism(df, tmp_path):
    summary = summarize_seeds(df)
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        notes = plot_rounds(summary, EXPERIMENTS, d / "rounds.png", d / "rounds.pdf", "Metric vs round")
        assert notes == []
        assert_figure(d / "rounds.png", d / "rounds.pdf")
    assert (a / "rounds.png").read_bytes() == (b / "rounds.png").read_bytes()
    assert (a / "rounds.pdf").read_bytes() == (b / "rounds.pdf").read_bytes()


def test_plot_rounds_missing_data(df, tmp_path):
    # one experiment, one seed, no MC2 / judge: lm-eval stderr bars, panels left out
    one = summarize_seeds(make_df(mc2=False, judge=False).query("seed == 0"))
    png, pdf = tmp_path / "r.png", tmp_path / "r.pdf"
    notes = plot_rounds(one, ["soft_plus", "ghost"], png, pdf, "ICL diversity")
    assert "ghost: no rows, left out" in notes
    assert any(n.startswith("TruthfulQA MC2") for n in notes)
    assert_figure(png, pdf)
    notes = plot_rounds(summarize_seeds(df), ["ghost"], png, pdf, "Nothing")
    assert "ghost: no rows, left out" in notes
    assert_figure(png, pdf)


def test_plot_collapse_panel(df, stops, tmp_path):
    png, pdf = tmp_path / "c.png", tmp_path / "c.pdf"
    assert plot_collapse_panel(df, stops, EXPERIMENTS, png, pdf) == []
    assert_figure(png, pdf)
    notes = plot_collapse_panel(make_df(validation=False, diagnostics=False), stops, EXPERIMENTS, png, pdf)
    assert [n.split(":")[0] for n in notes] == ["validation", "answer entropy (nats/token)"]
    assert_figure(png, pdf)
    notes = plot_collapse_panel(df.iloc[0:0], {}, EXPERIMENTS, png, pdf)
    assert "soft: no rows, left out" in notes
    assert_figure(png, pdf)


def test_error_bars_are_the_ci_of_the_change_from_round0():
    from soft.aggregate.figures import _error_bar_note, change_error

    comp = comparisons_df()
    # several seeds: the t interval over seeds (0.04 - (-0.05), 0.13 - 0.04)
    below, above, source = change_error(comp, "soft_plus", "2", "soft_hhh_ab", "acc_both_orders")
    assert (below, above, source) == (pytest.approx(0.09), pytest.approx(0.09), "seeds")
    # no interval over seeds (one seed): the paired bootstrap over documents
    comp.loc[comp.test == "t_over_seeds", ["ci_low", "ci_high"]] = float("nan")
    below, above, source = change_error(comp, "soft", "1-2", "soft_hhh_ab", "acc_both_orders")
    assert (below, above, source) == (pytest.approx(0.04), pytest.approx(0.04), "documents")
    assert change_error(comp, "soft", "1", "soft_hhh_ab", "acc_both_orders") == (0.0, 0.0, None)
    assert change_error(None, "soft", "1", "soft_hhh_ab", "acc_both_orders") == (0.0, 0.0, None)
    assert _error_bar_note({"documents", None}) == \
        "error bars: 95% CI of the change from round 0\n(paired bootstrap over documents)"
    assert _error_bar_note({None}) == "no error bars (no paired comparisons)"
