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

from soft.aggregate import SEED_COLUMNS, save_figure
from soft.errors import SoftError
from soft.io import atomic_path, read_json, write_text

PER_SEED_COLUMNS = SEED_COLUMNS  # what soft.aggregate.seed_table writes
SUMMARY_COLUMNS = ["experiment", "round", "task", "metric", "mean", "std", "n_seeds", "stderr", "n_train_prompts"]
MODEL_ROUND_MODES = ("best", "last")

# Columns of the main table: (task, metric, label).
MAIN_COLUMNS = [
    ("soft_hhh_harmless", "acc", "HHH harmless"),
    ("soft_hhh_helpful", "acc", "HHH helpful"),
    ("soft_hhh_honest", "acc", "HHH honest"),
    ("soft_hhh_other", "acc", "HHH other"),
    ("soft_hhh", "acc", "HHH overall"),
    ("soft_truthfulqa_mc1", "acc", "TruthfulQA MC1"),
    ("soft_truthfulqa_mc2", "acc", "TruthfulQA MC2"),
    ("judge_vs_round0", "win_rate", "judged win rate"),
]
JUDGE_TASK = "judge_vs_round0"
# Why a column can be empty everywhere; anything else gets a generic note.
ABSENT_NOTES = {
    "soft_truthfulqa_mc2": "not evaluated (add soft_truthfulqa_mc2 to evaluation.tasks)",
    JUDGE_TASK: "no judge (evaluation.judge.kind: none)",
}
# Panels of the metric-vs-round figure: (task, metric, title).
ROUND_PANELS = [
    ("soft_hhh", "acc", "HHH overall (acc)"),
    ("soft_truthfulqa_mc1", "acc", "TruthfulQA MC1 (acc)"),
    ("soft_truthfulqa_mc2", "acc", "TruthfulQA MC2 (acc)"),
    (JUDGE_TASK, "win_rate", "Win rate vs base"),
]

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


def main_table(df, selected: dict, experiments: list[str], base_label: str = "base model"):
    """The main results table (base model, then each experiment at its selected round)
    and notes on the columns or models left out."""
    import pandas as pd

    points, notes = _model_points(df, selected, experiments, base_label)
    records = []
    for i, (model, seeds, rows) in enumerate(points):
        rec = {"model": model, "rounds": _rounds_label(list(seeds.values())), "n_seeds": len(seeds)}
        for task, metric, label in MAIN_COLUMNS:
            # the base model against itself is no comparison
            vals = [] if (i == 0 and model == base_label and task == JUDGE_TASK) else _values(rows, task, metric)
            rec[label] = sum(vals) / len(vals) if vals else math.nan
            rec[f"{label} std"] = _std(vals)
            if vals and len(vals) < len(seeds):
                notes.append(f"{model}: {label} from {len(vals)} of {len(seeds)} seeds")
        records.append(rec)
    columns = ["model", "rounds", "n_seeds"]
    for task, metric, label in MAIN_COLUMNS:
        if any(not math.isnan(r[label]) for r in records):
            columns += [label, f"{label} std"]
        elif ((df.task == task) & (df.metric == metric)).any():
            notes.append(f"{label}: no values at the selected rounds")
        else:
            notes.append(f"{label}: {ABSENT_NOTES.get(task, f'no {task} {metric} rows')}")
    table = pd.DataFrame(records, columns=["model", "rounds", "n_seeds"] +
                         [c for _, _, l in MAIN_COLUMNS for c in (l, f"{l} std")])
    table = table[columns].reset_index(drop=True)
    table["n_seeds"] = table["n_seeds"].astype(int)
    return table, notes


def _labels(table) -> list[str]:
    return [c for c in table.columns[3:] if not c.endswith(" std")]


def _cell(mean, std, tex: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "--" if tex else EMPTY
    if std is None or math.isnan(std):
        return f"{mean:.3f}"
    return f"${mean:.3f} \\pm {std:.3f}$" if tex else f"{mean:.3f} ± {std:.3f}"


TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "–": "--", "±": r"$\pm$"}


def tex_escape(text: str) -> str:
    return "".join(TEX_SPECIALS.get(ch, ch) for ch in str(text))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def write_main_table(table, notes: list[str], csv_path: str | Path, md_path: str | Path,
                     tex_path: str | Path, caption: str, label: str = "tab:main") -> None:
    """main_table's result as CSV, Markdown (mean ± std) and a booktabs LaTeX table."""
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")
    labels = _labels(table)
    rows = [(str(r["model"]), str(r["rounds"]), str(int(r["n_seeds"])),
             [(r[l], r[f"{l} std"]) for l in labels]) for _, r in table.iterrows()]

    md = [_one_line(caption), "",
          "| model | rounds | seeds | " + " | ".join(labels) + " |",
          "|---|---|---|" + "---|" * len(labels)]
    for model, rounds, n, cells in rows:
        md.append(f"| {model} | {rounds} | {n} | " + " | ".join(_cell(m, s) for m, s in cells) + " |")
    if notes:
        md += [""] + [f"- {_one_line(n)}" for n in notes]
    write_text(md_path, "\n".join(md) + "\n")

    tex = ["% generated by soft.paper.write_main_table",
           r"\begin{table*}[t]", r"\centering", r"\small",
           rf"\caption{{{tex_escape(_one_line(caption))}}}", rf"\label{{{label}}}",
           r"\begin{tabular}{l" + "r" * (2 + len(labels)) + "}", r"\toprule",
           " & ".join(["Model", "Rounds", "Seeds"] + [tex_escape(l) for l in labels]) + r" \\",
           r"\midrule"]
    for i, (model, rounds, n, cells) in enumerate(rows):
        tex.append(" & ".join([tex_escape(model), tex_escape(rounds), n] +
                              [_cell(m, s, tex=True) for m, s in cells]) + r" \\")
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


def _error_bar_note(ns: set[int]) -> str:
    if not ns:
        return ""
    if min(ns) > 1:
        n = f"{min(ns)}" if len(ns) == 1 else f"{min(ns)}-{max(ns)}"
        return f"error bars: std over {n} seeds"
    if max(ns) == 1:
        return "error bars: lm-eval stderr (one seed)"
    return "error bars: std over seeds; lm-eval stderr where one seed"


def plot_benchmarks(df, selected: dict, experiments: list[str], png: str | Path, pdf: str | Path,
                    base_label: str = "base model") -> list[str]:
    """Grouped bars: each lm-eval benchmark of MAIN_COLUMNS, the base model and every
    experiment at its selected round (mean over seeds, std bars when n > 1)."""
    import matplotlib

    points, notes = _model_points(df, selected, experiments, base_label)
    benches = [(t, m, l) for t, m, l in MAIN_COLUMNS if t != JUDGE_TASK]
    present = [b for b in benches if any(_values(rows, b[0], b[1]) for _, _, rows in points)]
    notes += [f"{l}: no data, left out" for t, m, l in benches if (t, m, l) not in present]
    colours = {base_label: BASE_COLOUR, **experiment_colours(experiments)}
    with matplotlib.rc_context(STYLE):
        fig, (ax,), _ = _figure(wide=True, height=2.6)
        if not present or not points:
            _empty_note(ax, "no benchmark results to plot")
        else:
            width = 0.8 / len(points)
            top = 0.0
            for j, (model, seeds, rows) in enumerate(points):
                means, errs = [], []
                for task, metric, _ in present:
                    vals = _values(rows, task, metric)
                    means.append(sum(vals) / len(vals) if vals else math.nan)
                    err = _std(vals)
                    errs.append(0.0 if math.isnan(err) else err)
                    top = max(top, (means[-1] if vals else 0) + errs[-1])
                xs = [i - 0.4 + width * (j + 0.5) for i in range(len(present))]
                rounds = _rounds_label(list(seeds.values()))
                label = model if model == base_label else f"{model} (round {rounds})"
                ax.bar(xs, means, width, yerr=errs, capsize=1.5, color=colours.get(model, BASE_COLOUR),
                       label=label, error_kw={"elinewidth": 0.8, "capthick": 0.8})
            ax.set_xticks(range(len(present)))
            # two-line tick labels: "TruthfulQA MC1" side by side would run into each other
            ax.set_xticklabels([l.replace(" ", "\n", 1) for _, _, l in present])
            ax.set_xlim(-0.5, len(present) - 0.5)
            ax.set_ylim(0, min(1.0, top * 1.1 + 0.02) if top > 0 else 1.0)
            ax.set_ylabel("accuracy")
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
            ns = {len(s) for _, s, _ in points}
            ax.legend(ncol=min(len(points), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                      frameon=False, title=_error_bar_note({n for n in ns if n > 1}) or "one seed: no error bars",
                      title_fontsize=8)
        save_figure(fig, png, pdf)
    return notes


def plot_rounds(summary, experiments: list[str], png: str | Path, pdf: str | Path, title: str) -> list[str]:
    """Headline metrics against round, one line per listed experiment (round 0 = base)."""
    import matplotlib

    _check_columns(summary, SUMMARY_COLUMNS, "seed summary")
    notes = []
    sub = summary[summary.experiment.isin(experiments)]
    shown = [e for e in experiments if (sub.experiment == e).any()]
    notes += [f"{e}: no rows, left out" for e in experiments if e not in shown]
    panels = [p for p in ROUND_PANELS if ((sub.task == p[0]) & (sub.metric == p[1])).any()]
    notes += [f"{l}: no data, panel left out" for t, m, l in ROUND_PANELS if (t, m, l) not in panels]
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
                err = [sd if k > 1 else se for sd, se, k in zip(s["std"], s["stderr"], s["n_seeds"])]
                err = [0.0 if (e is None or math.isnan(e)) else e for e in err]
                ns |= {int(k) for k in s["n_seeds"]}
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
