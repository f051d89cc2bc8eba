"""Unit tests for soft.aggregate.tables (tidy table, CSV/Markdown output) and the grid's figures,
drawn by soft.aggregate.figures from the table as one seed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from soft.aggregate.tables import COLUMNS, metrics_table, one_seed, signal_rows, tidy_rows, write_table
from soft.aggregate.figures import COLLAPSE_PANELS, plot_collapse_panel, plot_rounds
from soft.paper.summary import summarize_seeds


def entry(exp: str, k: int, n: int, eval_path: Path, **signals) -> dict:
    return {"experiment": exp, "round": k, "n_train_prompts": n, "eval": eval_path, **signals}


def _eval(tmp: Path, name: str, tasks: dict) -> Path:
    p = tmp / f"{name}.json"
    p.write_text(json.dumps({"tasks": {t: {m: {"value": v, "stderr": s} for m, (v, s) in ms.items()}
                                       for t, ms in tasks.items()}}), encoding="utf-8")
    return p


@pytest.fixture
def evals(tmp_path) -> list[dict]:
    def hhh(acc, norm):
        # the headline HHH is acc_both_orders (per item); acc / acc_norm count each order
        return {"soft_hhh_ab": {"acc_norm": (norm, 0.03), "acc": (acc, 0.031), "acc_both_orders": (acc + 0.01, 0.04)},
                "soft_truthfulqa_mc1": {"acc": (acc / 2, 0.02)}}

    base = _eval(tmp_path, "base", hhh(0.50, 0.52))
    return [
        # deliberately out of order: the table sorts
        entry("soft", 2, 32, _eval(tmp_path, "soft2", hhh(0.60, 0.61))),
        entry("soft", 0, 0, base),
        entry("single_round", 1, 48, _eval(tmp_path, "single1", hhh(0.55, 0.57))),
        entry("soft", 1, 16, _eval(tmp_path, "soft1", hhh(0.58, 0.59))),
        entry("single_round", 0, 0, base),
        entry("soft", 3, 48, _eval(tmp_path, "soft3", hhh(0.62, 0.64))),
    ]


def test_tidy_rows():
    ev = {"tasks": {"t2": {"m": {"value": 0.5, "stderr": 0.1}},
                    "t1": {"b": {"value": 0.25}, "a": {"value": 1.0, "stderr": 0.0}}}}
    rows = tidy_rows("soft", 2, 32, ev)
    assert rows == [
        {"experiment": "soft", "round": 2, "task": "t1", "metric": "a", "value": 1.0, "stderr": 0.0,
         "n_train_prompts": 32},
        {"experiment": "soft", "round": 2, "task": "t1", "metric": "b", "value": 0.25, "stderr": None,
         "n_train_prompts": 32},
        {"experiment": "soft", "round": 2, "task": "t2", "metric": "m", "value": 0.5, "stderr": 0.1,
         "n_train_prompts": 32},
    ]
    assert all(list(r) == COLUMNS for r in rows)


def test_metrics_table_columns_and_order(evals):
    df = metrics_table(evals)
    assert list(df.columns) == ["experiment", "round", "task", "metric", "value", "stderr", "n_train_prompts"]
    assert len(df) == 6 * 4
    keys = list(zip(df.experiment, df["round"], df.task, df.metric))
    assert keys == sorted(keys)
    assert keys[:4] == [("single_round", 0, "soft_hhh_ab", "acc"), ("single_round", 0, "soft_hhh_ab", "acc_both_orders"),
                        ("single_round", 0, "soft_hhh_ab", "acc_norm"), ("single_round", 0, "soft_truthfulqa_mc1", "acc")]
    assert list(df.index) == list(range(24))
    row = df[(df.experiment == "soft") & (df["round"] == 3) & (df.metric == "acc_norm")].iloc[0]
    assert row.value == pytest.approx(0.64)
    assert row.stderr == pytest.approx(0.03)
    assert row.n_train_prompts == 48
    assert df[df.experiment == "soft"].groupby("round").n_train_prompts.first().tolist() == [0, 16, 32, 48]


def test_write_table(evals, tmp_path):
    df = metrics_table(evals)
    csv, md = tmp_path / "t" / "metrics.csv", tmp_path / "t" / "metrics.md"
    write_table(df, csv, md)
    back = pd.read_csv(csv)
    assert list(back.columns) == list(df.columns)
    assert len(back) == len(df)
    assert back.value.tolist() == pytest.approx(df.value.tolist())
    assert csv.read_text().splitlines()[0] == ",".join(df.columns)

    lines = md.read_text(encoding="utf-8").splitlines()
    # one fixed metric per benchmark (soft.stats.HEADLINE_METRICS): HHH's per-order acc and
    # acc_norm are in the CSV only
    assert lines[0] == "| experiment | round | n_train_prompts | HHH | TruthfulQA MC1 |"
    assert lines[1].startswith("|---|---|---|")
    body = lines[2:]
    assert len(body) == 6  # one row per (experiment, round)
    assert [tuple(c.strip() for c in line.strip("|").split("|")[:3]) for line in body] == [
        ("single_round", "0", "0"), ("single_round", "1", "48"),
        ("soft", "0", "0"), ("soft", "1", "16"), ("soft", "2", "32"), ("soft", "3", "48"),
    ]
    assert body[-1] == "| soft | 3 | 48 | 0.630 | 0.310 |"
    assert [p.name for p in sorted(csv.parent.iterdir())] == ["metrics.csv", "metrics.md"]  # no temp files


def test_write_table_missing_metric_shows_dash(tmp_path):
    """A headline metric missing for one row is a dash; one missing everywhere (here MC2,
    and HHH acc_norm) gets no column."""
    ev = _eval(tmp_path, "only_hhh", {"soft_hhh_ab": {"acc_both_orders": (0.5, 0.1)}})
    both = _eval(tmp_path, "both", {"soft_hhh_ab": {"acc_both_orders": (0.6, 0.1)},
                                    "soft_truthfulqa_mc1": {"acc": (0.2, 0.05)}})
    df = metrics_table([entry("x", 0, 0, ev), entry("x", 1, 8, both)])
    write_table(df, tmp_path / "m.csv", tmp_path / "m.md")
    lines = (tmp_path / "m.md").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "| experiment | round | n_train_prompts | HHH | TruthfulQA MC1 |"
    assert lines[2] == "| x | 0 | 0 | 0.500 | – |"
    assert lines[3] == "| x | 1 | 8 | 0.600 | 0.200 |"


def test_grid_figure_against_training_prompts_is_reproducible(evals, tmp_path):
    summary = summarize_seeds(one_seed(metrics_table(evals)))
    experiments = sorted(summary.experiment.unique())
    png1, pdf1 = tmp_path / "a" / "fig.png", tmp_path / "a" / "fig.pdf"
    png2, pdf2 = tmp_path / "b" / "fig.png", tmp_path / "b" / "fig.pdf"
    assert plot_rounds(summary, experiments, png1, pdf1, "grid", x="n_train_prompts") == [
        "TruthfulQA MC2: no data, panel left out"]
    plot_rounds(summary, experiments, png2, pdf2, "grid", x="n_train_prompts")
    assert png1.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf1.read_bytes()[:5] == b"%PDF-"
    assert png1.stat().st_size > 10_000
    assert pdf1.stat().st_size > 1_000
    assert png1.read_bytes() == png2.read_bytes()
    assert pdf1.read_bytes() == pdf2.read_bytes()
    assert sorted(p.name for p in png1.parent.iterdir()) == ["fig.pdf", "fig.png"]
    # the points sit at the training prompts: twice the prompts, another figure
    doubled = summary.assign(n_train_prompts=summary.n_train_prompts * 2)
    one = experiments[:1]  # (one line: no sideways offset)
    plot_rounds(summary, one, tmp_path / "r.png", tmp_path / "r.pdf", "grid", x="n_train_prompts")
    plot_rounds(doubled, one, tmp_path / "d.png", tmp_path / "d.pdf", "grid", x="n_train_prompts")
    assert (tmp_path / "r.png").read_bytes() != (tmp_path / "d.png").read_bytes()
    with pytest.raises(ValueError, match="x must be one of round, n_train_prompts"):
        plot_rounds(summary, experiments, png1, pdf1, "grid", x="epochs")


def _json(tmp: Path, name: str, obj) -> Path:
    p = tmp / name
    p.write_text(json.dumps(obj), encoding="utf-8")
    return p


@pytest.fixture
def chains(tmp_path) -> tuple[list[dict], list[Path], dict]:
    """A 3-round chain that ran to the end and one that stopped after round 1, with
    validation, probe diagnostics, filter stats and judge results."""
    ev = _eval(tmp_path, "ev", {"soft_hhh_ab": {"acc_both_orders": (0.5, 0.1)}})
    entries = []
    for exp, rounds, margins in (("soft", 3, [0.2, 0.3, 0.35, 0.4]), ("fixed", 1, [0.2, 0.1])):
        for k in range(rounds + 1):
            sig = {"validation": _json(tmp_path, f"{exp}_v{k}.json", {"metrics": {"margin": margins[k], "acc": 0.5, "n": 32}}),
                   "diagnostics": _json(tmp_path, f"{exp}_d{k}.json", {"entropy": 2.0 - 0.3 * k, "distinct_1": 0.5,
                                                                        "distinct_2": 0.8 - 0.1 * k, "mean_length": 40.0,
                                                                        "repetition_rate": 0.1 * k, "n": 12})}
            if k:
                sig["filter"] = _json(tmp_path, f"{exp}_f{k}.json", {"total": 16, "kept": 8, "dropped": {"too_short": 2, "no_self_id": 6}})
            entries.append(entry(exp, k, 16 * k, ev, **sig))
    judges = [_json(tmp_path, f"{exp}_judge.json", {"experiment": exp, "comparisons": [
        {"round": k, "against": "round0", "summary": {"n": 12, "win_rate": 0.5, "tie_rate": 0.25, "loss_rate": 0.25}}
        for k in range(1, rounds + 1)]}) for exp, rounds in (("soft", 3), ("fixed", 1))]
    stops = {"soft": {"metric": "margin", "stopped_early": False},
             "fixed": {"metric": "margin", "stopped_early": True, "stop_after_round": 1}}
    return entries, judges, stops


def test_signal_rows_of_every_source(chains):
    entries, judges, _ = chains
    rows = signal_rows(entries[1])  # soft, round 1
    got = {(r["task"], r["metric"]): r["value"] for r in rows}
    assert got[("validation", "margin")] == 0.3 and ("validation", "n") not in got
    assert got[("diagnostics", "entropy")] == pytest.approx(1.7)
    assert got[("filter", "kept_rate")] == 0.5
    assert got[("filter", "drop_rate_no_self_id")] == 0.375
    assert all(r["round"] == 1 and r["n_train_prompts"] == 16 and r["stderr"] is None for r in rows)
    assert not [r for r in signal_rows(entries[0]) if r["task"] == "filter"]  # round 0 generated nothing


def test_table_of_chains_of_different_lengths(chains, tmp_path):
    entries, judges, _ = chains
    df = metrics_table(entries, judges)
    assert df.groupby("experiment")["round"].max().to_dict() == {"fixed": 1, "soft": 3}
    judged = df[df.task == "judge_vs_round0"]
    assert set(judged.metric) == {"win_rate", "tie_rate", "loss_rate"} and 0 not in set(judged["round"])
    write_table(df, tmp_path / "m.csv", tmp_path / "m.md")
    lines = (tmp_path / "m.md").read_text(encoding="utf-8").splitlines()
    # no judge preference in these judge files: no judge column
    assert lines[0] == ("| experiment | round | n_train_prompts | HHH | validation margin | "
                        "validation acc | answer entropy |")
    assert lines[2] == "| fixed | 0 | 0 | 0.500 | 0.200 | 0.500 | 2.000 |"
    assert len(lines) == 2 + 2 + 4


def test_collapse_figure_titles(chains, tmp_path, monkeypatch):
    """The figure's title is the one asked for (not the last panel's), each panel its own."""
    import soft.aggregate.figures

    entries, judges, _ = chains
    drawn = {}

    def keep(fig, png, pdf):
        drawn["title"] = fig._suptitle.get_text()
        drawn["panels"] = [ax.get_title() for ax in fig.axes if ax.get_title()]
    monkeypatch.setattr(soft.aggregate.figures, "save_figure", keep)
    plot_collapse_panel(one_seed(metrics_table(entries, judges)), {}, ["soft"], tmp_path / "t.png",
                        tmp_path / "t.pdf", panels=("validation", "kept"), title="grid collapse")
    assert drawn == {"title": "grid collapse", "panels": ["validation (margin)", "share kept by the filter"]}


def test_grid_collapse_figure_shows_every_signal_and_the_stop(chains, tmp_path):
    entries, judges, stops = chains
    df = one_seed(metrics_table(entries, judges))
    stops = {(exp, 0): stop for exp, stop in stops.items()}
    png, pdf = tmp_path / "c.png", tmp_path / "c.pdf"
    panels = tuple(COLLAPSE_PANELS)
    assert plot_collapse_panel(df, stops, ["fixed", "soft"], png, pdf, panels=panels) == []
    assert png.stat().st_size > 20_000 and pdf.read_bytes()[:5] == b"%PDF-"
    plot_collapse_panel(df, stops, ["fixed", "soft"], tmp_path / "d.png", tmp_path / "d.pdf", panels=panels)
    assert png.read_bytes() == (tmp_path / "d.png").read_bytes()
    # the stopped chain's x: without the stop the figure differs
    plot_collapse_panel(df, {}, ["fixed", "soft"], tmp_path / "n.png", tmp_path / "n.pdf", panels=panels)
    assert png.read_bytes() != (tmp_path / "n.png").read_bytes()
    # the grid leaves out the panels without data (here no probe answers)
    no_probe = df[df.task != "diagnostics"]
    notes = plot_collapse_panel(no_probe, stops, ["fixed", "soft"], tmp_path / "p.png", tmp_path / "p.pdf",
                                panels=panels, drop_empty=True)
    assert notes == [f"{COLLAPSE_PANELS[p][2]}: no data, panel left out"
                     for p in ("entropy", "distinct_2", "length", "repetition")]
    # no signal configured: still a figure, each panel saying so
    plain = one_seed(metrics_table([entry("soft", 0, 0, entries[0]["eval"])]))
    notes = plot_collapse_panel(plain, {}, ["soft"], tmp_path / "e.png", tmp_path / "e.pdf", panels=panels)
    assert notes[0] == "validation: no validation results (early_stop.validation is null)"
    assert len(notes) == len(panels) and (tmp_path / "e.png").stat().st_size > 1_000
