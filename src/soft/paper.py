"""The paper's tables and figures from a tidy per-seed metrics table.

Input: one row per (experiment, seed, round, task, metric) with columns PER_SEED_COLUMNS;
round 0 is the base model, repeated under every experiment. Each model is reported at
its selected round per seed (selected_rounds: the early-stop best round or the last),
as the mean and sample std over seeds. Missing tasks degrade to a dropped column or a
note inside the figure, never an error; every writer returns or takes notes that say
what was left out."""

from __future__ import annotations

import math
from pathlib import Path

from soft.aggregate import SEED_COLUMNS, TRAINING_TASK, save_figure
from soft.errors import SoftError
from soft.io import atomic_path, read_json, write_text
from soft.stats import HEADLINE_METRICS, TEST_SEEDS, format_diff

PER_SEED_COLUMNS = SEED_COLUMNS  # what soft.aggregate.seed_table writes
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
# Panels of the metric-vs-round figure: (task, metric, title).
ROUND_PANELS = [(h.task, h.metric, h.label) for h in HEADLINE_METRICS]

ONE_COLUMN_IN = 3.5
TWO_COLUMN_IN = 7.0
BASE_COLOUR = "0.55"
EMPTY = "–"


# ---------------------------------------------------------------------------- numbers

def _check_columns(df, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SoftError(f"{what}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))})")


def _per_seed(df):
    """The table checked, with value / stderr as floats (a stderr of None becomes NaN)."""
    import pandas as pd

    _check_columns(df, PER_SEED_COLUMNS, "per-seed metrics table")
    df = df.copy()
    for col in ("value", "stderr"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def summarize_seeds(df):
    """Mean, sample std and count over seeds per (experiment, round, task, metric)."""
    import pandas as pd

    df = _per_seed(df)
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
    (instances: run name -> [experiment, seed], as in soft.aggregate.seed_table)."""
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


def _model_points(df, selected: dict, experiments: list[str], base_label: str):
    """[(model, {seed: round}, rows of df at those rounds)]: the base model first, then
    each experiment with rows at its selected rounds; plus notes for those left out."""
    df = _per_seed(df)
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


def _values(rows, task: str, metric: str) -> list[float]:
    hit = rows[(rows.task == task) & (rows.metric == metric)].sort_values("seed", kind="stable")
    return [float(v) for v in hit.value if not math.isnan(float(v))]


def _rounds_label(rounds: list[int]) -> str:
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
    the base model (comparisons: soft.comparisons' table), and, with `best`, the
    best-validated round with its prompts and headline values as a second view. A chain
    stopped before its budget is named in the notes with the prompts it consumed (stops).
    judge: add the judge's preference against the base model."""
    import pandas as pd

    columns_spec = MAIN_COLUMNS + ([JUDGE_COLUMN] if judge else [])
    points, notes = _model_points(df, fixed, experiments, base_label)
    best_points = {}
    if best is not None:
        for model, seeds, rows in _model_points(df, best, experiments, base_label)[0][1:]:
            best_points[model] = (seeds, rows)
    records = []
    for i, (model, seeds, rows) in enumerate(points):
        is_base = i == 0 and model == base_label
        rounds = _rounds_label(list(seeds.values()))
        prompts = sorted({int(v) for v in rows.n_train_prompts.dropna()})
        rec = {"model": model, "rounds": rounds, "prompts": _rounds_label(prompts) if prompts else EMPTY,
               "training examples": _mean(_values(rows, TRAINING_TASK, "examples")),
               "optimiser steps": _mean(_values(rows, TRAINING_TASK, "optimizer_steps")),
               "n_seeds": len(seeds)}
        for task, metric, label in columns_spec:
            vals = [] if (is_base and task == JUDGE_TASK) else _values(rows, task, metric)
            rec[label] = _mean(vals)
            rec[f"{label} std"] = _std(vals)
            if task != JUDGE_TASK:
                rec[f"{label} vs base"] = EMPTY if is_base else change_cell(comparisons, model, rounds, task, metric)
            if vals and len(vals) < len(seeds):
                notes.append(f"{model}: {label} from {len(vals)} of {len(seeds)} seeds")
        if best is not None:
            b_seeds, b_rows = best_points.get(model, (seeds, rows) if is_base else ({}, rows.iloc[0:0]))
            b_prompts = sorted({int(v) for v in b_rows.n_train_prompts.dropna()})
            rec["best round"] = (f"{_rounds_label(list(b_seeds.values()))} ({_rounds_label(b_prompts)} prompts)"
                                 if b_seeds and b_prompts else EMPTY)
            for task, metric, label in MAIN_COLUMNS:
                rec[f"{label} at best"] = _mean(_values(b_rows, task, metric))
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

    tex = ["% generated by soft.paper.write_main_table",
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


# ---------------------------------------------------------------------------- figures

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


STYLE = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 9, "lines.linewidth": 1.4,
         "lines.markersize": 4, "axes.spines.top": False, "axes.spines.right": False,
         "font.family": "DejaVu Sans", "pdf.fonttype": 42, "svg.hashsalt": "soft"}


def _figure(wide: bool, height: float, ncols: int = 1, legend_row: float = 0.0):
    """A figure of column (3.5 in) or page (7.0 in) width in the paper's style; with
    legend_row, a row of that relative height under the panels for a shared legend (an
    axes of its own, so save_figure's tight_layout keeps room for it)."""
    plt = _pyplot()
    fig = plt.figure(figsize=(TWO_COLUMN_IN if wide else ONE_COLUMN_IN, height))
    if not legend_row:
        return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)], None
    grid = fig.add_gridspec(2, ncols, height_ratios=[1.0, legend_row])
    legend_ax = fig.add_subplot(grid[1, :])
    legend_ax.axis("off")
    return fig, [fig.add_subplot(grid[0, i]) for i in range(ncols)], legend_ax


def experiment_colours(experiments: list[str]) -> dict[str, str]:
    """A fixed colour per experiment, in the order given (colour-blind safe palette)."""
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
    return {e: palette[i % len(palette)] for i, e in enumerate(experiments)}


def _empty_note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)


def _int_rounds(ax, last: int) -> None:
    ax.set_xlim(-0.3, last + 0.3)
    ax.set_xticks(range(last + 1))
    ax.set_xlabel("round")


def change_error(comparisons, experiment: str, rounds: str, task: str, metric: str) -> tuple[float, float, str | None]:
    """(below, above, source) of the 95% CI of the change from round 0, to draw around a
    point: the t interval over seeds where several seeds give one, else the paired
    bootstrap over documents (seeds pooled); (0, 0, None) when there is no comparison."""
    if comparisons is None or not len(comparisons):
        return 0.0, 0.0, None
    sel = comparisons[(comparisons.experiment == experiment) & (comparisons["round"].astype(str) == str(rounds)) &
                      (comparisons.reference == experiment) & (comparisons.reference_round.astype(str) == "0") &
                      (comparisons.task == task) & (comparisons.metric == metric)]
    for test, source in ((TEST_SEEDS, "seeds"), (None, "documents")):
        rows = sel[sel.test == test] if test else sel[sel.test != TEST_SEEDS]
        if len(rows):
            r = rows.iloc[0]
            if not any(math.isnan(float(r[c])) for c in ("diff", "ci_low", "ci_high")):
                return max(float(r["diff"] - r.ci_low), 0.0), max(float(r.ci_high - r["diff"]), 0.0), source
    return 0.0, 0.0, None


def _error_bar_note(sources: set) -> str:
    """The legend's statement of what the bars are."""
    sources = {s for s in sources if s}
    if not sources:
        return "no error bars (no paired comparisons)"
    what = {"seeds": "t interval over seeds", "documents": "paired bootstrap over documents"}
    return "error bars: 95% CI of the change from round 0 (" + "; ".join(what[s] for s in sorted(sources, reverse=True)) + ")"


def plot_benchmarks(df, selected: dict, experiments: list[str], png: str | Path, pdf: str | Path,
                    base_label: str = "base model", comparisons=None) -> list[str]:
    """Grouped bars: each headline benchmark, the base model and every experiment at its
    reported round (mean over seeds); an experiment's error bar is the 95% CI of its
    change from the base model (change_error), drawn around its bar."""
    import matplotlib

    points, notes = _model_points(df, selected, experiments, base_label)
    benches = [(t, m, label) for t, m, label in MAIN_COLUMNS if t != JUDGE_TASK]
    present = [b for b in benches if any(_values(rows, b[0], b[1]) for _, _, rows in points)]
    notes += [f"{label}: no data, left out" for t, m, label in benches if (t, m, label) not in present]
    colours = {base_label: BASE_COLOUR, **experiment_colours(experiments)}
    with matplotlib.rc_context(STYLE):
        fig, (ax,), _ = _figure(wide=True, height=2.6)
        if not present or not points:
            _empty_note(ax, "no benchmark results to plot")
        else:
            width = 0.8 / len(points)
            top = 0.0
            sources = set()
            for j, (model, seeds, rows) in enumerate(points):
                means, below, above = [], [], []
                rounds = _rounds_label(list(seeds.values()))
                for task, metric, _ in present:
                    vals = _values(rows, task, metric)
                    means.append(sum(vals) / len(vals) if vals else math.nan)
                    lo, hi, source = (0.0, 0.0, None) if model == base_label else \
                        change_error(comparisons, model, rounds, task, metric)
                    sources.add(source)
                    below.append(lo)
                    above.append(hi)
                    top = max(top, (means[-1] if vals else 0) + hi)
                errs = [below, above]
                xs = [i - 0.4 + width * (j + 0.5) for i in range(len(present))]
                label = model if model == base_label else f"{model} (round {rounds})"
                ax.bar(xs, means, width, yerr=errs, capsize=1.5, color=colours.get(model, BASE_COLOUR),
                       label=label, error_kw={"elinewidth": 0.8, "capthick": 0.8})
            ax.set_xticks(range(len(present)))
            # two-line tick labels: "TruthfulQA MC1" side by side would run into each other
            ax.set_xticklabels([label.replace(" ", "\n", 1) for _, _, label in present])
            ax.set_xlim(-0.5, len(present) - 0.5)
            ax.set_ylim(0, min(1.0, top * 1.1 + 0.02) if top > 0 else 1.0)
            ax.set_ylabel("accuracy")
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
            ax.legend(ncol=min(len(points), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                      frameon=False, title=_error_bar_note(sources), title_fontsize=8)
        save_figure(fig, png, pdf)
    return notes


def plot_rounds(summary, experiments: list[str], png: str | Path, pdf: str | Path, title: str,
                comparisons=None) -> list[str]:
    """Headline metrics against round, one line per listed experiment (round 0 = base);
    error bars: the 95% CI of each round's change from round 0 (change_error)."""
    import matplotlib

    _check_columns(summary, SUMMARY_COLUMNS, "seed summary")
    notes = []
    sub = summary[summary.experiment.isin(experiments)]
    shown = [e for e in experiments if (sub.experiment == e).any()]
    notes += [f"{e}: no rows, left out" for e in experiments if e not in shown]
    panels = [p for p in ROUND_PANELS if ((sub.task == p[0]) & (sub.metric == p[1])).any()]
    notes += [f"{label}: no data, panel left out" for t, m, label in ROUND_PANELS if (t, m, label) not in panels]
    colours = experiment_colours(experiments)
    n = max(len(panels), 1)
    last = int(sub["round"].max()) if len(sub) else 1
    # a small sideways offset keeps overlapping error bars apart; ticks stay on integers
    dodge = {e: (i - (len(shown) - 1) / 2) * min(0.05, 0.3 / max(len(shown), 1)) for i, e in enumerate(shown)}
    with matplotlib.rc_context(STYLE):
        fig, axes, legend_ax = _figure(wide=n > 1, height=2.6 if n > 1 else 3.0, ncols=n,
                                       legend_row=0.16 if n > 1 else 0.22)
        ns = set()
        if not panels:
            _empty_note(axes[0], "no results for " + (", ".join(experiments) or "any experiment"))
        handles = {}
        for ax, (task, metric, label) in zip(axes, panels):
            for exp in shown:
                s = sub[(sub.experiment == exp) & (sub.task == task) & (sub.metric == metric)].sort_values("round")
                if not len(s):
                    continue
                bars = [change_error(comparisons, exp, str(k), task, metric) if k else (0.0, 0.0, None)
                        for k in s["round"]]
                ns |= {b[2] for b in bars}
                err = [[b[0] for b in bars], [b[1] for b in bars]]
                h = ax.errorbar([r + dodge[exp] for r in s["round"]], s["mean"], yerr=err, marker="o",
                                capsize=2, color=colours[exp], label=exp, elinewidth=0.8)
                handles.setdefault(exp, h)
            if task == JUDGE_TASK:
                ax.axhline(0.5, color="0.6", linestyle="--", linewidth=0.8)  # a tie with the base
            _int_rounds(ax, last)
            ax.set_title(label)
            ax.grid(alpha=0.3)
        if panels:
            axes[0].set_ylabel("score")
        fig.suptitle(title)
        if handles:
            legend_ax.legend([handles[e] for e in shown if e in handles], [e for e in shown if e in handles],
                             loc="center", ncol=min(len(handles), 4 if n > 1 else 2), frameon=False,
                             title=_error_bar_note(ns), title_fontsize=8)
        save_figure(fig, png, pdf)
    return notes


def plot_collapse_panel(df, stops: dict, experiments: list[str], png: str | Path, pdf: str | Path) -> list[str]:
    """Validation metric (each experiment's own stop metric) and answer entropy against
    round, mean over seeds with std bars; x marks where seeds stopped early."""
    import matplotlib

    df = _per_seed(df)
    notes = []
    colours = experiment_colours(experiments)
    shown = [e for e in experiments if (df.experiment == e).any()]
    notes += [f"{e}: no rows, left out" for e in experiments if e not in shown]

    def stop_metric(exp):
        for (e, _), stop in sorted(stops.items()):
            if e == exp and stop.get("metric"):
                return stop["metric"]
        return "margin"

    panels = [("validation", stop_metric, "validation"), ("diagnostics", lambda e: "entropy", "answer entropy")]
    last = int(df["round"].max()) if len(df) else 1
    with matplotlib.rc_context(STYLE):
        fig, axes, legend_ax = _figure(wide=True, height=2.8, ncols=2, legend_row=0.12)
        handles, stop_handle = {}, None
        for ax, (task, metric_of, title) in zip(axes, panels):
            used = []
            for i, exp in enumerate(shown):
                metric = metric_of(exp)
                rows = df[(df.experiment == exp) & (df.task == task) & (df.metric == metric)]
                if not len(rows):
                    continue
                used.append(metric)
                by_round = rows.groupby("round", sort=True).value
                means, stds = by_round.mean(), by_round.std(ddof=1).fillna(0.0)
                h = ax.errorbar(list(means.index), list(means), yerr=list(stds), marker="o", capsize=2,
                                color=colours[exp], label=exp, elinewidth=0.8)
                handles.setdefault(exp, h)
                # stopped seeds grouped by their last round: one x at their mean value there
                stopped: dict[int, list[float]] = {}
                for (e, seed), stop in sorted(stops.items()):
                    if e == exp and stop.get("stopped_early") and stop.get("stop_after_round") is not None:
                        k = int(stop["stop_after_round"])
                        v = rows[(rows.seed == seed) & (rows["round"] == k)].value
                        if len(v):
                            stopped.setdefault(k, []).append(float(v.iloc[0]))
                for k, vals in sorted(stopped.items()):
                    stop_handle, = ax.plot([k], [sum(vals) / len(vals)], marker="x", markersize=8, mew=2,
                                           color="black", linestyle="none", zorder=5)
            if not used:
                if not shown:
                    what = "no results for " + (", ".join(experiments) or "any experiment")
                elif task == "validation":
                    what = "no validation results (early_stop.validation is null)"
                else:
                    what = "no answer diagnostics (evaluation.probe.prompts unset)"
                notes.append(f"{title}: {what}")
                _empty_note(ax, what.replace(" (", "\n("))
                ax.set_title(title)
                continue
            kinds = sorted(set(used))
            ax.set_title(f"{title} ({' / '.join(kinds)})" if task == "validation" else f"{title} (nats/token)")
            _int_rounds(ax, last)
            ax.grid(alpha=0.3)
        fig.suptitle("Collapse signals by round (mean ± std over seeds)\n"
                     "x = early stop: mean of the seeds that stopped after that round")
        if handles:
            keys = [e for e in shown if e in handles]
            legend_ax.legend([handles[e] for e in keys] + ([stop_handle] if stop_handle else []),
                             keys + (["early stop"] if stop_handle else []),
                             loc="center", ncol=min(len(keys) + bool(stop_handle), 5), frameon=False)
        save_figure(fig, png, pdf)
    return notes
