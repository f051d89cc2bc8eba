"""results/paper/ figures: benchmarks (Figure 1 style) at the fixed budget, metric vs
round, collapse, and one figure per included ablation. Error bars are the 95% CI of the
change from round 0 (comparisons.csv). A panel without data is skipped with a note (in
the log and in the figure)."""
import pandas as pd

from soft.aggregate.figures import plot_benchmarks, plot_collapse_panel, plot_rounds
from soft.paper.summary import read_stops, selected_rounds, summarize_seeds
from soft.runtime import log, run


def main(smk):
    out = smk.output
    df = pd.read_csv(smk.input.by_seed)
    comparisons = pd.read_csv(smk.input.comparisons, dtype={"round": str, "reference_round": str})
    summary = summarize_seeds(df)
    stops = read_stops(smk.input.stops, smk.params.instances)
    main_exps = smk.params.main
    notes = plot_benchmarks(df, selected_rounds(stops, "last"), main_exps, out.benchmarks_png, out.benchmarks_pdf,
                            comparisons=comparisons)
    notes += plot_rounds(summary, main_exps, out.rounds_png, out.rounds_pdf,
                         "Metrics by round (round 0 = base model)", comparisons)
    notes += plot_collapse_panel(df, stops, main_exps, out.collapse_png, out.collapse_pdf)
    for panel, png, pdf in zip(smk.params.panels, out.ablation_png, out.ablation_pdf):
        notes += plot_rounds(summary, panel["experiments"], png, pdf,
                             f"Ablation: {panel['name'].replace('_', ' ')}", comparisons)
    for note in notes:
        log.info("note: %s", note)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
