"""The tidy metrics table (its figures: soft.aggregate.figures).

One row per (experiment, round, task, metric). Besides lm-eval's tasks the table holds
`validation` (early stop's metric), `diagnostics` (probe answers: entropy, distinct-1/2,
length, repetition), `filter` (the share of round k's generations kept and dropped per
reason), `training` (the examples the round's model trained on and its optimiser steps)
and `judge_vs_<reference>` (the judge's preference). Chains may differ in length (early
stop): each contributes the rounds it ran. Which benchmark number is reported comes from
soft.stats.HEADLINE_METRICS, the one table of headline metrics."""

from __future__ import annotations

from pathlib import Path

from soft.errors import SoftError
from soft.io import atomic_path, read_json
from soft.stats import HEADLINE_METRICS, TEST_WILCOXON, format_diff

COLUMNS = ["experiment", "round", "task", "metric", "value", "stderr", "n_train_prompts"]

# Columns of the Markdown table: (task, metric, label), from the one headline table.
# Absent pairs are skipped.
HEADLINE = [(h.task, h.metric, h.label) for h in HEADLINE_METRICS]
TRAINING_TASK = "training"
# Extra columns of the Markdown table.
SIGNALS = [
    (TRAINING_TASK, "examples", "training examples"),
    (TRAINING_TASK, "optimizer_steps", "optimiser steps"),
    ("validation", "margin", "validation margin"),
    ("validation", "acc", "validation acc"),
    ("judge_vs_round0", "preference", "judge preference vs round 0"),
    ("diagnostics", "entropy", "answer entropy"),
]


def tidy_rows(experiment: str, round_k: int, n_train_prompts: int, eval_json: dict) -> list[dict]:
    rows = []
    for task, metrics in sorted(eval_json["tasks"].items()):
        for metric, vals in sorted(metrics.items()):
            rows.append({"experiment": experiment, "round": round_k, "task": task, "metric": metric,
                         "value": vals["value"], "stderr": vals.get("stderr"),
                         "n_train_prompts": n_train_prompts})
    return rows


def _row(entry: dict, task: str, metric: str, value, stderr=None) -> dict:
    return {"experiment": entry["experiment"], "round": entry["round"], "task": task, "metric": metric,
            "value": value, "stderr": stderr, "n_train_prompts": entry["n_train_prompts"]}


def signal_rows(entry: dict) -> list[dict]:
    """Validation, probe diagnostics and filter rows of one (experiment, round)."""
    rows = []
    if entry.get("validation"):
        for metric, value in sorted(read_json(entry["validation"])["metrics"].items()):
            if metric != "n" and value is not None:
                rows.append(_row(entry, "validation", metric, value))
    if entry.get("diagnostics"):
        for metric, value in sorted(read_json(entry["diagnostics"]).items()):
            if metric != "n":
                rows.append(_row(entry, "diagnostics", metric, value))
    if entry.get("filter"):
        stats = read_json(entry["filter"])
        total = max(stats["total"], 1)
        rows.append(_row(entry, "filter", "kept_rate", round(stats["kept"] / total, 6)))
        for reason, n in sorted(stats["dropped"].items()):
            rows.append(_row(entry, "filter", f"drop_rate_{reason}", round(n / total, 6)))
    rows += training_rows(entry)
    return rows


def training_rows(entry: dict) -> list[dict]:
    """How much the round's model was trained: the examples it trained on (the filter's
    kept count of every round it trained on: one round, or 1..k with train.data:
    cumulative) and the optimiser steps its training record (soft.train.finetune.training_record)
    holds. Unequal data between two chains at the same prompt budget shows here."""
    rows = []
    if entry.get("train_filters"):
        kept = sum(int(read_json(p)["kept"]) for p in entry["train_filters"])
        rows.append(_row(entry, TRAINING_TASK, "examples", kept))
    if entry.get("training"):
        steps = read_json(entry["training"])["train_metrics"]["steps"]
        rows.append(_row(entry, TRAINING_TASK, "optimizer_steps", steps))
    return rows


JUDGE_RATES = ("win_rate", "tie_rate", "loss_rate")
JUDGE_PREFERENCE = ("preference", "preference_ci_low", "preference_ci_high", "preference_p")


def judge_rows(judge_json: dict, entries: list[dict]) -> list[dict]:
    """judge_vs_<reference> rows per judged round: the win / tie / loss rates and, where
    judge.json has it, the judge's mean preference for the round's answer (0.5 = none)
    with its paired 95% interval and p-value (soft.probe.judge.preference_summary)."""
    by_point = {(e["experiment"], e["round"]): e for e in entries}
    rows = []
    for comp in judge_json["comparisons"]:
        entry = by_point[(judge_json["experiment"], comp["round"])]
        summary = comp["summary"]
        for metric in JUDGE_RATES + JUDGE_PREFERENCE:
            if summary.get(metric) is not None:
                rows.append(_row(entry, f"judge_vs_{comp['against']}", metric, summary[metric]))
    return rows


def judge_comparison_rows(judge_json: dict, instances: dict | None = None) -> list[dict]:
    """The judge's preference as comparisons.csv rows: diff = preference - 0.5."""
    exp = judge_json["experiment"]
    name = instances[exp][0] if instances else exp
    rows = []
    for comp in judge_json["comparisons"]:
        s = comp["summary"]
        if s.get("preference") is None:
            continue
        against = comp["against"]
        rows.append({"experiment": name, "round": str(comp["round"]), "reference": name if against == "round0" else against,
                     "reference_round": "0" if against == "round0" else "last", "task": "judge", "metric": "preference",
                     "n": s["n"], "diff": s["preference"] - 0.5, "ci_low": s["preference_ci_low"] - 0.5,
                     "ci_high": s["preference_ci_high"] - 0.5, "p_value": s["preference_p"],
                     "test": TEST_WILCOXON, "kind": "judge", "n_seeds": 1})
    return rows


def metrics_table(entries: list[dict], judges: list[str | Path] = ()):
    """entries: one per (experiment, round) with its n_train_prompts and the paths of its
    eval JSON and, where configured, validation / diagnostics / filter JSON; judges: the
    experiments' judge.json files."""
    import pandas as pd

    rows = []
    for entry in entries:
        rows += tidy_rows(entry["experiment"], entry["round"], entry["n_train_prompts"], read_json(entry["eval"]))
        rows += signal_rows(entry)
    for path in judges:
        rows += judge_rows(read_json(path), entries)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["experiment", "round", "task", "metric"], kind="stable").reset_index(drop=True)


SEED_COLUMNS = ["experiment", "seed", "round", "task", "metric", "value", "stderr", "n_train_prompts"]


def seed_table(df, instances: dict[str, list]):
    """The tidy table by experiment and seed: each run's name (`soft_seed1`) becomes its
    experiment's name and seed (instances: run name -> [experiment, seed])."""
    unknown = sorted(set(df.experiment) - set(instances))
    if unknown:
        raise SoftError(f"no experiment and seed known for run(s) {', '.join(unknown)}")
    out = df.copy()
    out["seed"] = [int(instances[e][1]) for e in df.experiment]
    out["experiment"] = [instances[e][0] for e in df.experiment]
    return out[SEED_COLUMNS].sort_values(["experiment", "seed", "round", "task", "metric"],
                                         kind="stable").reset_index(drop=True)


def one_seed(df, seed: int = 0):
    """The grid's table (COLUMNS) as a per-seed table (SEED_COLUMNS) of one seed, the
    form soft.aggregate.figures draws from: the grid is the paper path with one seed."""
    out = df.copy()
    out["seed"] = int(seed)
    return out[SEED_COLUMNS]


def write_table(df, csv_path: str | Path, md_path: str | Path, comparisons=None, judge: bool = True) -> None:
    """The tidy CSV, and a Markdown view: one row per (experiment, round) with each
    headline metric, its paired change from round 0 (diff [95% CI], p) when comparisons
    are given, and the signals; then the fixed-budget comparisons between experiments.
    judge False: the judge's preference stays in the CSVs but out of the Markdown (the
    offline local judge gives no signal: README)."""
    import pandas as pd

    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")
    if not judge:
        df = df[~df.task.str.startswith("judge_vs_")]
        if comparisons is not None:
            comparisons = comparisons[comparisons.task != "judge"]
    wanted = {(t, m) for t, m, _ in HEADLINE + SIGNALS}
    wide = df[[(t, m) in wanted for t, m in zip(df.task, df.metric)]]
    # A column per headline metric or signal that some row has (MC2 only when it was
    # evaluated, validation only with early stop, ...).
    present = {(t, m) for t, m in zip(wide.task, wide.metric)}
    heads = [h for h in HEADLINE if (h[0], h[1]) in present] or HEADLINE[:1]
    signals = [h for h in SIGNALS if (h[0], h[1]) in present]
    to_base = {}
    if comparisons is not None and len(comparisons):
        for _, c in comparisons[comparisons.reference_round.astype(str) == "0"].iterrows():
            if c.test != "t_over_seeds":
                to_base[(c.experiment, str(c["round"]), c.task, c.metric)] = c.to_dict()
    header = ["experiment", "round", "n_train_prompts"]
    for _, _, label in heads:
        header += [label] + ([f"{label}: change from round 0 [95% CI], p"] if to_base else [])
    header += [label for _, _, label in signals]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (exp, k, n), grp in wide.groupby(["experiment", "round", "n_train_prompts"], sort=True):
        cells = []

        def value(task, metric):
            hit = grp[(grp.task == task) & (grp.metric == metric)]
            if not len(hit) or pd.isna(hit.value.iloc[0]):
                return "–"
            v = float(hit.value.iloc[0])
            return f"{v:.0f}" if task == TRAINING_TASK else f"{v:.3f}"

        for task, metric, _ in heads:
            cells.append(value(task, metric))
            if to_base:
                row = to_base.get((exp, str(k), task, metric))
                cells.append(format_diff(row) if row else "–")
        cells += [value(task, metric) for task, metric, _ in signals]
        lines.append(f"| {exp} | {k} | {n} | " + " | ".join(cells) + " |")
    if comparisons is not None and len(comparisons):
        lines += comparison_lines(comparisons)
    with atomic_path(md_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def comparison_lines(comparisons) -> list[str]:
    """Markdown: the comparisons between experiments (fixed budget) and of the judge."""
    if comparisons is None or not len(comparisons):
        return []
    shown = {(h[0], h[1]) for h in HEADLINE} | {("judge", "preference")}
    wanted = [(t, m) in shown for t, m in zip(comparisons.task, comparisons.metric)]
    keep = comparisons[(comparisons.kind != "round0").to_numpy() & wanted]
    if not len(keep):
        return []
    labels = {(t, m): label for t, m, label in HEADLINE} | {("judge", "preference"): "judge preference - 0.5"}
    lines = ["", "Paired comparisons (candidate - reference; 95% CI; p from exact McNemar on 0/1 outcomes, "
             "Wilcoxon on continuous ones; t over seeds where several):", "",
             "| experiment | round | reference | reference round | metric | n | diff [95% CI], p | test |",
             "|---|---|---|---|---|---|---|---|"]
    for _, c in keep.iterrows():
        lines.append(f"| {c.experiment} | {c['round']} | {c.reference} | {c.reference_round} | "
                     f"{labels[(c.task, c.metric)]} | {int(c.n)} | {format_diff(c.to_dict())} | {c.test} |")
    return lines
