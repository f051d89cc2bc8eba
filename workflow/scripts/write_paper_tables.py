"""results/paper/main_table.{csv,md,tex}: the paper's main table at a fixed prompt budget
(each chain's last round) with paired changes from the base model, the best-validated
round as a second view, and the paired comparisons between experiments."""
import pandas as pd

from soft.aggregate.tables import comparison_lines
from soft.paper.summary import main_table, read_stops, selected_rounds, write_main_table
from soft.runtime import log, run


def main(smk):
    df = pd.read_csv(smk.input.by_seed)
    comparisons = pd.read_csv(smk.input.comparisons, dtype={"round": str, "reference_round": str})
    stops = read_stops(smk.input.stops, smk.params.instances)
    fixed = selected_rounds(stops, "last")
    best = selected_rounds(stops, "best") if smk.params.model_round == "best" else None
    table, notes = main_table(df, fixed, smk.params.main, best=best, comparisons=comparisons, stops=stops,
                              judge=smk.params.judge)
    seeds = sorted(df.seed.unique())
    caption = (f"Main results at a fixed prompt budget: the base model and each experiment at its last round "
               f"(its whole budget consumed, unless a note says it stopped early), with the prompts, training "
               f"examples and optimiser steps behind it; mean and standard deviation over {len(seeds)} seed(s) "
               f"({', '.join(map(str, seeds))}). Changes from the base model are paired differences on the same "
               f"documents: 95% bootstrap CI (seeds: t interval over per-seed differences) and p (exact McNemar; "
               f"Wilcoxon for MC2)." + (" Best: the best-validated round, with its prompts." if best else ""))
    write_main_table(table, notes, smk.output.csv, smk.output.md, smk.output.tex, caption,
                     appendix=comparison_lines(comparisons))
    for note in notes:
        log.info("note: %s", note)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
