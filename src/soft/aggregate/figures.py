"""Every figure of the workflow, drawn in one style: the grid's (`snakemake all`:
results/figures/) and the paper's (`snakemake paper`: results/paper/). The grid is the
paper path restricted to the configured experiments and one seed, so each kind of figure
has one function here:

- plot_rounds: headline metrics against round or against cumulative training prompts;
  error bars are the 95% CI of each round's change from round 0 (change_error);
- plot_collapse_panel: collapse signals (COLLAPSE_PANELS, the panel registry) against
  round, mean over seeds with std bars, x where a chain stopped early;
- plot_benchmarks: each model at its reported round, grouped bars.

Inputs are the per-seed table (soft.paper.summary.PER_SEED_COLUMNS; the grid's metrics.csv via
soft.aggregate.tables.one_seed) or its summary over seeds (soft.paper.summary.summarize_seeds), and
comparisons.csv. Missing data drops a panel or puts a note inside the figure; every
function returns notes saying what was left out."""

from __future__ import annotations

import math
from pathlib import Path

from soft.io import atomic_path
from soft.paper.summary import (JUDGE_TASK, MAIN_COLUMNS, SUMMARY_COLUMNS, check_columns, model_points, per_seed,
                        rounds_label, seed_values)
from soft.stats import HEADLINE_METRICS, TEST_SEEDS

ONE_COLUMN_IN = 3.5
TWO_COLUMN_IN = 7.0
BASE_COLOUR = "0.55"

# Panels of the metric-vs-round figures: (task, metric, title), from soft.stats' one table
# of headline metrics.
ROUND_PANELS = [(h.task, h.metric, h.label) for h in HEADLINE_METRICS]
# The panel registry of the collapse figures: name -> (task, metric, title). A metric of
# None is each experiment's own early-stop metric (stop.json's `metric`).
COLLAPSE_PANELS = {
    "validation": ("validation", None, "validation"),
    "entropy": ("diagnostics", "entropy", "answer entropy (nats/token)"),
    "distinct_2": ("diagnostics", "distinct_2", "distinct-2"),
    "length": ("diagnostics", "mean_length", "answer length (words)"),
    "repetition": ("diagnostics", "repetition_rate", "repetition rate"),
    "kept": ("filter", "kept_rate", "share kept by the filter"),
}
# The paper's collapse figure: the two signals of a collapse; the grid's shows them all.
PAPER_COLLAPSE = ("validation", "entropy")
X_AXES = {"round": "round", "n_train_prompts": "cumulative training prompts"}
COLLAPSE_TITLE = ("Collapse signals by round (mean ± std over seeds)\n"
                  "x = early stop: mean of the seeds that stopped after that round")


def save_figure(fig, png_path: str | Path, pdf_path: str | Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    for path in (png_path, pdf_path):
        with atomic_path(path) as tmp:
            # metadata pinned so reruns give identical bytes
            fig.savefig(tmp, format=Path(path).suffix[1:], dpi=150,
                        metadata={"CreationDate": None} if str(path).endswith(".pdf") else {"Software": None})
    plt.close(fig)


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
    return "error bars: 95% CI of the change from round 0\n(" + "; ".join(what[s] for s in sorted(sources, reverse=True)) + ")"


def plot_benchmarks(df, selected: dict, experiments: list[str], png: str | Path, pdf: str | Path,
                    base_label: str = "base model", comparisons=None) -> list[str]:
    """Grouped bars: each headline benchmark, the base model and every experiment at its
    reported round (mean over seeds); an experiment's error bar is the 95% CI of its
    change from the base model (change_error), drawn around its bar."""
    import matplotlib

    points, notes = model_points(df, selected, experiments, base_label)
    benches = [(t, m, label) for t, m, label in MAIN_COLUMNS if t != JUDGE_TASK]
    present = [b for b in benches if any(seed_values(rows, b[0], b[1]) for _, _, rows in points)]
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
                rounds = rounds_label(list(seeds.values()))
                for task, metric, _ in present:
                    vals = seed_values(rows, task, metric)
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
                comparisons=None, x: str = "round") -> list[str]:
    """Headline metrics (ROUND_PANELS) against round, or with x="n_train_prompts" against
    the cumulative training prompts of each round (points labelled r<k>: a single-round
    model and a later round of a chain that saw as many prompts line up), one line per
    listed experiment (round 0 = base); error bars: the 95% CI of each round's change
    from round 0 (change_error)."""
    import textwrap

    import matplotlib
    from matplotlib.ticker import MaxNLocator

    check_columns(summary, SUMMARY_COLUMNS, "seed summary")
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")
    notes = []
    sub = summary[summary.experiment.isin(experiments)]
    shown = [e for e in experiments if (sub.experiment == e).any()]
    notes += [f"{e}: no rows, left out" for e in experiments if e not in shown]
    panels = [p for p in ROUND_PANELS if ((sub.task == p[0]) & (sub.metric == p[1])).any()]
    notes += [f"{label}: no data, panel left out" for t, m, label in ROUND_PANELS if (t, m, label) not in panels]
    colours = experiment_colours(experiments)
    n = max(len(panels), 1)
    last = int(sub["round"].max()) if len(sub) else 1
    # a small sideways offset keeps overlapping error bars apart; round ticks stay on integers
    step = 1.0 if x == "round" else max(float(sub[x].max()) / max(last, 1), 1.0) if len(sub) else 1.0
    dodge = {e: step * (i - (len(shown) - 1) / 2) * min(0.05, 0.3 / max(len(shown), 1)) for i, e in enumerate(shown)}
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
                xs = [float(v) + dodge[exp] for v in s[x]]
                h = ax.errorbar(xs, s["mean"], yerr=err, marker="o", capsize=2, color=colours[exp], label=exp,
                                elinewidth=0.8)
                handles.setdefault(exp, h)
                if x != "round":
                    for xv, yv, k in zip(xs, s["mean"], s["round"]):
                        if k == 0 and exp != shown[0]:
                            continue  # round 0 is the same base model under every experiment
                        ax.annotate(f"r{k}", (xv, yv), textcoords="offset points", xytext=(3, 3), fontsize=6)
            if task == JUDGE_TASK:
                ax.axhline(0.5, color="0.6", linestyle="--", linewidth=0.8)  # a tie with the base
            if x == "round":
                _int_rounds(ax, last)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel(X_AXES[x])
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.set_title(label)
            ax.grid(alpha=0.3)
        if panels:
            axes[0].set_ylabel("score")
        fig.suptitle(title if n > 1 else textwrap.fill(title, 40))
        if handles:
            legend_ax.legend([handles[e] for e in shown if e in handles], [e for e in shown if e in handles],
                             loc="center", ncol=min(len(handles), 4 if n > 1 else 2), frameon=False,
                             title=_error_bar_note(ns), title_fontsize=8)
        save_figure(fig, png, pdf)
    return notes


def plot_collapse_panel(df, stops: dict, experiments: list[str], png: str | Path, pdf: str | Path,
                        panels: tuple[str, ...] = PAPER_COLLAPSE, drop_empty: bool = False,
                        title: str = COLLAPSE_TITLE) -> list[str]:
    """Collapse signals (the named COLLAPSE_PANELS) against round, mean over seeds with
    std bars; x marks where seeds stopped early (stops: (experiment, seed) -> stop.json).
    A panel without data shows a note, or with drop_empty is left out (unless all are)."""
    import matplotlib

    df = per_seed(df)
    notes = []
    colours = experiment_colours(experiments)
    shown = [e for e in experiments if (df.experiment == e).any()]
    notes += [f"{e}: no rows, left out" for e in experiments if e not in shown]

    def metric_of(exp, metric):
        if metric is not None:
            return metric
        for (e, _), stop in sorted(stops.items()):  # the validation panel: the stop metric
            if e == exp and stop.get("metric"):
                return stop["metric"]
        return "margin"

    def has_data(name):
        task, metric, _ = COLLAPSE_PANELS[name]
        return any(((df.experiment == e) & (df.task == task) & (df.metric == metric_of(e, metric))).any()
                   for e in shown)

    with_data = [p for p in panels if has_data(p)] if drop_empty else []
    if with_data:
        notes += [f"{COLLAPSE_PANELS[p][2]}: no data, panel left out" for p in panels if p not in with_data]
        panels = tuple(with_data)

    absent = {"validation": "no validation results (early_stop.validation is null)",
              "diagnostics": "no answer diagnostics (evaluation.probe.prompts unset)",
              "filter": "no filter statistics"}
    last = int(df["round"].max()) if len(df) else 1
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    with matplotlib.rc_context(STYLE):
        fig = _pyplot().figure(figsize=(TWO_COLUMN_IN, 2.4 * nrows + 0.6))
        grid = fig.add_gridspec(nrows + 1, ncols, height_ratios=[1.0] * nrows + [0.12 * nrows + 0.04])
        axes = [fig.add_subplot(grid[i // ncols, i % ncols]) for i in range(len(panels))]
        legend_ax = fig.add_subplot(grid[nrows, :])
        legend_ax.axis("off")
        handles, stop_handle = {}, None
        for ax, name in zip(axes, panels):
            task, metric, panel_title = COLLAPSE_PANELS[name]
            used = []
            for exp in shown:
                shown_metric = metric_of(exp, metric)
                rows = df[(df.experiment == exp) & (df.task == task) & (df.metric == shown_metric)]
                if not len(rows):
                    continue
                used.append(shown_metric)
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
                what = ("no results for " + (", ".join(experiments) or "any experiment")) if not shown else \
                    absent.get(task, f"no {task} results")
                notes.append(f"{panel_title}: {what}")
                _empty_note(ax, what.replace(" (", "\n("))
                ax.set_title(panel_title)
                continue
            ax.set_title(f"{panel_title} ({' / '.join(sorted(set(used)))})" if metric is None else panel_title)
            ax.ticklabel_format(axis="y", useOffset=False)
            _int_rounds(ax, last)
            ax.grid(alpha=0.3)
        fig.suptitle(title)
        if handles:
            keys = [e for e in shown if e in handles]
            legend_ax.legend([handles[e] for e in keys] + ([stop_handle] if stop_handle else []),
                             keys + (["early stop"] if stop_handle else []),
                             loc="center", ncol=min(len(keys) + bool(stop_handle), 5), frameon=False)
        save_figure(fig, png, pdf)
    return notes
