"""The paper's numbers and main table from a tidy per-seed metrics table (its figures:
soft.aggregate.figures).

Input: one row per (experiment, seed, round, task, metric) with columns PER_SEED_COLUMNS;
round 0 is the base model, repeated under every experiment. Each model is reported at
its selected round per seed (selected_rounds: the early-stop best round or the last),
as the mean and sample std over seeds. Missing tasks degrade to a dropped column or a
note inside the figure, never an error; every writer returns or takes notes that say
what was left out."""

from __future__ import annotations

import math
from pathlib import Path

from soft.aggregate.tables import SEED_COLUMNS, TRAINING_TASK
from soft.errors import SoftError
from soft.io import atomic_path, read_json, write_text
from soft.stats import HEADLINE_METRICS, TEST_SEEDS, format_diff

PER_SEED_COLUMNS = SEED_COLUMNS  # what soft.aggregate.tables.seed_table writes
SUMMARY_COLUMNS = ["experiment", "round", "task", "metric", "mean", "std", "n_seeds", "stderr", "n_train_prompts"]
MODEL_ROUND_MODES = ("best", "last")

# Benchmark columns of the main table and of the benchmark figure: (task, metric, label),
# from soft.stats' one table of headline metrics.
MAIN_COLUMNS = [(h.task, h.metric, h.label) for h in HEADLINE_METRICS]
JUDGE_TASK = "judge_vs_round0"
JUDGE_COLUMN = (JUDGE_TASK, "preference", "judge preference vs base")
# Why a column can be empty everywhere; anything else gets a generic note.
ABSENT_NOTES = {
    "soft_truthfulqa_mc2": "not evaluated (add soft_truthfulqa_mc2 to evaluation.tasks)",
    JUDGE_TASK: "no judge preference (evaluation.judge.kind: none, or a local judge: left out, README)",
}
EMPTY = "–"


# ---------------------------------------------------------------------------- numbers

def check_columns(df, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SoftError(f"{what}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")


def per_seed(df):
    """The table checked, with value / stderr as floats (a stderr of None becomes NaN)."""
    import pandas as pd

    check_columns(df, PER_SEED_COLUMNS, "per-seed metrics table")
    df = df.copy()
    for col in ("value", "stderr"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def summarize_seeds(df):
    """Mean, sample std and count over seeds per (experiment, round, task, metric)."""
    import pandas as pd

    df = per_seed(df)
    keys = ["experiment", "round", "task", "metric"]
    if not len(df):
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    # seed order fixes which n_train_prompts is "first"
    ordered = df.sort_values(keys + ["seed"], kind="stable")
    grouped = ordered.groupby(keys, sort=True)
    out = grouped.agg(mean=("value", "mean"), std=("value", lambda v: v.std(ddof=1)),
                      n_seeds=("seed", "nunique"), stderr=("stderr", "mean"),
                      n_train_prompts=("n_train_prompts", "first")).reset_index()
    out["n_seeds"] = out["n_seeds"].astype(int)
    return out[SUMMARY_COLUMNS].sort_values(keys, kind="stable").reset_index(drop=True)


def selected_rounds(stops: dict, mode: str = "best") -> dict:
    """(experiment, seed) -> the round reported: early stop's best round, or the last."""
    if mode not in MODEL_ROUND_MODES:
        raise SoftError(f"config key 'paper.model_round': {mode!r} is not one of "
                        f"{', '.join(MODEL_ROUND_MODES)}")
    chosen = {}
    for (exp, seed), stop in sorted(stops.items()):
        if "rounds_run" not in stop:
            raise SoftError(f"stop.json of experiment {exp!r} seed {seed}: no 'rounds_run'")
        if mode == "best" and stop.get("early_stop"):
            if "best_round" not in stop:
                raise SoftError(f"stop.json of experiment {exp!r} seed {seed}: early_stop is on but "
                                "'best_round' is missing")
            chosen[(exp, seed)] = int(stop["best_round"])
        else:
            chosen[(exp, seed)] = int(stop["rounds_run"])
    return chosen


def read_stops(paths, instances: dict) -> dict:
    """(experiment, seed) -> stop.json content, from results/<run>/stop.json files
    (instances: run name -> [experiment, seed], as in soft.aggregate.tables.seed_table)."""
    stops = {}
    for path in paths:
        run = Path(path).parent.name
        if run not in instances:
            raise SoftError(f"{path}: no experiment and seed known for run {run!r}")
        exp, seed = instances[run]
        stops[(str(exp), int(seed))] = read_json(path)
    return stops


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def model_points(df, selected: dict, experiments: list[str], base_label: str):
    """[(model, {seed: round}, rows of df at those rounds)]: the base model first, then
    each experiment with rows at its selected rounds; plus notes for those left out."""
    df = per_seed(df)
    notes, points = [], []
    base = df[df["round"] == 0]
    # Round 0 is the same model under every experiment: take one experiment's copy
    # (the first listed that has it) so its seeds are not counted twice.
    owners = [e for e in experiments if (base.experiment == e).any()] or sorted(base.experiment.unique())
    if owners:
        rows = base[base.experiment == owners[0]]
        points.append((base_label, {int(s): 0 for s in sorted(rows.seed.unique())}, rows))
    else:
        notes.append(f"{base_label}: no round-0 rows, left out")
    for exp in experiments:
        seeds = {int(s): k for (e, s), k in sorted(selected.items()) if e == exp}
        if not seeds:
            notes.append(f"{exp}: no stop.json / selected round, left out")
            continue
        mask = (df.experiment == exp) & df.seed.isin(list(seeds)) & \
            (df["round"] == df.seed.map(lambda s: seeds.get(int(s), -1)))
        rows = df[mask]
        have = {int(s) for s in rows.seed.unique()}
        if not have:
            notes.append(f"{exp}: no rows at the selected round(s), left out")
            continue
        for s in sorted(set(seeds) - have):
            notes.append(f"{exp}: seed {s} has no rows at its selected round {seeds[s]}")
        points.append((exp, {s: k for s, k in seeds.items() if s in have}, rows))
    return points, notes


def seed_values(rows, task: str, metric: str) -> list[float]:
    hit = rows[(rows.task == task) & (rows.metric == metric)].sort_values("seed", kind="stable")
    return [float(v) for v in hit.value if not math.isnan(float(v))]


def rounds_label(rounds: list[int]) -> str:
    lo, hi = min(rounds), max(rounds)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def change_cell(comparisons, experiment: str, rounds: str, task: str, metric: str) -> str:
    """"diff [CI], p" of experiment at `rounds` against round 0: the pooled paired test,
    then the t interval over seeds where there are several; "–" when not compared."""
    if comparisons is None or not len(comparisons):
        return EMPTY
    sel = comparisons[(comparisons.experiment == experiment) & (comparisons["round"].astype(str) == rounds) &
                      (comparisons.reference == experiment) & (comparisons.reference_round.astype(str) == "0") &
                      (comparisons.task == task) & (comparisons.metric == metric)]
    pooled = sel[sel.test != TEST_SEEDS]
    if not len(pooled):
        return EMPTY
    text = format_diff(pooled.iloc[0].to_dict())
    seeds = sel[sel.test == TEST_SEEDS]
    if len(seeds) and not math.isnan(float(seeds.iloc[0].ci_low)):
        r = seeds.iloc[0]
        text += f"; seeds [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
    return text


def _mean(vals: list[float]) -> float:
    return sum(vals) / len(vals) if vals else math.nan


def main_table(df, fixed: dict, experiments: list[str], best: dict | None = None, comparisons=None,
               stops: dict | None = None, judge: bool = False, base_label: str = "base model"):
    """The main results table at a fixed prompt budget and notes on what was left out.

    fixed: (experiment, seed) -> the round reported first, each chain's last round (where
    it has consumed its whole budget; selected_rounds(stops, "last")). Per row: that
    round, its cumulative prompts, the training examples and optimiser steps of its
    model, each headline metric (mean and std over seeds) with its paired change from
    the base model (comparisons: soft.aggregate.comparisons' table), and, with `best`, the
    best-validated round with its prompts and headline values as a second view. A chain
    stopped before its budget is named in the notes with the prompts it consumed (stops).
    judge: add the judge's preference against the base model."""
    import pandas as pd

    columns_spec = MAIN_COLUMNS + ([JUDGE_COLUMN] if judge else [])
    points, notes = model_points(df, fixed, experiments, base_label)
    best_points = {}
    if best is not None:
        for model, seeds, rows in model_points(df, best, experiments, base_label)[0][1:]:
            best_points[model] = (seeds, rows)
    records = []
    for i, (model, seeds, rows) in enumerate(points):
        is_base = i == 0 and model == base_label
        rounds = rounds_label(list(seeds.values()))
        prompts = sorted({int(v) for v in rows.n_train_prompts.dropna()})
        rec = {"model": model, "rounds": rounds, "prompts": rounds_label(prompts) if prompts else EMPTY,
               "training examples": _mean(seed_values(rows, TRAINING_TASK, "examples")),
               "optimiser steps": _mean(seed_values(rows, TRAINING_TASK, "optimizer_steps")),
               "n_seeds": len(seeds)}
        for task, metric, label in columns_spec:
            vals = [] if (is_base and task == JUDGE_TASK) else seed_values(rows, task, metric)
            rec[label] = _mean(vals)
            rec[f"{label} std"] = _std(vals)
            if task != JUDGE_TASK:
                rec[f"{label} vs base"] = EMPTY if is_base else change_cell(comparisons, model, rounds, task, metric)
            if vals and len(vals) < len(seeds):
                notes.append(f"{model}: {label} from {len(vals)} of {len(seeds)} seeds")
        if best is not None:
            b_seeds, b_rows = best_points.get(model, (seeds, rows) if is_base else ({}, rows.iloc[0:0]))
            b_prompts = sorted({int(v) for v in b_rows.n_train_prompts.dropna()})
            rec["best round"] = (f"{rounds_label(list(b_seeds.values()))} ({rounds_label(b_prompts)} prompts)"
                                 if b_seeds and b_prompts else EMPTY)
            for task, metric, label in MAIN_COLUMNS:
                rec[f"{label} at best"] = _mean(seed_values(b_rows, task, metric))
        records.append(rec)
    for (exp, seed), stop in sorted((stops or {}).items()):
        if exp in experiments and stop.get("stopped_early"):
            k = int(stop["rounds_run"])
            hit = df[(df.experiment == exp) & (df.seed == seed) & (df["round"] == k)].n_train_prompts
            used = f"{int(hit.iloc[0])} prompts" if len(hit) else "its prompts"
            notes.append(f"{exp} seed {seed}: stopped early after round {k} of {stop.get('rounds_configured')}; "
                         f"reported at its last trained round, {used} consumed, not the full budget")
    columns = ["model", "rounds", "prompts", "training examples", "optimiser steps", "n_seeds"]
    all_columns = list(columns)
    for task, metric, label in columns_spec:
        group = [label, f"{label} std"] + ([f"{label} vs base"] if task != JUDGE_TASK else [])
        all_columns += group
        if any(not math.isnan(r[label]) for r in records):
            columns += group
        elif ((df.task == task) & (df.metric == metric)).any():
            notes.append(f"{label}: no values at the reported rounds")
        else:
            notes.append(f"{label}: {ABSENT_NOTES.get(task, f'no {task} {metric} rows')}")
    if best is not None:
        best_cols = ["best round"] + [f"{label} at best" for t, m, label in MAIN_COLUMNS if f"{label}" in columns]
        all_columns += ["best round"] + [f"{label} at best" for _, _, label in MAIN_COLUMNS]
        columns += best_cols
    table = pd.DataFrame(records, columns=all_columns)
    table = table[columns].reset_index(drop=True)
    table["n_seeds"] = table["n_seeds"].astype(int)
    return table, notes


def _fmt(value, std=None, tex: bool = False, integer: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--" if tex else EMPTY
    if isinstance(value, str):
        return tex_escape(value) if tex else value
    if integer:  # counts; a mean over seeds may fall between two
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    if std is None or math.isnan(std):
        return f"{value:.3f}"
    return f"${value:.3f} \\pm {std:.3f}$" if tex else f"{value:.3f} ± {std:.3f}"


def _display_columns(table) -> list[tuple[str, str | None]]:
    """(header, its std column or None) for every shown column but the model."""
    out = []
    for col in table.columns[1:]:
        if col.endswith(" std"):
            continue
        std = f"{col} std" if f"{col} std" in table.columns else None
        out.append((col, std))
    return out


HEADERS = {"rounds": "round", "n_seeds": "seeds", "optimiser steps": "steps", "training examples": "examples"}


def _header(col: str) -> str:
    if col.endswith(" vs base"):
        return f"{col[:-len(' vs base')]}: change from base [95% CI], p"
    return HEADERS.get(col, col)


TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "–": "--", "±": r"$\pm$", "<": r"$<$", ">": r"$>$"}


def tex_escape(text: str) -> str:
    return "".join(TEX_SPECIALS.get(ch, ch) for ch in str(text))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def write_main_table(table, notes: list[str], csv_path: str | Path, md_path: str | Path,
                     tex_path: str | Path, caption: str, label: str = "tab:main",
                     appendix: list[str] = ()) -> None:
    """main_table's result as CSV, Markdown (mean ± std; paired changes as diff [CI], p)
    and a booktabs LaTeX table; `appendix`: Markdown lines after the notes (the paired
    comparisons between experiments)."""
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")
    shown = _display_columns(table)
    integers = {"training examples", "optimiser steps", "n_seeds"}
    rows = [(str(r["model"]), [(r[c], r[s] if s else None, c in integers) for c, s in shown])
            for _, r in table.iterrows()]

    md = [_one_line(caption), "",
          "| model | " + " | ".join(_header(c) for c, _ in shown) + " |",
          "|---|" + "---|" * len(shown)]
    for model, cells in rows:
        md.append(f"| {model} | " + " | ".join(_fmt(v, s, integer=i) for v, s, i in cells) + " |")
    if notes:
        md += [""] + [f"- {_one_line(n)}" for n in notes]
    md += list(appendix)
    write_text(md_path, "\n".join(md) + "\n")

    tex = ["% generated by soft.paper.summary.write_main_table",
           r"\begin{table*}[t]", r"\centering", r"\small",
           rf"\caption{{{tex_escape(_one_line(caption))}}}", rf"\label{{{label}}}",
           r"\begin{tabular}{l" + "r" * len(shown) + "}", r"\toprule",
           " & ".join(["Model"] + [tex_escape(_header(c)) for c, _ in shown]) + r" \\",
           r"\midrule"]
    for i, (model, cells) in enumerate(rows):
        tex.append(" & ".join([tex_escape(model)] + [_fmt(v, s, tex=True, integer=n) for v, s, n in cells]) + r" \\")
        if i == 0 and len(rows) > 1:
            tex.append(r"\midrule")  # the base model apart from the trained ones
    tex += [r"\bottomrule", r"\end{tabular}"]
    # notes are for the author, not the reader: LaTeX comments
    tex += [f"% note: {_one_line(n)}" for n in notes]
    tex += [r"\end{table*}"]
    write_text(tex_path, "\n".join(tex) + "\n")
