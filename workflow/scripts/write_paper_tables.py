"""results/paper/main_table.{csv,md,tex}: the paper's main table (HHH subsets and overall,
TruthfulQA MC1 / MC2, judged win rate), mean and std over seeds."""
import pandas as pd

from soft.paper import main_table, read_stops, selected_rounds, write_main_table
from soft.runtime import log, run


def main(smk):
    df = pd.read_csv(smk.input.by_seed)
    stops = read_stops(smk.input.stops, smk.params.instances)
    selected = selected_rounds(stops, smk.params.model_round)
    table, notes = main_table(df, selected, smk.params.main)
    seeds = sorted(df.seed.unique())
    caption = (f"Main results: base model and each experiment at its {smk.params.model_round} round; "
               f"mean and standard deviation over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}).")
    write_main_table(table, notes, smk.output.csv, smk.output.md, smk.output.tex, caption)
    for note in notes:
        log.info("note: %s", note)


run(main, snakemake)  # noqa: F821 (injected by Snakemake)
