"""results/paper/ figures: benchmarks (Figure 1 style), metric vs round, collapse, and one
figure per included ablation. A panel without data is skipped with a note (in the log and
in the figure)."""
import pandas as pd

from soft.paper import (plot_benchmarks, plot_collapse_panel, plot_rounds, read_stops, selected_rounds,
                        summarize_seeds)
from soft.runtime import log, run


def main(smk):
    out = smk.output
    df = pd.read_csv(smk.input.by_seed)
    summary = summarize_seeds(df)
    stops = read_stops(smk.input.stops, smk.params.instances)
    main_exps = smk.params.main
    notes = plot_benchmarks(df, selected_rounds(stops, smk.params.model_round), main_exps,
                            out.benchmarks_png, out.benchmarks_pdf)
    notes += plot_rounds(summary, main_exps, out.rounds_png, out.rounds_pdf,
                         "Metrics by round (round 0 = base model)")
    notes += plot_collapse_panel(df, stops, main_exps, out.collapse_png, out.collapse_pdf)
    for panel, png, pdf in zip(smk.params.panels, out.ablation_png, out.ablation_pdf):
        notes += plot_rounds(summary, panel["experiments"], png, pdf,
                             f"Ablation: {panel['name'].replace('_', ' ')}")
    for note in notes:
        log.info("note: %s", note)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
